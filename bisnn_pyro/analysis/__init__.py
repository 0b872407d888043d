"""Metrics, posterior diagnostics, ArviZ conversion, figures and reports on trained models, and
operation and energy accounting (``cost``)."""

from .cost import ENERGY_PJ, SpikeTotals, cost_table, count_spikes, network_cost, run_cost
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
    "ENERGY_PJ",
    "SpikeTotals",
    "accuracy",
    "auroc",
    "brier",
    "confidence_histogram",
    "cost_table",
    "count_spikes",
    "ece",
    "expected_entropy",
    "mce",
    "mutual_information",
    "network_cost",
    "nll",
    "pointwise_lpd",
    "prediction_scores",
    "predictive_entropy",
    "reliability_curve",
    "run_cost",
    "summary",
]
