"""Spike non-linearities: a Heaviside step forward, a surrogate derivative backward.

Each surrogate is a small factory with its hyper-parameter baked in (as in snnTorch), returning a
callable ``spike(u) -> {0, 1}``.  ``SURROGATES`` names them so that a configuration file can too.
"""

from __future__ import annotations

from typing import Callable

import torch

from ..adapters.torch_internals import hardtanh_backward

SpikeFunction = Callable[[torch.Tensor], torch.Tensor]


class _HeavisideWithSurrogate(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx,
        u: torch.Tensor,
        backward: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        spikes: torch.Tensor | None = None,
    ):
        ctx.save_for_backward(u)
        ctx.surrogate_backward = backward
        if spikes is not None:  # u > 0, already decided by the caller
            return spikes
        return torch.gt(u, 0, out=torch.empty_like(u))  # straight into u's dtype: no bool tensor to convert

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        (u,) = ctx.saved_tensors
        return ctx.surrogate_backward(u, grad_output), None, None


def _spike_with(derivative: Callable[[torch.Tensor], torch.Tensor]) -> SpikeFunction:
    """A spike function whose backward multiplies by ``derivative(u)``, a fresh tensor it may overwrite."""
    return _spike_with_backward(lambda u, grad: derivative(u).mul_(grad))


def _spike_with_backward(backward: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> SpikeFunction:
    """A spike function whose backward is ``backward(u, grad) -> grad * derivative(u)``."""

    def spike(u: torch.Tensor) -> torch.Tensor:
        return _HeavisideWithSurrogate.apply(u, backward)

    spike.surrogate_backward = backward
    return spike


def spikes_with_gradient(spike: SpikeFunction, u: torch.Tensor, spikes: torch.Tensor) -> torch.Tensor:
    """``spike(u)`` where its values ``spikes`` (u > 0) are already known: the spike functions of
    this module attach their surrogate gradient to them without deciding them again; any other
    spike function is called on ``u``."""
    backward = getattr(spike, "surrogate_backward", None)
    if backward is None:
        return spike(u)
    return _HeavisideWithSurrogate.apply(u, backward, spikes)


def boxcar(width: float = 0.5) -> SpikeFunction:
    """Derivative 1 on |u| < width, 0 elsewhere (the BiSNN paper's choice)."""
    # hardtanh's backward is this gradient (grad where -width < u < width, else 0) in one pass
    spike = _spike_with_backward(lambda u, grad: hardtanh_backward(grad, u, -width, width))
    spike.boxcar_width = width  # for kernels that compute this gradient themselves (the fused online step)
    return spike


def sigmoid(slope: float = 4.0) -> SpikeFunction:
    """Derivative of sigmoid(slope * u): slope * s * (1 - s)."""

    def derivative(u: torch.Tensor) -> torch.Tensor:
        s = torch.sigmoid(slope * u)
        return slope * s * (1.0 - s)

    return _spike_with(derivative)


def fast_sigmoid(slope: float = 10.0) -> SpikeFunction:
    """Derivative 1 / (1 + slope |u|)^2 (SuperSpike), cheap and heavy-tailed."""
    return _spike_with(lambda u: 1.0 / (1.0 + slope * u.abs()) ** 2)


SURROGATES: dict[str, Callable[..., SpikeFunction]] = {
    "boxcar": boxcar,
    "sigmoid": sigmoid,
    "fast-sigmoid": fast_sigmoid,
}


def surrogate(name_or_fn: str | SpikeFunction) -> SpikeFunction:
    """A spike function from a registered name (default hyper-parameters) or a callable."""
    if callable(name_or_fn):
        return name_or_fn
    try:
        return SURROGATES[name_or_fn]()
    except KeyError:
        raise ValueError(f"unknown surrogate {name_or_fn!r}; expected one of {sorted(SURROGATES)}") from None
