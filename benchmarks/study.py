"""Wall time of a small study on this machine: the local pool (``bisnn-pyro study run``, one
process per core, one torch thread each) against the same runs one at a time, as a shell loop of
``bisnn-pyro train`` (each run with PyTorch's default threads), side by side in one run.

    python benchmarks/study.py [--repeats R] [--epochs E] [--json FILE]

The study: bayes and ste on two moons (the default network), two seeds each, E epochs.  The two
ways alternate R times; the JSON holds each way's median and range and the median of the
per-repeat ratios (keys study_pool_s, study_serial_s, study_pool_over_serial).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STUDY = """
seeds = 2
[base_config.training]
epochs = {epochs}
[[arms]]
name = "bayes"
set = {{ "training.rule" = "bayes" }}
[[arms]]
name = "ste"
set = {{ "training.rule" = "ste" }}
"""


def pool(study: Path, out: Path) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "bisnn_pyro", "study", "run", str(study), "--out", str(out), "--quiet"],
                   check=True, capture_output=True)
    return time.perf_counter() - start


def serial(study: Path, out: Path) -> float:
    from bisnn_pyro.studies import read_study

    configs = []
    for run in read_study(study).runs():
        path = out / f"{run.arm}-{run.seed}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(run.config.to_dict()))
        configs.append((path, out / run.arm / f"seed-{run.seed}"))
    start = time.perf_counter()
    for config, folder in configs:
        subprocess.run([sys.executable, "-m", "bisnn_pyro", "train", "--config", str(config), "--out", str(folder),
                        "--quiet"], check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    pooled, one_at_a_time = [], []
    with tempfile.TemporaryDirectory() as scratch:
        study = Path(scratch) / "study.toml"
        study.write_text(STUDY.format(epochs=args.epochs))
        for repeat in range(args.repeats):
            pooled.append(pool(study, Path(scratch) / f"pool-{repeat}"))
            one_at_a_time.append(serial(study, Path(scratch) / f"serial-{repeat}"))
            print(f"repeat {repeat + 1}: pool {pooled[-1]:.1f} s, one at a time {one_at_a_time[-1]:.1f} s", flush=True)
    ratios = [p / s for p, s in zip(pooled, one_at_a_time)]
    result = {
        "study_runs": 4,
        "study_epochs": args.epochs,
        "cores": os.cpu_count(),
        "study_pool_s": statistics.median(pooled),
        "study_pool_s_range": [min(pooled), max(pooled)],
        "study_serial_s": statistics.median(one_at_a_time),
        "study_serial_s_range": [min(one_at_a_time), max(one_at_a_time)],
        "study_pool_over_serial": statistics.median(ratios),
        "study_pool_over_serial_range": [min(ratios), max(ratios)],
    }
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
