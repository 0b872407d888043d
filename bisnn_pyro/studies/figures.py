"""A study's figures, every value a mean over seeds with its 95 % t-interval: the metrics
per arm, the metrics against each setting the study varies, the ensemble's metrics against its
size, and reliability diagrams pooled over seeds (arms overlaid); one set per data set."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from matplotlib.ticker import NullFormatter

from ..analysis.metrics import RANGES
from ..analysis.plots import _save, _subplots
from .statistics import summarise

FIGURE_METRICS = ("accuracy", "nll", "ece", "elpd_test")
LABELS = {"accuracy": "test accuracy", "nll": "NLL (nats)", "ece": "ECE (15 bins)", "elpd_test": "held-out elpd"}


def _interval(values: Sequence[float], metric: str) -> tuple[float, float, float]:
    """Mean and the distances down and up to its interval's ends (0 with one seed)."""
    s = summarise(values, bounds=RANGES[metric])
    if s.n < 2:
        return s.mean, 0.0, 0.0
    return s.mean, s.mean - s.low, s.high - s.mean


def _by(rows: Sequence[dict], *keys: str) -> dict[tuple, list[dict]]:
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(row.get(k) for k in keys), []).append(row)
    return groups


def _ticks_at(axis, values: set) -> None:
    """Ticks at exactly ``values`` (the settings a study ran), on a log axis where they span a
    factor of 10 or more."""
    ticks = sorted(values)
    if min(ticks) > 0 and max(ticks) / min(ticks) >= 10:
        axis.set_xscale("log")
    axis.set_xticks(ticks, [f"{v:g}" for v in ticks])
    axis.xaxis.set_minor_formatter(NullFormatter())


def _common_name(arms: Sequence[str]) -> str:
    """What the names of arms that differ in one setting share ("bayes" of "bayes-tau0.25" and
    "bayes-tau1"), or their names joined."""
    common = os.path.commonprefix(list(arms)).rstrip("-_=.0123456789")
    return common or " / ".join(arms)


def _spread(values: Sequence[float]) -> float:
    """Sample standard deviation (0 for fewer than two values)."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def headline_rows(rows: Sequence[dict]) -> list[dict]:
    """Each arm's rows of its headline predictor: the ensemble, or the MAP where it has none."""
    ensembles = {row["arm"] for row in rows if row["mode"] == "ensemble"}
    return [row for row in rows if row["mode"] == ("ensemble" if row["arm"] in ensembles else "map")]


def arm_metrics(rows: Sequence[dict], path: Path) -> Path:
    """One panel per metric: a point per arm and mode (ensemble, MAP) with its interval."""
    shown = [row for row in rows if row["mode"] in ("ensemble", "map")]
    arms = list(dict.fromkeys(row["arm"] for row in shown))
    modes = list(dict.fromkeys(row["mode"] for row in shown))
    figure, axes = _subplots(1, len(FIGURE_METRICS), 3.6 * len(FIGURE_METRICS), 1.2 + 0.32 * len(arms), sharey=True)
    for axis, metric in zip(axes[0], FIGURE_METRICS):
        for m, mode in enumerate(modes):
            for i, ((arm,), group) in enumerate(_by([r for r in shown if r["mode"] == mode], "arm").items()):
                mean, down, up = _interval([r[metric] for r in group], metric)
                y = arms.index(arm) + (m - (len(modes) - 1) / 2) * 0.25
                axis.errorbar(mean, y, xerr=[[down], [up]], fmt="o", color=f"C{m}", ms=4, capsize=2,
                              label=mode if i == 0 else None)
        axis.set(xlabel=LABELS[metric])
        axis.grid(axis="x", alpha=0.3)
    axes[0][0].set_yticks(range(len(arms)), arms, fontsize=8)
    axes[0][0].invert_yaxis()
    axes[0][-1].legend(title="prediction", fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    figure.suptitle("mean over seeds, 95 % t-interval")
    return _save(figure, path)


def _settings(rows: Sequence[dict]) -> list[str]:
    """The configuration keys of any row (``section.option``), the seed aside."""
    return [k for k in dict.fromkeys(k for row in rows for k in row) if "." in k and k != "training.seed"]


def varied_settings(rows: Sequence[dict]) -> list[str]:
    """The numeric configuration keys whose values differ between arms (the seed aside)."""
    varied = []
    for key in _settings(rows):
        values = {row.get(key) for row in rows}
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values if v not in (None, ""))
        if numeric and len(values - {None, ""}) > 1:
            varied.append(key)
    return varied


