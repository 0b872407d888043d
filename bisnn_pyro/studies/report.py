"""A study's tables: one tidy row per run and prediction mode (``runs.csv``), each arm's metrics
over its seeds (``summary.csv``, ``summary.md``: mean, standard deviation, 95 % t-interval)
and paired differences over the seeds two predictors share (``paired.csv``, ``paired.md``): two
arms on the same data in one prediction mode, or two modes of one arm."""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path
from typing import Any

from ..analysis.metrics import RANGES
from ..errors import ConfigError
from . import figures
from .runner import SCORES_FILE, SCORES_FORMAT, STUDY_FILE
from .statistics import paired_difference, summarise

SCORES = ("accuracy", "nll", "brier", "ece", "mce", "entropy", "mi", "elpd_test", "elpd_test_se")
METRICS = SCORES[:-1]  # summarised over seeds (a standard error's mean says nothing)
PAIRED_MD = ("accuracy", "nll", "ece", "elpd_test")  # the paired table in Markdown; paired.csv has all


def _flat(config: dict[str, Any]) -> dict[str, Any]:
    """A run's configuration as ``section.option`` columns (lists written as text)."""
    columns = {}
    for section, settings in config.items():
        if isinstance(settings, dict):
            for key, value in settings.items():
                columns[f"{section}.{key}"] = json.dumps(value) if isinstance(value, (list, dict)) else value
    return columns


def finished_runs(study_dir: str | Path) -> list[dict[str, Any]]:
    """The study's finished runs as listed in ``study.json``, each with its ``scores``."""
    study_dir = Path(study_dir)
    listing = study_dir / STUDY_FILE
    if study_dir.is_file():
        raise ConfigError(f"{study_dir} is a file; study report takes the folder a study ran into (its --out)")
    if not listing.is_file():
        raise ConfigError(
            f"no {STUDY_FILE} in {study_dir}: run `bisnn-pyro study run STUDY.toml --out {study_dir}` first"
        )
    runs = []
    study = json.loads(listing.read_text())
    if not isinstance(study, dict) or "runs" not in study:
        raise ConfigError(f"{listing} was written by another version of bisnn-pyro; run the study again to rewrite it")
    for run in study["runs"]:
        scores_path = study_dir / run["folder"] / SCORES_FILE
        if scores_path.is_file():
            scores = json.loads(scores_path.read_text())
            if not isinstance(scores, dict) or scores.get("format") != SCORES_FORMAT:
                raise ConfigError(f"{scores_path} was written by another version of bisnn-pyro; "
                                  f"run the study again (`bisnn-pyro study run ... --out {study_dir}`) to rescore it")
            runs.append({**run, "scores": scores["modes"]})
    return runs


