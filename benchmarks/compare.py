"""Old code against new, alternating in one process: the way to time a change on a noisy machine.

    python benchmarks/compare.py --against HEAD~1 [--workload online|sequence|ensemble] [--repeats 20]

Imports the package as it is in the working tree and, side by side, as it was at git revision
``--against`` (extracted with ``git archive`` into a temporary folder under another name; the
package uses relative imports only, so both load at once).  Builds the default two-moons run with
each, then alternates one piece of work and prints the minimum and median time of each and their
ratios: a training step of either schedule on the same minibatch (online: the whole 90-step
sequence), or the K = 10 ensemble over the test set with the same ten weight draws.  On a noisy
machine, effects of a few per cent need hundreds of repeats (``--repeats 500`` of the sequence step
take about half a minute); a few dozen can point either way.
"""

from __future__ import annotations

import argparse
import importlib
import io
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Callable

import torch

ROOT = Path(__file__).resolve().parent.parent
BASELINE = "bisnn_baseline"


def extract_baseline(revision: str, folder: Path) -> None:
    """The package at ``revision`` as ``folder / BASELINE``."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", revision, "bisnn_pyro"], cwd=ROOT, capture_output=True, check=False
    )
    if archive.returncode != 0:
        raise SystemExit(f"git archive {revision}: {archive.stderr.decode().strip()}")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(folder, filter="data")
    (folder / "bisnn_pyro").rename(folder / BASELINE)


WORKLOADS = ("online", "sequence", "ensemble")


def workloads(packages: tuple[str, ...], workload: str, folder: Path) -> dict[str, Callable[[], object]]:
    """The timed piece of work of each package on the default run after one warm-up epoch; the
    ensemble uses ten posterior draws of the last package's run for all of them."""
    schedule = "online" if workload == "online" else "sequence"
    runs = {}
    for package in packages:
        experiment = importlib.import_module(f"{package}.experiment")
        runs[package] = experiment.create_run(
            experiment.ExperimentConfig(schedule=schedule, epochs=1), folder / package
        )
        runs[package].trainer.run_epoch()
    if workload == "ensemble":
        for run in runs.values():
            run.bsnn.eval()
        last = runs[packages[-1]]
        draws = last.bsnn.draw_weights(last.test.x, 10)
        return {name: partial(run.bsnn.readouts_with, draws, run.test.x) for name, run in runs.items()}
    work = {}
    for name, run in runs.items():
        step = run.trainer._online_step if workload == "online" else run.trainer._sequence_step
        work[name] = partial(step, run.trainer.x[:40], run.trainer.y[:40])
    return work


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", required=True, help="git revision of the old code (HEAD~1, a tag, a hash)")
    parser.add_argument("--workload", choices=WORKLOADS, default="online")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        extract_baseline(args.against, folder)
        sys.path.insert(0, str(folder))
        from bisnn_pyro.runtime import keep_freed_memory

        keep_freed_memory()
        work = workloads((BASELINE, "bisnn_pyro"), args.workload, folder)
        times: dict[str, list[float]] = {name: [] for name in work}
        for _ in range(args.repeats):
            for name, run in work.items():
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
    old, new = times[BASELINE], times["bisnn_pyro"]
    print(f"{args.workload}, {args.repeats} alternating repeats, {args.threads} threads")
    print(f"  {args.against:>12}: min {min(old):.4f} s, median {statistics.median(old):.4f} s")
    print(f"  {'working tree':>12}: min {min(new):.4f} s, median {statistics.median(new):.4f} s")
    print(f"  new / old: min {min(new) / min(old):.3f}, median {statistics.median(new) / statistics.median(old):.3f}")


if __name__ == "__main__":
    main()
