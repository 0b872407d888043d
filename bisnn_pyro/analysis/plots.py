"""Figures (matplotlib, written as PNG): each function draws one figure and saves it.

Figures are built with ``matplotlib.figure.Figure`` rather than pyplot, so no backend is chosen
and nothing global (a notebook's backend, open figures) is touched.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from .metrics import confidence_histogram, ece, reliability_curve


def _subplots(rows: int, columns: int, width: float, height: float, **kwargs):
    figure = Figure(figsize=(width, height))
    return figure, figure.subplots(rows, columns, squeeze=False, **kwargs)


def _save(figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return path


def reliability_diagram(
    predictions: Mapping[str, torch.Tensor], labels: torch.Tensor, path: str | Path, title: str = "", bins: int = 15
) -> Path:
    """Reliability diagram (accuracy against confidence per bin) above the confidence histogram,
    one column per prediction mode (name -> probabilities (N, C))."""
    figure, axes = _subplots(2, len(predictions), 4 * len(predictions), 6, gridspec_kw={"height_ratios": [3, 1]})
    for column, (name, probs) in enumerate(predictions.items()):
        curve = reliability_curve(probs, labels, bins)
        centres = (curve.edges[:-1] + curve.edges[1:]).numpy() / 2
        filled = curve.count.numpy() > 0
        top, bottom = axes[0, column], axes[1, column]
        top.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
        count, hit = curve.count.numpy()[filled], curve.accuracy.numpy()[filled]
        spread = np.sqrt(hit * (1 - hit) / count)  # a bin's accuracy is a proportion of its count points
        top.bar(centres[filled], hit, width=1 / bins, edgecolor="k", alpha=0.7, yerr=spread, capsize=2,
                error_kw={"lw": 0.8}, label="accuracy (+- binomial s.e.)")
        for x, y, n in zip(centres[filled], hit, count):
            top.text(x, min(y + 0.03, 0.95), f"{int(n)}", ha="center", fontsize=6)
        top.plot(
            curve.confidence.numpy()[filled],
            curve.accuracy.numpy()[filled],
            "o-",
            color="C3",
            ms=3,
            label="accuracy at mean confidence",
        )
        calibration = ece(probs, labels, bins)
        top.set(title=f"{title} {name}: ECE {calibration:.3f}".strip(), ylabel="accuracy in bin (points above)",
                xlim=(0, 1), ylim=(0, 1))
        top.legend(loc="upper left", fontsize=8)
        counts, edges = confidence_histogram(probs, bins)
        bottom.bar((edges[:-1] + edges[1:]).numpy() / 2, counts.numpy() / len(labels), width=1 / bins, edgecolor="k")
        bottom.set(xlabel="top-class confidence", ylabel="share of points")
    return _save(figure, path)


def metric_curves(
    curves: Mapping[str, dict], x_key: str, path: str | Path, xlabel: str, title: str = "", band: str = ""
) -> Path:
    """Accuracy and ECE against ``x_key`` (time steps, ensemble size), one line per curve, with a
    band from ``<metric>_low`` to ``<metric>_high`` where a curve has them (``band`` names it)."""
    figure, ((left, right),) = _subplots(1, 2, 9, 3.5)
    for n, (name, curve) in enumerate(curves.items()):
        for axis, metric in ((left, "accuracy"), (right, "ece")):
            axis.plot(curve[x_key], curve[metric], color=f"C{n}", label=name)
            if f"{metric}_low" in curve:
                axis.fill_between(curve[x_key], curve[f"{metric}_low"], curve[f"{metric}_high"], color=f"C{n}",
                                  alpha=0.25, label=f"{name}: {band}" if band else None)
    left.set(xlabel=xlabel, ylabel="accuracy", title=title)
    right.set(xlabel=xlabel, ylabel="ECE (15 bins)", title=title)
    left.legend(fontsize=8)
    return _save(figure, path)


def uncertainty_maps(
    grid_x: np.ndarray,
    grid_y: np.ndarray,
    maps: Mapping[str, np.ndarray],
    points: np.ndarray,
    point_labels: np.ndarray,
    path: str | Path,
    title: str = "",
) -> Path:
    """Maps over the input plane (name -> values shaped like the grid) with the training points."""
    figure, axes = _subplots(1, len(maps), 4.2 * len(maps), 3.6)
    for axis, (name, values) in zip(axes[0], maps.items()):
        image = axis.pcolormesh(grid_x, grid_y, values, shading="auto", cmap="viridis")
        figure.colorbar(image, ax=axis)
        axis.scatter(points[:, 0], points[:, 1], c=point_labels, cmap="coolwarm", s=6, edgecolors="w", linewidths=0.3)
        axis.set(title=f"{title} {name}".strip(), xlabel="x1", ylabel="x2")
    return _save(figure, path)


def posterior_histograms(history: Sequence[dict], path: str | Path, title: str = "") -> Path:
    """P(w = +1) histograms per layer (columns) and epoch (rows of the image), log colour scale,
    from the ``posterior`` records of ``metrics.jsonl``."""
    layers = list(history[0]["posterior"])
    figure, axes = _subplots(1, len(layers), 4.2 * len(layers), 3.6)
    for axis, layer in zip(axes[0], layers):
        counts = np.array([record["posterior"][layer]["p_plus_hist"] for record in history], dtype=float)
        image = axis.imshow(np.log10(counts + 1), aspect="auto", origin="lower", extent=(0, 1, 0.5, len(history) + 0.5))
        figure.colorbar(image, ax=axis, label="log10(1 + weights)")
        axis.set(title=f"{title} {layer}".strip(), xlabel="P(w = +1)", ylabel="epoch")
    return _save(figure, path)


def comparison(table: Sequence[dict], path: str | Path, metrics: Sequence[str] = ("accuracy", "ece", "nll")) -> Path:
    """Side-by-side bars of ``metrics`` for every row (one row per run and prediction mode), with
    error bars of one standard error over the test points where a row has ``<metric>_se``."""
    figure, axes = _subplots(1, len(metrics), 4 * len(metrics), 4.2)
    modes = list(dict.fromkeys(row["mode"] for row in table))
    colours = [f"C{modes.index(row['mode'])}" for row in table]
    for axis, metric in zip(axes[0], metrics):
        errors = [row.get(f"{metric}_se", 0.0) for row in table]
        axis.bar(range(len(table)), [row[metric] for row in table], color=colours, yerr=errors, capsize=3)
        axis.set_xticks(range(len(table)), [row["run"] for row in table], fontsize=7, rotation=40, ha="right")
        axis.set(title=f"{metric} (+- 1 s.e. over test points)")
    handles = [Patch(color=f"C{i}", label=mode) for i, mode in enumerate(modes)]
    axes[0][-1].legend(handles=handles, title="prediction", fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    return _save(figure, path)
