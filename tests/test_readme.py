"""The code shown in README.md and docs/composition.md runs as shown."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


def test_readme_examples_run_in_order(capsys):
    """The README's blocks build on each other: the first trains and scores Bayes-BiSNN, the next
    defines a prior of one's own and trains it, the last registers the prior by name for
    configuration files."""
    from bisnn_pyro.config import REGISTRY

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
    dale = REGISTRY.get("prior", "dale", "prior")
    assert isinstance(dale.create({"a": 0.8}), namespace["DalePrior"])


@pytest.mark.parametrize("block", python_blocks(ROOT / "docs" / "composition.md"))
def test_composition_guide_blocks_run_on_their_own(block):
    exec(compile(block, "docs/composition.md", "exec"), {})


@pytest.mark.parametrize("document", ["README.md", "docs/configuration.md"])
def test_toml_examples_are_valid_configurations(document):
    import tomllib

    from bisnn_pyro.config.run import ExperimentConfig

    blocks = re.findall(r"```toml\n(.*?)```", (ROOT / document).read_text(), flags=re.S)
    assert blocks
    for block in blocks:
        config = ExperimentConfig(tomllib.loads(block))
        assert config.prior["name"] == "beta-binary" and config.rule == "bayes"


def test_configuration_guide_lists_every_option():
    """docs/configuration.md has a row for every option, with its flags and default as defined."""
    from bisnn_pyro.config.run import SECTIONS

    text = (ROOT / "docs" / "configuration.md").read_text()
    for section, options in SECTIONS.items():
        for option in options:
            flags = ", ".join(f"`{flag}`" for flag in (f"--{section}.{option.name}", *option.flags))
            default = "none" if option.default is None else repr(option.default).replace("'", '"')
            assert f"| `{option.name}` | {flags} | {default} | {option.help} |" in text, option.name


def test_configuration_guide_registers_a_part():
    from bisnn_pyro.config import REGISTRY

    (block,) = python_blocks(ROOT / "docs" / "configuration.md")
    exec(compile(block, "docs/configuration.md", "exec"), {"__name__": "my_parts"})
    assert REGISTRY.get("prior", "inhibitory", "prior").create({"p": 0.3}).p == 0.3
