"""PyTorch internals (checked by tests/test_adapters.py with torch 2.13): single-pass backward
kernels of aten, the tracing state, and tensors' version counters."""

from __future__ import annotations

import torch


def tanh_backward(grad: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
    """grad * (1 - output^2) in one pass."""
    return torch.ops.aten.tanh_backward(grad, output)


def hardtanh_backward(grad: torch.Tensor, value: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """grad where low < value < high, else 0, in one pass."""
    return torch.ops.aten.hardtanh_backward(grad, value, low, high)


def is_tracing() -> bool:
    """Whether a ``torch.jit`` trace is being recorded."""
    return torch._C._get_tracing_state() is not None


def version(tensor: torch.Tensor) -> int:
    """The tensor's version counter (raised by every in-place change)."""
    return tensor._version
