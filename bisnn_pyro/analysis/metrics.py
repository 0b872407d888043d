"""Calibration and uncertainty metrics: pure functions of probabilities and labels.

Point metrics take predictive probabilities (N, C) and labels (N,).  Uncertainty decompositions
take per-draw probabilities (K, N, C): the predictive entropy H[E_w p] splits into the expected
entropy E_w H[p] (aleatoric) and the mutual information between prediction and weights
(epistemic).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

BIN_STRATEGIES = ("width", "mass")
INF = float("inf")
RANGES = {  # the values each score of ``prediction_scores`` can take
    "accuracy": (0.0, 1.0), "nll": (0.0, INF), "brier": (0.0, 2.0), "ece": (0.0, 1.0), "mce": (0.0, 1.0),
    "entropy": (0.0, INF), "mi": (0.0, INF), "elpd_test": (-INF, 0.0), "elpd_test_se": (0.0, INF),
}


def _check(probs: torch.Tensor, labels: torch.Tensor) -> None:
    if probs.dim() != 2 or labels.shape != probs.shape[:1]:
        raise ValueError(
            f"expected probabilities (N, C) and labels (N,), got {tuple(probs.shape)} and {tuple(labels.shape)}"
        )


def accuracy(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """The fraction of points whose most probable class is the label."""
    _check(probs, labels)
    return (probs.argmax(-1) == labels).double().mean().item()


def nll(probs: torch.Tensor, labels: torch.Tensor, eps: float = 1e-12) -> float:
    """Mean negative log-probability of the true class."""
    _check(probs, labels)
    picked = probs.gather(-1, labels.long().unsqueeze(-1)).squeeze(-1)
    return (-torch.log(picked.double().clamp_min(eps))).mean().item()


def brier(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean over points of the squared distance to the one-hot label, summed over classes."""
    _check(probs, labels)
    onehot = torch.nn.functional.one_hot(labels.long(), probs.shape[-1]).double()
    return ((probs.double() - onehot) ** 2).sum(-1).mean().item()


class ReliabilityCurve(NamedTuple):
    """Per bin: mean top-class confidence, accuracy, number of points; and the bin edges."""

    confidence: torch.Tensor
    accuracy: torch.Tensor
    count: torch.Tensor
    edges: torch.Tensor


def reliability_curve(
    probs: torch.Tensor, labels: torch.Tensor, bins: int = 15, strategy: str = "width"
) -> ReliabilityCurve:
    """Bins of the top-class confidence: equal-width on [0, 1] (``width``, bins (lo, hi]) or
    holding equal numbers of points (``mass``).  Empty bins have NaN confidence and accuracy."""
    _check(probs, labels)
    if bins < 1:
        raise ValueError(f"number of bins must be >= 1, got {bins}")
    if strategy not in BIN_STRATEGIES:
        raise ValueError(f"unknown binning {strategy!r}; expected one of {BIN_STRATEGIES}")
    confidence, predicted = probs.double().max(-1)
    correct = (predicted == labels).double()
    if strategy == "width":
        edges = torch.linspace(0.0, 1.0, bins + 1, dtype=torch.float64)
        index = torch.clamp((confidence * bins).ceil().long() - 1, 0, bins - 1)
    else:
        order = confidence.argsort()
        index = torch.empty_like(order)
        index[order] = torch.arange(len(order)) * bins // len(order)
        upper = torch.full((bins,), float("nan"), dtype=torch.float64)
        upper = upper.scatter_reduce(0, index, confidence, "amax", include_self=False)
        edges = torch.cat([torch.zeros(1, dtype=torch.float64), upper])
    count = torch.zeros(bins, dtype=torch.float64).index_add_(0, index, torch.ones_like(confidence))
    conf_sum = torch.zeros(bins, dtype=torch.float64).index_add_(0, index, confidence)
    acc_sum = torch.zeros(bins, dtype=torch.float64).index_add_(0, index, correct)
    return ReliabilityCurve(conf_sum / count, acc_sum / count, count, edges)


def ece(probs: torch.Tensor, labels: torch.Tensor, bins: int = 15, strategy: str = "width") -> float:
    """Expected calibration error: |confidence - accuracy| per bin, weighted by the bin's share."""
    curve = reliability_curve(probs, labels, bins, strategy)
    gaps = (curve.confidence - curve.accuracy).abs().nan_to_num(0.0)
    return (gaps * curve.count).sum().item() / len(labels)


def mce(probs: torch.Tensor, labels: torch.Tensor, bins: int = 15, strategy: str = "width") -> float:
    """Maximum calibration error: the largest |confidence - accuracy| over non-empty bins."""
    curve = reliability_curve(probs, labels, bins, strategy)
    return (curve.confidence - curve.accuracy).abs()[curve.count > 0].max().item()


