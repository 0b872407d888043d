"""A study's tables: one tidy row per run and prediction mode (``runs.csv``), each arm's metrics
over its seeds (``summary.csv``, ``summary.md``: mean, standard deviation, 95 % bootstrap interval)
and paired differences between arms over the seeds they share (``paired.csv``)."""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .runner import SCORES_FILE, STUDY_FILE
from .statistics import paired_difference, summarise

METRICS = ("accuracy", "nll", "brier", "ece")


def _flat(config: dict[str, Any]) -> dict[str, Any]:
    """A run's configuration as ``section.option`` columns (lists written as text)."""
    columns = {}
    for section, settings in config.items():
        if isinstance(settings, dict):
            for key, value in settings.items():
                columns[f"{section}.{key}"] = json.dumps(value) if isinstance(value, (list, dict)) else value
    return columns


def study_rows(study_dir: str | Path) -> list[dict[str, Any]]:
    """One row per finished run and mode: arm, seed, mode, metrics, then every configuration key."""
    study_dir = Path(study_dir)
    listing = study_dir / STUDY_FILE
    if not listing.is_file():
        raise ConfigError(f"no {STUDY_FILE} in {study_dir}: run `bisnn-pyro study run STUDY.toml --out {study_dir}` first")
    rows = []
    for run in json.loads(listing.read_text()):
        scores_path = study_dir / run["folder"] / SCORES_FILE
        if not scores_path.is_file():
            continue
        for mode, scores in json.loads(scores_path.read_text()).items():
            rows.append({"arm": run["arm"], "seed": run["seed"], "mode": mode,
                         **{m: scores[m] for m in METRICS}, **_flat(run["config"])})
    return rows


def write_study_report(study_dir: str | Path, out: str | Path) -> Path:
    """Write runs.csv, summary.csv, summary.md and paired.csv for the finished runs; ``out``."""
    rows = study_rows(study_dir)
    if not rows:
        raise ConfigError(f"{study_dir}: no finished run to report")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _write_csv(out / "runs.csv", rows)
    by_arm: dict[tuple[str, str], dict[int, dict]] = {}
    for row in rows:
        by_arm.setdefault((row["arm"], row["mode"]), {})[row["seed"]] = row
    summary = []
    for (arm, mode), seeds in by_arm.items():
        for metric in METRICS:
            s = summarise([row[metric] for row in seeds.values()])
            summary.append({"arm": arm, "mode": mode, "metric": metric, "n": s.n, "mean": s.mean, "sd": s.sd,
                            "low": s.low, "high": s.high})
    _write_csv(out / "summary.csv", summary)
    paired = []
    for (first, second) in itertools.combinations(sorted(by_arm), 2):
        if first[1] != second[1] or not set(by_arm[first]) & set(by_arm[second]):
            continue  # pairs within one prediction mode, over shared seeds
        for metric in METRICS:
            values = [{seed: row[metric] for seed, row in by_arm[key].items()} for key in (first, second)]
            d = paired_difference(*values)
            paired.append({"first": first[0], "second": second[0], "mode": first[1], "metric": metric, "seeds": d.summary.n,
                           "mean_difference": d.summary.mean, "low": d.summary.low, "high": d.summary.high,
                           "first_lower_in": d.first_lower})
    if paired:
        _write_csv(out / "paired.csv", paired)
    lines = ["| arm | mode | n | " + " | ".join(METRICS) + " |", "|" + " --- |" * (3 + len(METRICS))]
    for (arm, mode), seeds in sorted(by_arm.items()):
        cells = [next(s for s in summary if (s["arm"], s["mode"], s["metric"]) == (arm, mode, m)) for m in METRICS]
        lines.append(f"| {arm} | {mode} | {len(seeds)} | " + " | ".join(
            f"{c['mean']:.3f} [{c['low']:.3f}, {c['high']:.3f}]" for c in cells) + " |")
    (out / "summary.md").write_text(
        "Mean over seeds [95 % bootstrap interval of the mean; nan with one seed].\n\n" + "\n".join(lines) + "\n"
    )
    return out


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        writer.writerows(rows)
