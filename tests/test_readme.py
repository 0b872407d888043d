"""The code shown in README.md and docs/composition.md runs as shown."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


def test_readme_examples_run_in_order(capsys):
    """The README's blocks build on each other: the first trains and scores Bayes-BiSNN, the next
    define a prior and a guide of one's own, the last trains them together."""
    blocks = python_blocks(ROOT / "README.md")
    assert len(blocks) == 3
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)
    printed = capsys.readouterr().out.strip().splitlines()
    assert len(printed) == 2
    for line in printed:  # summary() of the first model, then of the composed one
        accuracy = float(re.search(r"'accuracy': ([0-9.]+)", line).group(1))
        assert accuracy > 0.9, line
    model = namespace["model"]
    assert type(model.guide).__name__ == "GuideList"  # the Beta posteriors of DalePrior, composed by itself
    assert model.sites.hyper == ["layers.0.weight_p"]


@pytest.mark.parametrize("block", python_blocks(ROOT / "docs" / "composition.md"))
def test_composition_guide_blocks_run_on_their_own(block):
    exec(compile(block, "docs/composition.md", "exec"), {})