def against_settings(rows: Sequence[dict], out: Path) -> list[Path]:
    """For each varied numeric setting, the headline metrics against its value, one line per
    group of arms that differ in that setting alone; a figure per setting with such a group."""
    rows = headline_rows(rows)
    varied = varied_settings(rows)
    others = _settings(rows)
    paths = []
    for key in varied:
        fixed = [k for k in others if k != key]
        lines = {}
        for _, group in _by(rows, *fixed).items():
            values = sorted({row.get(key) for row in group if row.get(key) not in (None, "")})
            if len(values) > 1:
                lines[_common_name(sorted({row["arm"] for row in group}))] = (values, group)
        if not lines:
            continue
        figure, axes = _subplots(1, len(FIGURE_METRICS), 3.6 * len(FIGURE_METRICS), 3.4)
        for axis, metric in zip(axes[0], FIGURE_METRICS):
            for n, (name, (values, group)) in enumerate(lines.items()):
                stats = [_interval([r[metric] for r in group if r.get(key) == v], metric) for v in values]
                means = [s[0] for s in stats]
                axis.errorbar(values, means, yerr=[[s[1] for s in stats], [s[2] for s in stats]], fmt="o-",
                              color=f"C{n}", capsize=3, label=name)
            axis.set(xlabel=key, ylabel=LABELS[metric])
            _ticks_at(axis, {v for values, _ in lines.values() for v in values})
            axis.grid(alpha=0.3)
        axes[0][-1].legend(title="arms", fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
        figure.suptitle(f"headline predictor against {key}: mean over seeds, 95 % t-interval")
        paths.append(_save(figure, out / f"against_{key}.png"))
    return paths


def ensemble_sizes(rows: Sequence[dict], path: Path) -> Path | None:
    """Metrics of the ensemble against its size K (the MAP beside it at K = 1), per arm with
    ensembles of several sizes: mean over seeds with a band for the interval."""
    ensemble_rows = [row for row in rows if row["mode"].startswith("ensemble")]
    arms = [arm for (arm,), group in _by(ensemble_rows, "arm").items() if len({r["samples"] for r in group}) > 1]
    if not arms:
        return None
    figure, axes = _subplots(1, len(FIGURE_METRICS), 3.6 * len(FIGURE_METRICS), 3.4)
    for axis, metric in zip(axes[0], FIGURE_METRICS):
        for n, arm in enumerate(arms):
            sizes = _by([r for r in ensemble_rows if r["arm"] == arm], "samples")
            ks = sorted(k for (k,) in sizes)
            stats = np.array([_interval([r[metric] for r in sizes[(k,)]], metric) for k in ks])
            axis.plot(
                ks, stats[:, 0], marker="os^Dv"[n % 5], ls=("-", "--", ":", "-.")[n % 4], color=f"C{n}", label=arm, ms=3
            )
            axis.fill_between(ks, stats[:, 0] - stats[:, 1], stats[:, 0] + stats[:, 2], color=f"C{n}", alpha=0.2)
            maps = [r[metric] for r in rows if r["arm"] == arm and r["mode"] == "map"]
            if maps:
                axis.plot([1], [np.mean(maps)], "x", color=f"C{n}", ms=7)
        axis.set(xlabel="ensemble size K (x: the MAP)", ylabel=LABELS[metric])
        _ticks_at(axis, {r["samples"] for r in ensemble_rows if r["arm"] in arms} | {1})
        axis.grid(alpha=0.3)
    axes[0][-1].legend(title="arm", fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    figure.suptitle("ensemble of the first K draws: mean over seeds, band: 95 % t-interval")
    return _save(figure, path)


def pooled_reliability(records: Sequence[dict[str, Any]], path: Path) -> Path:
    """Reliability diagrams of each arm's headline predictor on one data set, bins pooled over its
    seeds (accuracy at the pooled mean confidence, bars: the spread of the bin's accuracy over
    seeds (s.d.)), with the pooled bin counts below."""
    figure, axes = _subplots(2, 1, 7.5, 7, gridspec_kw={"height_ratios": [3, 1.3]})
    top, bottom = axes[:, 0]
    name = records[0]["dataset"]
    top.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    for n, ((arm,), runs) in enumerate(_by(records, "arm").items()):
        bins = [r["reliability"] for r in runs]
        count = np.sum([b["count"] for b in bins], 0)
        filled = count > 0
        confidence = np.sum([b["confidence_sum"] for b in bins], 0)[filled] / count[filled]
        accuracy = np.sum([b["correct_sum"] for b in bins], 0)[filled] / count[filled]
        spread = np.array([_spread([b["correct_sum"][i] / b["count"][i] for b in bins if b["count"][i] > 0])
                           for i in np.flatnonzero(filled)])
        ece = np.abs(confidence - accuracy) @ count[filled] / count.sum()
        bars = [np.minimum(spread, accuracy), np.minimum(spread, 1 - accuracy)]  # within [0, 1]
        top.errorbar(confidence, accuracy, yerr=bars, fmt="o-", color=f"C{n}", ms=3, capsize=2,
                     label=f"{arm} ({runs[0]['mode']}, {len(runs)} seeds): pooled ECE {ece:.3f}")
        bottom.stairs(count / len(runs), np.linspace(0, 1, len(count) + 1), color=f"C{n}", lw=1.5)
    top.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="top-class confidence (pooled mean in bin)",
            ylabel="accuracy in bin", title=f"reliability pooled over seeds: {name}")
    top.legend(fontsize=7, loc="best")
    bottom.set(xlabel="top-class confidence", ylabel="points per seed", xlim=(0, 1))
    return _save(figure, path)
