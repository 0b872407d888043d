"""Seeded, stratified train/test splits for data sets that come without one."""

from __future__ import annotations

import numpy as np


def stratified_test_mask(labels: np.ndarray, test_fraction: float, rng: np.random.Generator) -> np.ndarray:
    """A boolean mask marking round(test_fraction * n_c) random members of every class c as test."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test fraction must lie in (0, 1), got {test_fraction}")
    labels = np.asarray(labels)
    test = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        test[rng.permutation(members)[: int(round(test_fraction * len(members)))]] = True
    return test
