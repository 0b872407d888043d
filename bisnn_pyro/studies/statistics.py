"""Aggregation over seeds: a metric's mean, standard deviation and a Student-t interval of its
mean; and paired differences between arms that share seeds.

The interval is mean +- t_{(1+level)/2, n-1} s / sqrt(n): exact for normally distributed values
at any n, which matters with the 3-10 seeds a study has.  (The percentile bootstrap of the mean,
which this module used first, is far too narrow there: over 1,000 normal samples its nominal
95 % interval covered the mean in 76 % of them at 3 values, 83 % at 5 and 91 % at 10, against
94.5 %, 93.8 % and 95.3 % for the t-interval; tests/test_studies.py checks the t-interval's
coverage.)  With fewer than two values there is no interval (``nan`` bounds), which tables show
as such rather than as a width of zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
from scipy import stats

LEVEL = 0.95


@dataclass(frozen=True)
class Summary:
    """A metric over n values: mean, sample standard deviation (ddof 1) and an interval of the mean."""

    n: int
    mean: float
    sd: float
    low: float
    high: float


def mean_interval(values: Sequence[float], level: float = LEVEL) -> tuple[float, float]:
    """Student-t interval of the mean of ``values`` (nan, nan with fewer than two)."""
    data = np.asarray(values, dtype=np.float64)
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    if data.size < 2:
        return math.nan, math.nan
    half = float(stats.t.ppf((1 + level) / 2, data.size - 1)) * data.std(ddof=1) / math.sqrt(data.size)
    return float(data.mean() - half), float(data.mean() + half)


def summarise(values: Sequence[float], level: float = LEVEL, bounds: tuple[float, float] | None = None) -> Summary:
    """n, mean, standard deviation and t-interval of the mean of ``values``; the interval cut to
    ``bounds``, the values the quantity can take (an accuracy's mean lies in [0, 1] whatever
    the t-distribution says with two seeds)."""
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        raise ValueError("nothing to summarise: no values")
    sd = float(data.std(ddof=1)) if data.size > 1 else math.nan
    low, high = mean_interval(data, level)
    if bounds is not None and data.size > 1:
        low, high = max(low, bounds[0]), min(high, bounds[1])
    return Summary(int(data.size), float(data.mean()), sd, low, high)


@dataclass(frozen=True)
class PairedDifference:
    """first - second over the seeds both have: its summary, and in how many seeds first < second."""

    summary: Summary
    seeds: tuple[int, ...]
    first_lower: int


def paired_difference(
    first: Mapping[int, float], second: Mapping[int, float], level: float = LEVEL
) -> PairedDifference:
    """Per-seed differences first[s] - second[s] over the seeds in both (e.g. the ECE of the Bayes
    ensemble minus that of ST-BiSNN, seed by seed), summarised."""
    seeds = tuple(sorted(set(first) & set(second)))
    if not seeds:
        raise ValueError("the two arms share no seed: nothing to pair")
    differences = [first[s] - second[s] for s in seeds]
    return PairedDifference(summarise(differences, level), seeds, sum(d < 0 for d in differences))
