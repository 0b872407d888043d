"""Run a tutorial of docs/tutorials as the test suite does: a plain script, at small size."""

import os
import subprocess
import sys
from pathlib import Path

TUTORIALS = Path(__file__).resolve().parents[1] / "docs" / "tutorials"


def run_tutorial(name: str, cwd: Path, timeout: float = 300) -> str:
    """Execute docs/tutorials/NAME.py top to bottom with ``BISNN_TUTORIAL_SMALL=1`` in ``cwd``
    (figures go to matplotlib's Agg backend) and return what it printed; fail on any error."""
    env = {**os.environ, "BISNN_TUTORIAL_SMALL": "1", "MPLBACKEND": "Agg", "PYTHONWARNINGS": "default",
           "TMPDIR": str(cwd)}  # what a tutorial writes to a temporary folder goes with the test's
    done = subprocess.run(
        [sys.executable, str(TUTORIALS / f"{name}.py")],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
    )
    assert done.returncode == 0, f"{name} failed:\n{done.stderr[-4000:]}"
    return done.stdout
