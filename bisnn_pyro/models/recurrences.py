"""The two element-wise recurrences through time of a layer run over all T steps at once.

When a layer's drive (or input) is known for every step, what remains sequential is two short
recurrences: the input traces and the refractory/threshold recurrence (see
``input_traces`` and ``subtract_refractory_``).  As PyTorch loops they
are a few hundred operations on one step's small tensors, whose fixed cost per operation is most
of their time.  On CPU tensors of float32 or float64 they run as numba kernels instead: one pass
through time with the same IEEE operations, decay * x + y as one fused multiply-add as PyTorch's
vectorised kernels compute it, so the same bits (tested against the PyTorch loops).  Elsewhere
(a GPU, another dtype, or numba missing) they run as the PyTorch loops.
"""

from __future__ import annotations

from functools import cache
from typing import Callable

import numpy as np
import torch

NATIVE_DTYPES = (torch.float32, torch.float64)


def leak(trace: torch.Tensor, decay: float, inflow: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """decay * trace + inflow, as one fused operation: the step loop (``neurons``), the PyTorch
    loops below and the kernels all compute it so, and round alike."""
    return torch.add(inflow, trace, alpha=decay, out=out)


def trace_steps(traces: torch.Tensor, inputs: torch.Tensor, p: torch.Tensor, q: torch.Tensor, a: float, b: float):
    """Writes P[t] = a P[t-1] + Q[t-1] of every step into ``traces`` (T, ...), from ``p`` before the
    first step, with Q[t] = b Q[t-1] + inputs[t] updated in ``q`` (a buffer of the traces' step
    shape); ``inputs`` broadcasts to ``traces``."""
    kernels = _native_kernels(traces, inputs, p, q)
    if kernels is None or traces.shape[0] == 0 or not q.is_contiguous():
        return _trace_loop(traces, inputs, p.expand_as(q), q, a, b)
    dtype = _numpy_dtype(traces)
    steps, missing = traces.shape[0], traces.dim() - inputs.dim()  # inputs broadcast from the right, after T
    aligned = inputs.reshape(steps, *(1,) * missing, *inputs.shape[1:]).expand_as(traces)
    flat_inputs = aligned.reshape(steps, -1)  # a view, or one copy of a strided or broadcast input
    p = p.expand_as(q).clone(memory_format=torch.contiguous_format)  # the kernel moves it on
    kernels[0](_rows(traces), _rows(flat_inputs), _flat(p), _flat(q), dtype(a), dtype(b))


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
    dtype, before = _numpy_dtype(drive), s.expand_as(r).clone(memory_format=torch.contiguous_format)
    states = [(r, before)] if len(blocks) == 1 else list(zip(r.unbind(0), before.unbind(0)))
    for (drive_block, spikes_block), (r_block, s_block) in zip(blocks, states):
        kernels[1](drive_block, _flat(r_block), _flat(s_block), spikes_block, dtype(c), dtype(threshold))


def _time_blocks(drive: torch.Tensor, spikes: torch.Tensor) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """``drive`` and ``spikes`` (T, ...) as C-contiguous (T, M) arrays: one block, or one per index of
    the second dimension (a time-first view of sample-first memory); None for any other layout."""
    if drive.is_contiguous() and spikes.is_contiguous():
        return [(_rows(drive), _rows(spikes))]
    if drive.dim() < 3:
        return None
    pairs = list(zip(drive.unbind(1), spikes.unbind(1)))
    if not all(d.is_contiguous() and s.is_contiguous() for d, s in pairs):
        return None
    return [(_rows(d), _rows(s)) for d, s in pairs]


def _rows(tensor: torch.Tensor) -> np.ndarray:
    """A contiguous (T, ...) tensor as a (T, M) array sharing its memory."""
    return tensor.detach().view(tensor.shape[0], -1).numpy()


def _flat(tensor: torch.Tensor) -> np.ndarray:
    """A contiguous tensor as a 1-D array sharing its memory."""
    return tensor.detach().view(-1).numpy()


def _numpy_dtype(tensor: torch.Tensor) -> type:
    """The numpy scalar type of ``tensor``: the decays must be of the arrays' precision, or numba
    would compute in float64 and round differently from PyTorch."""
    return np.float32 if tensor.dtype == torch.float32 else np.float64


def _native_kernels(tensor: torch.Tensor, *others: torch.Tensor) -> tuple[Callable, Callable] | None:
    """The compiled kernels where they apply: ``tensor`` on the CPU, of a native dtype, without
    gradient, and ``others`` of its dtype (mixed dtypes would promote differently); else None."""
    if tensor.device.type != "cpu" or tensor.dtype not in NATIVE_DTYPES or tensor.requires_grad:
        return None
    if any(other.dtype != tensor.dtype for other in others):
        return None
    return _compiled()


@cache
def _compiled() -> tuple[Callable, Callable] | None:
    """(trace kernel, refractory kernel) compiled by numba on first use (about 1.5 s; numba keeps
    them on disk for the next process), or None without numba."""
    try:
        import numba
    except ImportError:
        return None
    # 'contract' lets LLVM fuse x * decay + y into one multiply-add, as PyTorch's kernels do
    try:
        kernels = [numba.njit(cache=True, fastmath={"contract"})(k) for k in (_trace_kernel, _refractory_kernel)]
    except RuntimeError:  # no writable cache folder for this file: compile in every process
        kernels = [numba.njit(fastmath={"contract"})(k) for k in (_trace_kernel, _refractory_kernel)]
    return kernels[0], kernels[1]


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
    """``trace_steps`` as PyTorch operations."""
    for trace, step_inputs in zip(traces.unbind(), inputs.unbind()):
        p = leak(p, a, q, out=trace)
        leak(q, b, step_inputs, out=q)


def _refractory_loop(
    drive: torch.Tensor, r: torch.Tensor, s: torch.Tensor, spikes: torch.Tensor, c: float, threshold: torch.Tensor
):
    """``refractory_steps`` as PyTorch operations; ``threshold`` a 0-dim tensor (a Python number
    would be converted at every step)."""
    for step_drive, step_spikes in zip(drive.unbind(), spikes.unbind()):
        leak(r, c, s, out=r)
        # the same decisions as spike(U - threshold): IEEE subtraction gives zero only for equal
        # operands, so x - y > 0 exactly when x > y
        s = torch.gt(step_drive.sub_(r), threshold, out=step_spikes)