def study_rows(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per finished run and mode: arm, seed, mode, metrics, then every configuration key."""
    return [
        {"arm": run["arm"], "seed": run["seed"], "mode": mode, "samples": scores["samples"],
         **{m: scores[m] for m in SCORES}, **_flat(run["config"])}
        for run in runs
        for mode, scores in run["scores"].items()
    ]


def _write_figures(runs: list[dict[str, Any]], rows: list[dict[str, Any]], out: Path) -> None:
    """The figures, in ``out``, or with several data sets (whose metrics share no scale) in a
    folder per data set."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault(_data_name(run["config"]), []).append(run)
    names = [group[0]["config"]["data"]["dataset"] for group in groups.values()]
    for d, (group, name) in enumerate(zip(groups.values(), names)):
        folder = out if len(groups) == 1 else out / (name if names.count(name) == 1 else f"{name}-{d + 1}")
        folder.mkdir(exist_ok=True)
        members = {(run["arm"], run["seed"]) for run in group}
        data_rows = [row for row in rows if (row["arm"], row["seed"]) in members]
        figures.arm_metrics(data_rows, folder / "metrics.png")
        figures.against_settings(data_rows, folder)
        figures.ensemble_sizes(data_rows, folder / "ensemble_size.png")
        headline = {(row["arm"], row["seed"]): row["mode"] for row in figures.headline_rows(data_rows)}
        records = [
            {"arm": run["arm"], "mode": mode, "dataset": name, "reliability": run["scores"][mode]["reliability"]}
            for run in group
            if (mode := headline[(run["arm"], run["seed"])]) and "reliability" in run["scores"][mode]
        ]
        if records:
            figures.pooled_reliability(records, folder / "reliability.png")


def _data_name(config: dict[str, Any]) -> str:
    data = config.get("data", {})
    return ", ".join(f"{key} {value}" for key, value in data.items() if value is not None)


def _comparable(first: tuple[str, str], second: tuple[str, str], data: dict[str, str], headline: set) -> bool:
    """Two predictors (arm, mode) compare in pairs when they are one arm's headline predictor and
    another of its modes, or two arms' headline predictors (or MAPs) on the same data."""
    if first[0] == second[0]:
        return first in headline or second in headline
    return data[first[0]] == data[second[0]] and ({first, second} <= headline or first[1] == second[1] == "map")


def write_study_report(study_dir: str | Path, out: str | Path) -> Path:
    """Write runs.csv, summary.csv, summary.md, paired.csv, paired.md and the figures (PNG) for the
    finished runs; ``out``."""
    runs = finished_runs(study_dir)
    rows = study_rows(runs)
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
            s = summarise([row[metric] for row in seeds.values()], bounds=RANGES[metric])
            summary.append({"arm": arm, "mode": mode, "metric": metric, "n": s.n, "mean": s.mean, "sd": s.sd,
                            "low": s.low, "high": s.high})
    _write_csv(out / "summary.csv", summary)
    data = {run["arm"]: _data_name(run["config"]) for run in runs}
    headline = {(row["arm"], row["mode"]) for row in figures.headline_rows(rows)}
    paired = []
    for first, second in itertools.combinations(sorted(by_arm), 2):
        if not _comparable(first, second, data, headline) or not set(by_arm[first]) & set(by_arm[second]):
            continue
        for metric in METRICS:
            values = [{seed: row[metric] for seed, row in by_arm[key].items()} for key in (first, second)]
            d = paired_difference(*values)
            paired.append({"first": f"{first[0]} {first[1]}", "second": f"{second[0]} {second[1]}", "metric": metric,
                           "seeds": d.summary.n, "mean_difference": d.summary.mean, "low": d.summary.low,
                           "high": d.summary.high, "first_lower_in": d.first_lower})
    if paired:
        _write_csv(out / "paired.csv", paired)
        _write_paired_markdown(out / "paired.md", paired)
    lines = ["| arm | mode | n | " + " | ".join(METRICS) + " |", "|" + " --- |" * (3 + len(METRICS))]
    for (arm, mode), seeds in sorted(by_arm.items()):
        cells = [next(s for s in summary if (s["arm"], s["mode"], s["metric"]) == (arm, mode, m)) for m in METRICS]
        lines.append(f"| {arm} | {mode} | {len(seeds)} | " + " | ".join(
            f"{c['mean']:.3f} [{c['low']:.3f}, {c['high']:.3f}]" for c in cells) + " |")
    fewest = min(len(seeds) for seeds in by_arm.values())
    caution = (f"  Some predictors have {fewest} seed{'s' if fewest > 1 else ''}: with so few, the interval is wide "
               "(t = 12.7 at two seeds) or absent; five or more make it informative." if fewest < 3 else "")
    (out / "summary.md").write_text(
        "Mean over seeds [95 % t-interval of the mean, cut to the values the metric can take; nan with one seed]."
        + caution + "\n\n" + "\n".join(lines) + "\n"
    )
    _write_figures(runs, rows, out)
    return out


def _write_paired_markdown(path: Path, paired: list[dict[str, Any]]) -> None:
    table = ["| first | second | seeds | " + " | ".join(f"{m} (first - second)" for m in PAIRED_MD) + " |",
             "|" + " --- |" * (3 + len(PAIRED_MD))]
    pairs: dict[tuple[str, str], dict[str, dict]] = {}
    for row in paired:
        pairs.setdefault((row["first"], row["second"]), {})[row["metric"]] = row
    for (first, second), metrics in pairs.items():
        cells = [metrics[m] for m in PAIRED_MD]
        table.append(f"| {first} | {second} | {cells[0]['seeds']} | " + " | ".join(
            f"{c['mean_difference']:+.3f} [{c['low']:+.3f}, {c['high']:+.3f}] ({c['first_lower_in']} lower)"
            for c in cells
        ) + " |")
    path.write_text(
        f"Per-seed differences, first minus second: their mean [95 % t-interval] and in how many seeds the "
        f"first was lower (for elpd_test, higher is better).  {len(pairs)} pairs x {len(PAIRED_MD)} metrics = "
        f"{len(pairs) * len(PAIRED_MD)} intervals, each on its own (not adjusted for their number: about one in "
        f"twenty intervals of equal predictors excludes 0).\n\n" + "\n".join(table) + "\n"
    )


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        writer.writerows(rows)