def confidence_histogram(probs: torch.Tensor, bins: int = 15) -> tuple[torch.Tensor, torch.Tensor]:
    """Counts of the top-class confidence in equal-width bins on [0, 1]: (counts, edges)."""
    confidence = probs.double().max(-1).values
    counts = torch.histc(confidence, bins=bins, min=0.0, max=1.0)
    return counts, torch.linspace(0.0, 1.0, bins + 1, dtype=torch.float64)


def _entropy(probs: torch.Tensor) -> torch.Tensor:
    probs = probs.double()
    return -(probs * torch.log(probs.clamp_min(1e-300))).sum(-1)


def predictive_entropy(probs: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of each point's predictive distribution; (N, C) or per-draw (K, N, C)."""
    return _entropy(probs.mean(0) if probs.dim() == 3 else probs)


def expected_entropy(draw_probs: torch.Tensor) -> torch.Tensor:
    """E_w H[p(y | x, w)] per point, from per-draw probabilities (K, N, C)."""
    if draw_probs.dim() != 3:
        raise ValueError(f"expected per-draw probabilities (K, N, C), got {tuple(draw_probs.shape)}")
    return _entropy(draw_probs).mean(0)


def mutual_information(draw_probs: torch.Tensor) -> torch.Tensor:
    """I(y; w | x) = H[E_w p] - E_w H[p] per point (>= 0): the epistemic part of the uncertainty."""
    return (predictive_entropy(draw_probs) - expected_entropy(draw_probs)).clamp_min(0.0)


def label_probs(draw_probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """p(y_i | x_i, w_k) of each point's label under each draw: (K, N, C) -> (K, N), float64."""
    return draw_probs.double().gather(-1, labels.view(1, -1, 1).expand(len(draw_probs), -1, 1)).squeeze(-1)


def pointwise_lpd(draw_probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """log p(y_i | x_i) of each test point under the predictive distribution: the log of the
    label's probability averaged over the K draws (log-mean-exp of the per-draw likelihoods)."""
    return torch.log(label_probs(draw_probs, labels).mean(0).clamp_min(1e-300))


def standard_error_of_sum(pointwise: torch.Tensor) -> float:
    """sqrt(n) times the standard deviation of ``pointwise``: the standard error of its sum."""
    return math.sqrt(len(pointwise)) * pointwise.std().item() if len(pointwise) > 1 else math.nan


def auroc(in_scores: torch.Tensor, out_scores: torch.Tensor) -> float:
    """Area under the ROC curve of a score meant to be higher on out-of-distribution inputs:
    P(score_out > score_in) + 0.5 P(tie), from ranks (Mann-Whitney U)."""
    if in_scores.numel() == 0 or out_scores.numel() == 0:
        raise ValueError("AUROC needs at least one in-distribution and one out-of-distribution score")
    scores = torch.cat([in_scores.flatten(), out_scores.flatten()]).double()
    _, inverse, counts = torch.unique(scores, return_inverse=True, return_counts=True)
    last = counts.cumsum(0).double()
    ranks = ((last - counts + 1 + last) / 2)[inverse]  # tied scores share their mean rank
    n_in, n_out = in_scores.numel(), out_scores.numel()
    u = ranks[n_in:].sum() - n_out * (n_out + 1) / 2
    return (u / (n_in * n_out)).item()


def summary(probs: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> dict[str, float]:
    """accuracy, nll, brier, ece and mce of one set of predictions."""
    return {
        "accuracy": accuracy(probs, labels),
        "nll": nll(probs, labels),
        "brier": brier(probs, labels),
        "ece": ece(probs, labels, bins),
        "mce": mce(probs, labels, bins),
    }


def reliability_sums(probs: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> dict[str, list[float]]:
    """The equal-width reliability bins as sums, which add up over runs: each bin's count, summed
    top-class confidence and number of correct predictions."""
    curve = reliability_curve(probs, labels, bins)
    return {
        "count": curve.count.tolist(),
        "confidence_sum": (curve.confidence * curve.count).nan_to_num(0.0).tolist(),
        "correct_sum": (curve.accuracy * curve.count).nan_to_num(0.0).tolist(),
    }


def prediction_scores(draw_probs: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> dict[str, float]:
    """Every score of one predictor from its per-draw probabilities (K, N, C): the ``summary``
    of the averaged prediction, mean predictive entropy and mutual information, and the held-out
    elpd (the sum of ``pointwise_lpd``) with its standard error."""
    probs = draw_probs.mean(0)
    lpd = pointwise_lpd(draw_probs, labels)
    return {
        **summary(probs, labels, bins),
        "entropy": predictive_entropy(probs).mean().item(),
        "mi": mutual_information(draw_probs).mean().item(),
        "elpd_test": lpd.sum().item(),
        "elpd_test_se": standard_error_of_sum(lpd),
    }
