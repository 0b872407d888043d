"""Old code against new, alternating in one process: the way to time a change on a noisy machine.

    python benchmarks/compare.py --against HEAD~1 [--schedule online|sequence] [--repeats 20]

Imports the package as it is in the working tree and, side by side, as it was at git revision
``--against`` (extracted with ``git archive`` into a temporary folder under another name; the
package uses relative imports only, so both load at once).  Builds the default two-moons run with
each, then alternates one training step of the chosen schedule on the same minibatch (online: the
whole 90-step sequence) and prints the minimum and median time of each and their ratios.
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
from pathlib import Path

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


def trainer_for(package: str, schedule: str, folder: Path):
    experiment = importlib.import_module(f"{package}.experiment")
    run = experiment.create_run(experiment.ExperimentConfig(schedule=schedule, epochs=1), folder / package)
    run.trainer.run_epoch()  # warm-up
    return run.trainer


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", required=True, help="git revision of the old code (HEAD~1, a tag, a hash)")
    parser.add_argument("--schedule", choices=("online", "sequence"), default="online")
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
        trainers = {name: trainer_for(name, args.schedule, folder) for name in (BASELINE, "bisnn_pyro")}
        x, y = trainers["bisnn_pyro"].x[:40], trainers["bisnn_pyro"].y[:40]
        times: dict[str, list[float]] = {name: [] for name in trainers}
        for _ in range(args.repeats):
            for name, trainer in trainers.items():
                step = trainer._online_step if args.schedule == "online" else trainer._sequence_step
                start = time.perf_counter()
                step(x, y)
                times[name].append(time.perf_counter() - start)
    old, new = times[BASELINE], times["bisnn_pyro"]
    print(f"{args.schedule} step, {args.repeats} alternating repeats, {args.threads} threads")
    print(f"  {args.against:>12}: min {min(old):.4f} s, median {statistics.median(old):.4f} s")
    print(f"  {'working tree':>12}: min {min(new):.4f} s, median {statistics.median(new):.4f} s")
    print(f"  new / old: min {min(new) / min(old):.3f}, median {statistics.median(new) / statistics.median(old):.3f}")


if __name__ == "__main__":
    main()
