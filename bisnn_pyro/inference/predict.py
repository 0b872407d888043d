"""Predictions from a guide: the posterior mode, an ensemble of exact draws, or the mean weights."""

from __future__ import annotations

from typing import Callable

import pyro
import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample

from ..adapters.pyro_internals import local_params

MODES = ("map", "ensemble", "mean")


def point_weights(guide: Callable, mode: str) -> dict[str, torch.Tensor]:
    """MAP (``guide.median()``) or mean (``guide.mean()``, else the median) weights per site
    (read with module-local parameters, as the guide trained: an autoguide's ``median`` runs it)."""
    if mode not in ("map", "mean"):
        raise ValueError(f"unknown point-prediction mode {mode!r}; expected 'map' or 'mean'")
    mean = getattr(guide, "mean", None) if mode == "mean" else None
    with local_params():
        return mean() if callable(mean) else guide.median()


@torch.no_grad()
def sample_weights(guide: torch.nn.Module, example_input: torch.Tensor, samples: int) -> dict[str, torch.Tensor]:
    """``samples`` exact draws per site as one tensor with a leading sample dimension."""
    was_training = guide.training
    guide.eval()
    try:
        with pyro.plate("weight_draws", samples, dim=-2), local_params():
            trace = poutine.trace(guide).get_trace(example_input)
    finally:
        guide.train(was_training)
    return {
        name: site["value"].detach()
        for name, site in trace.nodes.items()
        if site["type"] == "sample" and not site["is_observed"] and not site_is_subsample(site)
    }


def check_mode(mode: str, samples: int) -> None:
    if mode not in MODES:
        raise ValueError(f"unknown prediction mode {mode!r}; expected one of {MODES}")
    if samples < 1:
        raise ValueError(f"number of samples K must be >= 1, got {samples}")


@torch.no_grad()
def readouts_with_weights(net: Callable, weights: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Run ``net`` on ``x`` with its weight sites fixed to ``weights``."""
    with local_params():
        return poutine.condition(net, data=weights)(x).readouts
