"""Calibration metrics: pure functions of predicted class probabilities (N, C) and labels (N,)."""

from __future__ import annotations

import torch


def _check(probs: torch.Tensor, labels: torch.Tensor) -> None:
    if probs.dim() != 2 or labels.shape != probs.shape[:1]:
        raise ValueError(
            f"expected probabilities (N, C) and labels (N,), got {tuple(probs.shape)} and {tuple(labels.shape)}"
        )


def accuracy(probs: torch.Tensor, labels: torch.Tensor) -> float:
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


def ece(probs: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> float:
    """Expected calibration error: top-class confidence vs accuracy in equal-width bins on [0, 1],
    weighted by the fraction of points in each bin."""
    _check(probs, labels)
    confidence, predicted = probs.double().max(-1)
    correct = (predicted == labels).double()
    index = torch.clamp((confidence * bins).ceil().long() - 1, 0, bins - 1)
    conf_sum = torch.zeros(bins, dtype=torch.float64).index_add_(0, index, confidence)
    acc_sum = torch.zeros(bins, dtype=torch.float64).index_add_(0, index, correct)
    return ((conf_sum - acc_sum).abs().sum() / len(labels)).item()


def summary(probs: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """accuracy, nll, brier and ece of one set of predictions."""
    return {
        "accuracy": accuracy(probs, labels),
        "nll": nll(probs, labels),
        "brier": brier(probs, labels),
        "ece": ece(probs, labels),
    }
