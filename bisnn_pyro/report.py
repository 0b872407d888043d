"""``bisnn-pyro report``: figures, a Markdown table and InferenceData for one or more run folders."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import arviz as az
import numpy as np
import torch
from tqdm.auto import tqdm

from .analysis import plots
from .analysis.curves import anytime_curve, ensemble_size_curve
from .analysis.inference_data import build_inference_data, site_layout
from .analysis.metrics import (
    auroc,
    ece,
    label_probs,
    mutual_information,
    pointwise_lpd,
    prediction_scores,
    predictive_entropy,
    standard_error_of_sum,
)
from .config.components import part
from .data import SpikeDataset
from .data.two_moons import X_RANGE, Y_RANGE, encode_points
from .errors import CompositionError
from .experiment import ConfigError, Run, open_run

TABLE_COLUMNS = ("accuracy", "nll", "brier", "ece", "mce", "entropy", "mi", "elpd_test", "elpd_test_se")
DRAW_ORDERS = 50  # random orders of the draws behind the ensemble-size curve's band
NEAR, FAR = 0.1, 0.5  # distances to the nearest training point that count as on / far from the data


@dataclass
class RunReport:
    name: str
    rows: list[dict]
    facts: dict
    inference_data: az.InferenceData
    pointwise_lpd: torch.Tensor  # of its last row's predictor (the ensemble; a point rule's MAP)


def _row(run_name: str, rule: str, mode: str, draw_probs: torch.Tensor, labels: torch.Tensor) -> dict:
    scores = prediction_scores(draw_probs, labels)
    return {
        "run": run_name, "rule": rule, "mode": mode, **scores, **standard_errors(draw_probs.mean(0), labels, scores)
    }


def standard_errors(probs: torch.Tensor, labels: torch.Tensor, scores: dict, resamples: int = 200) -> dict:
    """Standard errors over the test points: binomial for accuracy, from the pointwise log
    likelihoods for the NLL (the ensemble's: elpd_test_se / n), by a seeded bootstrap of the
    points for the ECE."""
    n = len(labels)
    generator = torch.Generator().manual_seed(0)
    resampled = [ece(probs[i], labels[i]) for i in torch.randint(n, (resamples, n), generator=generator)]
    return {
        "accuracy_se": math.sqrt(scores["accuracy"] * (1 - scores["accuracy"]) / n),
        "nll_se": scores["elpd_test_se"] / n,
        "ece_se": float(np.std(resampled, ddof=1)),
    }


def in_sample_criteria(draw_probs: torch.Tensor, labels: torch.Tensor) -> dict:
    """PSIS-LOO and WAIC (ArviZ) of the training points from K weight draws (K, N, C), where they
    estimate the elpd of new points; with the Pareto k-hat counts in ArviZ's three classes
    (good: k <= good_k, which ArviZ sets from K; bad: up to 1; very bad: above 1) and WAIC's
    warning.  ArviZ's own warnings reach the caller."""
    log_likelihood = torch.log(label_probs(draw_probs, labels).clamp_min(1e-300)).numpy()[None]
    idata = az.from_dict(
        posterior={"draw_index": np.arange(len(draw_probs))[None]}, log_likelihood={"y": log_likelihood}
    )
    loo, waic = az.loo(idata, pointwise=True), az.waic(idata, pointwise=True)
    k = loo.pareto_k.values
    return {
        "elpd_loo": float(loo.elpd_loo), "elpd_loo_se": float(loo.se), "p_loo": float(loo.p_loo),
        "good_k": float(loo.good_k), "k_good": int((k <= loo.good_k).sum()),
        "k_bad": int(((k > loo.good_k) & (k <= 1)).sum()), "k_very_bad": int((k > 1).sum()),
        "elpd_waic": float(waic.elpd_waic), "elpd_waic_se": float(waic.se), "p_waic": float(waic.p_waic),
        "waic_warning": bool(waic.warning),
    }


def two_moons_grid(resolution: int, steps: int, seed: int = 0):
    """A grid over the two-moons plane and its spike encoding: (gx, gy, points (G, 2), spikes)."""
    gx, gy = np.meshgrid(np.linspace(*X_RANGE, resolution), np.linspace(*Y_RANGE, resolution))
    points = torch.tensor(np.stack([gx.ravel(), gy.ravel()], -1), dtype=torch.float32)
    return gx, gy, points, encode_points(points, steps, torch.Generator().manual_seed(seed))


def report_run(run: Run, name: str, out: Path, samples: int, resolution: int, engine: str = "auto") -> RunReport:
    """Evaluate one run on its test set, write its figures and InferenceData under ``out/name``
    (drawing what the run would draw next)."""
    with run.trainer.draws.forked():
        try:
            return _report_run(run, name, out, samples, resolution, engine)
        except CompositionError as error:  # the packed engine, asked for, cannot run this run
            raise ConfigError(f"{name}: engine {engine!r}: {error}") from None


def _report_run(run: Run, name: str, out: Path, samples: int, resolution: int, engine: str) -> RunReport:
    bsnn, test, rule = run.bsnn, run.test, run.config.label
    if not isinstance(test, SpikeDataset):
        raise ConfigError(f"{name}: the report needs a test set held in memory (two-moons, digits-dvs)")
    folder = out / name
    point_rule = part("guide", run.config.guide).point_estimate
    draws = 1 if point_rule else samples  # a point mass gives identical draws
    run.check_prediction_memory(draws)
    if run.config.dataset == "two-moons":
        run.check_prediction_memory(draws, points=resolution**2)
    weights = bsnn.draw_weights(test.x, draws)
    ensemble_readouts = bsnn.readouts_with(weights, test.x, engine=engine)
    ensemble_probs = bsnn.likelihood.probs(ensemble_readouts)
    map_readouts = bsnn.predictive_readouts(test.x, "map", engine=engine)
    map_probs = bsnn.likelihood.probs(map_readouts)

    rows = [_row(name, rule, "map", map_probs, test.y)]
    if not point_rule:
        rows.append(_row(name, rule, "ensemble", ensemble_probs, test.y))
    idata_probs = ensemble_probs.expand(samples, *ensemble_probs.shape[1:]) if point_rule else ensemble_probs
    idata = build_inference_data(
        weights, idata_probs, test.y, **site_layout(bsnn), attrs={"run": name, "config": run.config.to_dict()}
    )
    folder.mkdir(parents=True, exist_ok=True)
    idata.to_netcdf(str(folder / "inference_data.nc"))

    predictions = (
        {"MAP": map_probs.mean(0)}
        if point_rule
        else {"MAP": map_probs.mean(0), f"ensemble K={draws}": ensemble_probs.mean(0)}
    )
    plots.reliability_diagram(predictions, test.y, folder / "reliability.png", title=name)
    burn_in = bsnn.likelihood.burn_in
    anytime = {"MAP": anytime_curve(map_readouts, test.y, burn_in)}
    if not point_rule:
        anytime[f"ensemble K={draws}"] = anytime_curve(ensemble_readouts, test.y, burn_in)
        plots.metric_curves(
            {name: ensemble_size_curve(ensemble_probs, test.y, orders=DRAW_ORDERS)},
            "samples",
            folder / "ensemble_size.png",
            "ensemble size K",
            name,
            band=f"5-95 % over {DRAW_ORDERS} orders of the draws",
        )
    plots.metric_curves(anytime, "step", folder / "anytime.png", "time steps read", name)

    facts: dict = {"draws": draws}
    if not point_rule:  # a point estimate's draws are one: nothing to importance-sample
        run.check_prediction_memory(draws, points=len(run.train.y))
        train_probs = bsnn.likelihood.probs(bsnn.readouts_with(weights, run.train.x, engine=engine))
        facts["in_sample"] = in_sample_criteria(train_probs, run.train.y)
    if run.config.dataset == "two-moons":
        facts.update(_uncertainty_maps(run, name, weights, ensemble_probs, folder, resolution, engine))
    history = [record for record in run.metrics() if record.get("posterior")]
    if history and not point_rule:  # a point estimate has no posterior to show
        plots.posterior_histograms(history, folder / "posterior.png", name)
    headline = map_probs if point_rule else ensemble_probs
    return RunReport(name, rows, facts, idata, pointwise_lpd(headline, test.y))


def _uncertainty_maps(
    run: Run, name: str, weights: dict, test_probs: torch.Tensor, folder: Path, resolution: int, engine: str
) -> dict:
    """Predictive probability, entropy and MI over the plane; MI on and off the data, and how well
    MI and entropy tell test points from points far from the data (AUROC)."""
    gx, gy, points, spikes = two_moons_grid(resolution, run.config.steps)
    draw_probs = run.bsnn.likelihood.probs(run.bsnn.readouts_with(weights, spikes, engine=engine))
    entropy, mi = predictive_entropy(draw_probs), mutual_information(draw_probs)
    maps = {
        "P(class 1)": draw_probs.mean(0)[:, 1].reshape(gx.shape).numpy(),
        "predictive entropy": entropy.reshape(gx.shape).numpy(),
        "mutual information": mi.reshape(gx.shape).numpy(),
    }
    plots.uncertainty_maps(
        gx, gy, maps, run.train.points.numpy(), run.train.y.numpy(), folder / "uncertainty.png", name
    )
    distance = torch.cdist(points, run.train.points).min(-1).values
    near, far = distance < NEAR, distance > FAR
    return {
        "mi_near_data": mi[near].mean().item(),
        "mi_far_from_data": mi[far].mean().item(),
        "ood_auroc_mi": auroc(mutual_information(test_probs), mi[far]),
        "ood_auroc_entropy": auroc(predictive_entropy(test_probs), entropy[far]),
    }


def _format_table(rows: Sequence[dict]) -> str:
    header = "| run | rule | mode | " + " | ".join(TABLE_COLUMNS) + " |"
    lines = [header, "|" + " --- |" * (3 + len(TABLE_COLUMNS))]
    for row in rows:
        values = [f"{row[c]:.4g}" if c in row else "" for c in TABLE_COLUMNS]
        lines.append(f"| {row['run']} | {row['rule']} | {row['mode']} | " + " | ".join(values) + " |")
    return "\n".join(lines)


def write_report(
    run_dirs: Sequence[str | Path],
    out: str | Path,
    *,
    samples: int = 20,
    resolution: int = 40,
    progress: bool | None = None,
    device: str | None = None,
    engine: str = "auto",
) -> Path:
    """Report on every run folder in ``run_dirs`` (on ``device``, default: each run's own; the
    network run by ``engine``, as in ``BayesianSNN.readouts_with``); returns the path of ``report.md``."""
    if samples < 2:
        raise ValueError(f"the report needs K >= 2 weight draws, got {samples}")
    out = Path(out)
    names = run_names(run_dirs)
    reports = []
    for name, directory in tqdm(
        list(zip(names, run_dirs)), desc="report", unit="run", disable=None if progress is None else not progress
    ):
        reports.append(report_run(open_run(directory, device), name, out, samples, resolution, engine))
    rows = [row for report in reports for row in report.rows]
    plots.comparison(rows, out / "comparison.png")
    return _write_markdown(out, reports, rows, samples)


def run_names(run_dirs: Sequence[str | Path]) -> list[str]:
    """A distinct name per run folder: its name, or where names repeat (a study's ``seed-0`` of
    each arm) its parent's name too (``bayes-seed-0``), or failing that its position."""
    paths = [Path(d).resolve() for d in run_dirs]
    names = [p.name or "run" for p in paths]
    names = [n if names.count(n) == 1 else f"{p.parent.name}-{n}" for p, n in zip(paths, names)]
    return [n if names.count(n) == 1 else f"{n}-{i}" for i, n in enumerate(names)]


def _elpd_differences(reports: list[RunReport]) -> list[str]:
    """Differences of held-out elpd against the best run, paired point by point on the shared test
    set (standard error sqrt(n) sd of the pointwise differences), as ``az.compare`` reports them
    for LOO; a table of runs, which may be seeds of one rule as well as different models."""
    lpd = {r.name: r.pointwise_lpd for r in reports}
    sizes = {len(v) for v in lpd.values()}
    if len(sizes) != 1:
        return ["The runs' test sets differ in size, so their elpd are not compared point by point.", ""]
    best = max(lpd, key=lambda name: lpd[name].sum().item())
    lines = [
        "## Held-out elpd, paired on the test points",
        "",
        "| run | elpd_test | se | elpd_diff | dse |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, values in sorted(lpd.items(), key=lambda item: -item[1].sum().item()):
        difference = lpd[best] - values
        dse = standard_error_of_sum(difference) if name != best else 0.0
        lines.append(
            f"| {name} | {values.sum().item():.2f} | {standard_error_of_sum(values):.2f} | "
            f"{difference.sum().item():.2f} | {dse:.2f} |"
        )
    return lines + [""]


def _in_sample_table(reports: list[RunReport]) -> list[str]:
    """PSIS-LOO and WAIC on the training points, with their diagnostics, for runs with posteriors."""
    criteria = {r.name: r.facts["in_sample"] for r in reports if "in_sample" in r.facts}
    if not criteria:
        return []
    lines = [
        "## PSIS-LOO and WAIC on the training points",
        "",
        "| run | elpd_loo | se | p_loo | k-hat good / bad / very bad (good_k) "
        "| elpd_waic | se | p_waic | WAIC warning |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, c in criteria.items():
        lines.append(
            f"| {name} | {c['elpd_loo']:.2f} | {c['elpd_loo_se']:.2f} | {c['p_loo']:.2f} | "
            f"{c['k_good']} / {c['k_bad']} / {c['k_very_bad']} ({c['good_k']:.2f}) | {c['elpd_waic']:.2f} | "
            f"{c['elpd_waic_se']:.2f} | {c['p_waic']:.2f} | {'yes' if c['waic_warning'] else 'no'} |"
        )
    return lines + [
        "",
        "From the report's K draws of the variational posterior, not of the exact posterior.  A point",
        "whose k-hat exceeds good_k (ArviZ's threshold for K draws) has an unreliable importance-sampling",
        "estimate; where many do, read the held-out elpd above instead.",
        "",
    ]


def _write_markdown(out: Path, reports: list[RunReport], rows: list[dict], samples: int) -> Path:
    lines = [
        "# bisnn-pyro report",
        "",
        f"Held-out test set; ensembles use K = {samples} exact weight draws (point-estimate rules: one).",
        "`entropy` and `mi` are mean predictive entropy and mean mutual information (nats);",
        "`elpd_test` is the summed log predictive density of the held-out test labels (each point's",
        "label probability averaged over the draws), `elpd_test_se` its standard error.  PSIS-LOO and",
        "WAIC estimate this quantity from the training points (below, with their diagnostics); on",
        "held-out points it is computed exactly, so they are not applied there.",
        "",
        _format_table(rows),
        "",
    ]
    if len(reports) > 1:
        lines += _elpd_differences(reports)
    lines += _in_sample_table(reports)
    lines += ["![comparison](comparison.png)", ""]
    for report in reports:
        lines += [f"## {report.name}", ""]
        facts = report.facts
        if "mi_near_data" in facts and facts["draws"] > 1:
            lines += [
                f"Mean mutual information on the grid: {facts['mi_near_data']:.4f} within {NEAR} of a training point, "
                f"{facts['mi_far_from_data']:.4f} farther than {FAR}. AUROC for telling those far points from test "
                f"points: {facts['ood_auroc_mi']:.3f} by mutual information, "
                f"{facts['ood_auroc_entropy']:.3f} by entropy.",
                "",
            ]
        elif "ood_auroc_entropy" in facts:
            lines += [
                f"A point estimate has no mutual information. AUROC for telling grid points farther than {FAR} "
                f"from the training data from test points by predictive entropy: {facts['ood_auroc_entropy']:.3f}.",
                "",
            ]
        for figure in ("reliability", "ensemble_size", "anytime", "uncertainty", "posterior"):
            if (out / report.name / f"{figure}.png").exists():
                lines.append(f"![{figure}]({report.name}/{figure}.png)")
        lines.append("")
    path = out / "report.md"
    path.write_text("\n".join(lines))
    (out / "report.json").write_text(json.dumps({"rows": rows, "facts": {r.name: r.facts for r in reports}}, indent=2))
    return path
