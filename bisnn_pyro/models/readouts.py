"""DECOLLE readouts: logits from a layer's spikes through a fixed matrix, and their gradient.

A layer run over all T steps at once (see :class:`.snn.DecolleNetwork`) reads out its spikes
S = spike(U) as ``scale * S @ readout.T``.  Through autograd the gradient makes two tensors the
size of every step's potential on its way to U: ``grad @ readout`` (a matrix product with only as
many terms as classes, bound by its memory traffic) and the surrogate's product with it.  For a
spike function whose surrogate derivative is a window (1 on an open interval, 0 outside: the
boxcar), :func:`surrogate_readout` makes the gradient of U in one pass on a CPU instead: the same
sums of the same products, so the same bits where the readout's entries are +-1.
"""

from __future__ import annotations

import torch

from . import native
from .surrogates import SpikeFunction, spikes_with_gradient


def random_sign_readout(num_classes: int, fan_in: int, generator: torch.Generator) -> torch.Tensor:
    """A fixed random +-1 readout matrix (classes, fan_in)."""
    return torch.randint(0, 2, (num_classes, fan_in), generator=generator).float() * 2.0 - 1.0


def readout(spikes: torch.Tensor, matrix: torch.Tensor, scale: float, features: int) -> torch.Tensor:
    """Logits ``scale * spikes @ matrix.T`` of spikes (..., *F) whose last ``features`` dimensions
    are one layer's units; ``matrix`` is (classes, prod(F))."""
    flat = spikes.flatten(-features) if features > 1 else spikes
    return torch.matmul(flat, matrix.t()) * scale


def surrogate_readout(
    spike: SpikeFunction, u: torch.Tensor, spikes: torch.Tensor, matrix: torch.Tensor, scale: float, features: int
) -> torch.Tensor:
    """``readout(spike(u), ...)`` where the spikes ``u > 0`` are already decided: with a window
    surrogate (``spike.surrogate_window``), its backward makes the gradient of ``u`` in one pass."""
    window = getattr(spike, "surrogate_window", None)
    if window is None:
        return readout(spikes_with_gradient(spike, u, spikes), matrix, scale, features)
    return _WindowReadout.apply(u, spikes, matrix, scale, features, window)


class _WindowReadout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, spikes, matrix, scale, features, window):
        ctx.save_for_backward(u, matrix)
        ctx.scale, ctx.features, ctx.window = scale, features, window
        return readout(spikes, matrix, scale, features)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        u, matrix = ctx.saved_tensors
        grad_logits = grad * ctx.scale  # as the product's scaling passes it back
        gradient = _window_gradient(u.detach(), grad_logits, matrix, ctx.features, ctx.window)
        return gradient, None, None, None, None, None


def _window_gradient(
    u: torch.Tensor, grad_logits: torch.Tensor, matrix: torch.Tensor, features: int, window: tuple[float, float]
) -> torch.Tensor:
    """(grad_logits @ matrix) where low < u < high, else 0 (as hardtanh's backward decides it), laid
    out like ``u`` (..., *F); ``grad_logits`` is (..., classes)."""
    low, high = window
    lead = u.dim() - features
    order = sorted(range(lead), key=u.stride, reverse=True)  # u's leading dims in memory order
    rows = u.permute(*order, *range(lead, u.dim()))
    kernel = native.compiled(_window_kernel) if native.applies(u, grad_logits, matrix) else None
    if kernel is None or not rows.is_contiguous():
        grad_spikes = torch.matmul(grad_logits, matrix).view(u.shape)
        return torch.ops.aten.hardtanh_backward(grad_spikes, u, low, high)
    grad_rows = grad_logits.permute(*order, lead).contiguous()
    out = torch.empty_like(rows)
    dtype = native.numpy_dtype(u)
    kernel(
        native.rows(rows.flatten(0, lead - 1)),
        native.rows(grad_rows.flatten(0, lead - 1)),
        matrix.detach().numpy(),
        dtype(low),
        dtype(high),
        native.rows(out.flatten(0, lead - 1)),
    )
    return out.permute(*sorted(range(lead), key=order.__getitem__), *range(lead, u.dim()))


def _window_kernel(u, grad_logits, matrix, low, high, out):
    # row by row, class by class over the units, so that LLVM vectorises the inner loops; the
    # classes are summed in order, as a matrix product does, and U outside the window gives 0
    # whatever the sum (hardtanh's backward: a NaN U passes the gradient)
    rows, units = u.shape
    classes = grad_logits.shape[1]
    for i in range(rows):
        g = grad_logits[i, 0]
        for j in range(units):
            out[i, j] = g * matrix[0, j]
        for c in range(1, classes):
            g = grad_logits[i, c]
            for j in range(units):
                out[i, j] = out[i, j] + g * matrix[c, j]
        for j in range(units):
            x = u[i, j]
            out[i, j] = 0.0 if (x <= low) | (x >= high) else out[i, j]
