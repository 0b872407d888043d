"""Aggregation over seeds: a metric's mean, standard deviation and a percentile-bootstrap
interval of its mean; and paired differences between arms that share seeds.

With n seeds the bootstrap resamples the n values with replacement ``resamples`` times and takes
the (1 - level) / 2 and (1 + level) / 2 quantiles of the resampled means.  Its generator is its
own (seeded), so a report is the same every time it is made.  With fewer than two values there is
no interval (``nan`` bounds), which tables show as such rather than as a width of zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

RESAMPLES = 10_000
LEVEL = 0.95


@dataclass(frozen=True)
class Summary:
    """A metric over n values: mean, sample standard deviation (ddof 1) and an interval of the mean."""

    n: int
    mean: float
    sd: float
    low: float
    high: float


def bootstrap_interval(
    values: Sequence[float], level: float = LEVEL, resamples: int = RESAMPLES, seed: int = 0
) -> tuple[float, float]:
    """Percentile-bootstrap interval of the mean of ``values`` (nan, nan with fewer than two)."""
    data = np.asarray(values, dtype=np.float64)
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    if data.size < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, (resamples, data.size))].mean(axis=1)
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def summarise(values: Sequence[float], level: float = LEVEL, seed: int = 0) -> Summary:
    """n, mean, standard deviation and bootstrap interval of ``values``."""
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        raise ValueError("nothing to summarise: no values")
    sd = float(data.std(ddof=1)) if data.size > 1 else math.nan
    low, high = bootstrap_interval(data, level, seed=seed)
    return Summary(int(data.size), float(data.mean()), sd, low, high)


@dataclass(frozen=True)
class PairedDifference:
    """first - second over the seeds both have: its summary, and in how many seeds first < second."""

    summary: Summary
    seeds: tuple[int, ...]
    first_lower: int


def paired_difference(
    first: Mapping[int, float], second: Mapping[int, float], level: float = LEVEL, seed: int = 0
) -> PairedDifference:
    """Per-seed differences first[s] - second[s] over the seeds in both (e.g. the ECE of the Bayes
    ensemble minus that of ST-BiSNN, seed by seed), summarised."""
    seeds = tuple(sorted(set(first) & set(second)))
    if not seeds:
        raise ValueError("the two arms share no seed: nothing to pair")
    differences = [first[s] - second[s] for s in seeds]
    return PairedDifference(summarise(differences, level, seed), seeds, sum(d < 0 for d in differences))
