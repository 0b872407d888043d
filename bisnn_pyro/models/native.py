"""Numba kernels for CPU tensors: compiled on first use, kept in numba's disk cache.

The library's kernels replace PyTorch code whose fixed cost per operation, or whose passes over
large intermediate tensors, cost more than its arithmetic.  They take float32 or float64 CPU
tensors of one dtype, without gradient, and compute with the same IEEE operations as the PyTorch
code they replace; anywhere else (a GPU, another dtype, numba missing) the callers run that
PyTorch code.
"""

from __future__ import annotations

from functools import cache
from typing import Callable

import numpy as np
import torch

NATIVE_DTYPES = (torch.float32, torch.float64)


def applies(tensor: torch.Tensor, *others: torch.Tensor) -> bool:
    """Whether the kernels take these tensors: ``tensor`` on the CPU, of a native dtype, without
    gradient, and ``others`` of its dtype (mixed dtypes would promote differently)."""
    if tensor.device.type != "cpu" or tensor.dtype not in NATIVE_DTYPES or tensor.requires_grad:
        return False
    return all(other.dtype == tensor.dtype for other in others)


@cache
def compiled(kernel: Callable) -> Callable | None:
    """``kernel`` compiled by numba (on its first call; numba keeps it on disk for the next process),
    or None without numba."""
    try:
        import numba
    except ImportError:
        return None
    # 'contract' lets LLVM fuse x * a + y into one multiply-add, as PyTorch's vectorised kernels do
    try:
        return numba.njit(cache=True, fastmath={"contract"})(kernel)
    except RuntimeError:  # no writable cache folder for the kernel's file: compile in every process
        return numba.njit(fastmath={"contract"})(kernel)


def numpy_dtype(tensor: torch.Tensor) -> type:
    """The numpy scalar type of ``tensor``: scalars handed to a kernel must be of the arrays'
    precision, or numba would compute in float64 and round differently from PyTorch."""
    return np.float32 if tensor.dtype == torch.float32 else np.float64


def rows(tensor: torch.Tensor) -> np.ndarray:
    """A contiguous (N, ...) tensor as an (N, M) array sharing its memory."""
    return tensor.detach().view(tensor.shape[0], -1).numpy()


def flat(tensor: torch.Tensor) -> np.ndarray:
    """A contiguous tensor as a 1-D array sharing its memory."""
    return tensor.detach().view(-1).numpy()
