"""Metrics, posterior diagnostics, ArviZ conversion, figures and reports on trained models."""

from .metrics import (
    accuracy,
    auroc,
    brier,
    confidence_histogram,
    ece,
    expected_entropy,
    mce,
    mutual_information,
    nll,
    pointwise_lpd,
    prediction_scores,
    predictive_entropy,
    reliability_curve,
    summary,
)

__all__ = [
    "accuracy",
    "auroc",
    "brier",
    "confidence_histogram",
    "ece",
    "expected_entropy",
    "mce",
    "mutual_information",
    "nll",
    "pointwise_lpd",
    "prediction_scores",
    "predictive_entropy",
    "reliability_curve",
    "summary",
]
