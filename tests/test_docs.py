"""The docs site builds with no broken link or reference, and the code passes the linter CI pins."""

import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote

ROOT = Path(__file__).resolve().parents[1]


def test_docs_site_builds_strictly(tmp_path):
    """`mkdocs build --strict` fails on a broken link, a missing page or an unresolved API
    reference.  The tutorials are rendered without running them here: tests/test_tutorial_*.py run
    each of them and check what it prints."""
    env = {**os.environ, "BISNN_DOCS_EXECUTE": "false", "NO_MKDOCS_2_WARNING": "1",
           "BISNN_DOCS_CACHE": str(tmp_path / "cache")}  # a developer's executed tutorials stay cached
    site = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    home = (site / "index.html").read_text()
    assert "set_rng_seed" in home and "uncertainty.png" in home  # the README's example and the figure
    reference = (site / "reference" / "models" / "index.html").read_text()
    for name in ("SignBernoulli", "Prior", "Likelihood", "lif_step"):
        assert f'id="bisnn_pyro.models.{name}"' in reference, name
    for tutorial in (ROOT / "docs" / "tutorials").glob("*.py"):
        assert (site / "tutorials" / tutorial.stem / "index.html").exists(), tutorial.name
    assert broken_links(site) == []


def broken_links(site: Path) -> list[str]:
    """Relative links of the built pages that lead nowhere (mkdocs checks its Markdown pages'
    links, not those of the notebooks mkdocs-jupyter renders)."""
    broken = []
    for page in site.rglob("*.html"):
        for target in re.findall(r'(?:href|src)="([^"#?]+)[^"]*"', page.read_text()):
            if re.match(r"[a-z]+:|//", target):
                continue
            base = site if target.startswith("/") else page.parent
            path = (base / unquote(target).lstrip("/")).resolve()
            if not (path.is_file() or (path / "index.html").is_file()):
                broken.append(f"{page.relative_to(site)} -> {target}")
    return broken


def test_ruff_finds_nothing():
    """The rule set and the pinned version are in pyproject.toml."""
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-4000:]


def test_every_public_name_says_what_it_is():
    """Each class and function a package exports, and each public method or property of those
    classes, has a docstring (its own or the one it overrides): the API reference shows it."""
    import importlib
    import inspect

    missing = []
    for package in ("bisnn_pyro", "bisnn_pyro.models", "bisnn_pyro.inference", "bisnn_pyro.analysis",
                    "bisnn_pyro.data", "bisnn_pyro.config", "bisnn_pyro.studies"):
        module = importlib.import_module(package)
        for name in module.__all__:
            exported = getattr(module, name)
            if not (inspect.isclass(exported) or inspect.isfunction(exported)):
                continue
            if not inspect.getdoc(exported):
                missing.append(f"{package}.{name}")
            if inspect.isclass(exported):
                for member, value in vars(exported).items():
                    function = value.fget if isinstance(value, property) else value
                    if member.startswith("_") or not inspect.isfunction(function) or function.__doc__:
                        continue
                    if not any(getattr(getattr(base, member, None), "__doc__", None) for base in exported.__mro__[1:]):
                        missing.append(f"{package}.{name}.{member}")
    assert missing == []
