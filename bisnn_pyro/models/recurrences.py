"""The two element-wise recurrences through time of a layer run over all T steps at once.

When a layer's drive (or input) is known for every step, what remains sequential is two short
recurrences: the input traces and the refractory/threshold recurrence (see
:func:`.neurons.input_traces` and :func:`.neurons.subtract_refractory_`).  As PyTorch loops they
are a few hundred operations on one step's small tensors, whose fixed cost per operation is most
of their time.  On CPU tensors of float32 or float64 they run as numba kernels instead: one pass
through time with the same IEEE operations, decay * x + y as one fused multiply-add as PyTorch's
vectorised kernels compute it, so the same bits (tested against the PyTorch loops).  Elsewhere
(a GPU, another dtype, or numba missing) they run as the PyTorch loops.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from . import native


def leak(trace: torch.Tensor, decay: float, inflow: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """decay * trace + inflow, as one fused operation: the step loop (:mod:`.neurons`), the PyTorch
    loops below and the kernels all compute it so, and round alike."""
    return torch.add(inflow, trace, alpha=decay, out=out)


def trace_steps(traces: torch.Tensor, inputs: torch.Tensor, p: torch.Tensor, q: torch.Tensor, a: float, b: float):
    """Writes P[t] = a P[t-1] + Q[t-1] of every step into ``traces`` (T, ...), from ``p`` before the
    first step, with Q[t] = b Q[t-1] + inputs[t] updated in ``q`` (a buffer of the traces' step
    shape); ``inputs`` broadcasts to ``traces``."""
    kernels = _native_kernels(traces, inputs, p, q)
    if kernels is None or traces.shape[0] == 0 or not q.is_contiguous():
        return _trace_loop(traces, inputs, p.expand_as(q), q, a, b)
    dtype = native.numpy_dtype(traces)
    steps, missing = traces.shape[0], traces.dim() - inputs.dim()  # inputs broadcast from the right, after T
    aligned = inputs.reshape(steps, *(1,) * missing, *inputs.shape[1:]).expand_as(traces)
    flat_inputs = aligned.reshape(steps, -1)  # a view, or one copy of a strided or broadcast input
    p = p.expand_as(q).clone(memory_format=torch.contiguous_format)  # the kernel moves it on
    kernels[0](native.rows(traces), native.rows(flat_inputs), native.flat(p), native.flat(q), dtype(a), dtype(b))


def refractory_steps(
    drive: torch.Tensor, r: torch.Tensor, s: torch.Tensor, spikes: torch.Tensor, c: float, threshold: float
):
    """Turns ``drive`` (T, ...) into U = drive - R in place and writes the spikes U > threshold of
    every step into ``spikes`` (laid out like ``drive``), where R[t] = c R[t-1] + S[t-1] is updated
    in ``r`` (a contiguous buffer of the step shape) from the spikes ``s`` before the first step."""
    kernels = _native_kernels(drive, r, s)
    blocks = _time_blocks(drive, spikes) if kernels is not None and r.is_contiguous() else None
    if blocks is None:
        return _refractory_loop(drive, r, s.expand_as(r), spikes, c, drive.new_tensor(threshold))
    dtype, before = native.numpy_dtype(drive), s.expand_as(r).clone(memory_format=torch.contiguous_format)
    states = [(r, before)] if len(blocks) == 1 else list(zip(r.unbind(0), before.unbind(0)))
    for (drive_block, spikes_block), (r_block, s_block) in zip(blocks, states):
        kernels[1](drive_block, native.flat(r_block), native.flat(s_block), spikes_block, dtype(c), dtype(threshold))


def _time_blocks(drive: torch.Tensor, spikes: torch.Tensor) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """``drive`` and ``spikes`` (T, ...) as C-contiguous (T, M) arrays: one block, or one per index of
    the second dimension (a time-first view of sample-first memory); None for any other layout."""
    if drive.is_contiguous() and spikes.is_contiguous():
        return [(native.rows(drive), native.rows(spikes))]
    if drive.dim() < 3:
        return None
    pairs = list(zip(drive.unbind(1), spikes.unbind(1)))
    if not all(d.is_contiguous() and s.is_contiguous() for d, s in pairs):
        return None
    return [(native.rows(d), native.rows(s)) for d, s in pairs]


def _native_kernels(tensor: torch.Tensor, *others: torch.Tensor) -> tuple[Callable, Callable] | None:
    """(trace kernel, refractory kernel) where they apply to these tensors (see
    :func:`.native.applies`); else None."""
    if not native.applies(tensor, *others):
        return None
    kernels = native.compiled(_trace_kernel), native.compiled(_refractory_kernel)
    return None if None in kernels else kernels


def _trace_kernel(traces, inputs, p, q, a, b):
    # element-wise on 2-D indices and state buffers: row views of one array would keep LLVM from
    # vectorising the inner loop (2.4x slower here)
    steps, size = traces.shape
    for t in range(steps):
        for m in range(size):
            p[m] = p[m] * a + q[m]
            traces[t, m] = p[m]
            q[m] = q[m] * b + inputs[t, m]


def _refractory_kernel(drive, r, s, spikes, c, threshold):
    steps, size = drive.shape
    for t in range(steps):
        for m in range(size):
            r[m] = r[m] * c + s[m]
            u = drive[t, m] - r[m]
            drive[t, m] = u
            s[m] = 1.0 if u > threshold else 0.0
            spikes[t, m] = s[m]


def _trace_loop(traces: torch.Tensor, inputs: torch.Tensor, p: torch.Tensor, q: torch.Tensor, a: float, b: float):
    """:func:`trace_steps` as PyTorch operations."""
    for trace, step_inputs in zip(traces.unbind(), inputs.unbind()):
        p = leak(p, a, q, out=trace)
        leak(q, b, step_inputs, out=q)


def _refractory_loop(
    drive: torch.Tensor, r: torch.Tensor, s: torch.Tensor, spikes: torch.Tensor, c: float, threshold: torch.Tensor
):
    """:func:`refractory_steps` as PyTorch operations; ``threshold`` a 0-dim tensor (a Python number
    would be converted at every step)."""
    for step_drive, step_spikes in zip(drive.unbind(), spikes.unbind()):
        leak(r, c, s, out=r)
        # the same decisions as spike(U - threshold): IEEE subtraction gives zero only for equal
        # operands, so x - y > 0 exactly when x > y
        s = torch.gt(step_drive.sub_(r), threshold, out=step_spikes)
