"""Turning real values into spike trains: raised-cosine population codes and Bernoulli spikes."""

from __future__ import annotations

import math

import torch


def raised_cosine_rates(
    values: torch.Tensor,
    low: torch.Tensor | float,
    high: torch.Tensor | float,
    neurons: int = 10,
    max_rate: float = 0.5,
) -> torch.Tensor:
    """Population code of each column of ``values`` (N, D) by ``neurons`` cells with raised-cosine
    tuning curves centred evenly on [low, high]; returns firing probabilities per step (N, D*neurons).

    Each curve is 0.5 (1 + cos(pi (v - c) / w)) on |v - c| < w with w twice the centre spacing,
    so every value inside the range excites two to four neighbouring cells.
    """
    if neurons < 2:
        raise ValueError(f"a population code needs >= 2 neurons, got {neurons}")
    if not 0 < max_rate <= 1:
        raise ValueError(f"max_rate is a per-step spike probability in (0, 1], got {max_rate}")
    low_t = torch.as_tensor(low, dtype=values.dtype)
    high_t = torch.as_tensor(high, dtype=values.dtype)
    unit = ((values - low_t) / (high_t - low_t)).clamp(0.0, 1.0)
    centres = torch.linspace(0.0, 1.0, neurons, dtype=values.dtype)
    width = 2.0 / (neurons - 1)
    distance = (unit.unsqueeze(-1) - centres).abs()
    rates = 0.5 * (1.0 + torch.cos(math.pi * distance / width)) * (distance < width)
    return (max_rate * rates).flatten(-2)


def bernoulli_spikes(rates: torch.Tensor, steps: int, generator: torch.Generator) -> torch.Tensor:
    """Independent Bernoulli spikes (N, steps, F) with per-step probabilities ``rates`` (N, F)."""
    if steps < 1:
        raise ValueError(f"number of time steps must be >= 1, got {steps}")
    expanded = rates.unsqueeze(1).expand(rates.shape[0], steps, rates.shape[1])
    return torch.bernoulli(expanded, generator=generator)
