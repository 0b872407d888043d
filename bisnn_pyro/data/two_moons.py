"""The two-moons toy task of the BiSNN paper, population-coded into spike trains (no download)."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from .encoding import bernoulli_spikes, raised_cosine_rates

# Ranges covering both moons with noise 0.1; points outside are clamped onto the edge neurons.
X_RANGE = (-1.5, 2.5)
Y_RANGE = (-1.0, 1.5)
NEURONS = 10  # encoding neurons per coordinate


class SpikeDataset(NamedTuple):
    """x: spikes (N, T, features) in {0, 1}; y: class labels (N,); points: the encoded values."""

    x: torch.Tensor
    y: torch.Tensor
    points: torch.Tensor


def make_moons(n: int, noise: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """n points on two interleaved half circles (class 0 upper, class 1 lower) plus Gaussian noise."""
    if n < 2:
        raise ValueError(f"two moons needs at least 2 points, got {n}")
    labels = torch.arange(n) % 2
    angle = math.pi * torch.rand(n, generator=generator, dtype=torch.float64)
    upper = torch.stack([torch.cos(angle), torch.sin(angle)], -1)
    lower = torch.stack([1.0 - torch.cos(angle), 0.5 - torch.sin(angle)], -1)
    points = torch.where(labels.unsqueeze(-1) == 0, upper, lower)
    points = points + noise * torch.randn(n, 2, generator=generator, dtype=torch.float64)
    return points.float(), labels


def encode_points(
    points: torch.Tensor,
    steps: int,
    generator: torch.Generator,
    neurons: int = NEURONS,
    max_rate: float = 0.5,
) -> torch.Tensor:
    """Spike trains (N, steps, 2 * neurons) for 2-D points."""
    low = torch.tensor([X_RANGE[0], Y_RANGE[0]])
    high = torch.tensor([X_RANGE[1], Y_RANGE[1]])
    rates = raised_cosine_rates(points, low, high, neurons, max_rate)
    return bernoulli_spikes(rates, steps, generator)


def two_moons(
    n: int = 200,
    steps: int = 100,
    seed: int = 0,
    noise: float = 0.1,
    neurons: int = NEURONS,
    max_rate: float = 0.5,
) -> SpikeDataset:
    """A seeded two-moons spike data set; use different seeds for training and test sets."""
    generator = torch.Generator().manual_seed(seed)
    points, labels = make_moons(n, noise, generator)
    return SpikeDataset(encode_points(points, steps, generator, neurons, max_rate), labels, points)
