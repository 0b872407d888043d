"""The compiled recurrences compute what the PyTorch loops compute, bit for bit."""

import sys

import pytest
import torch

from bisnn_pyro.models import LIFParameters, recurrences
from bisnn_pyro.models.neurons import input_traces, subtract_refractory_

A, B, C = LIFParameters().decays()


def _both(function, *tensors):
    """``function`` on copies of ``tensors``, once compiled and once as PyTorch loops."""
    results = []
    for native in (True, False):
        copies = [t.clone() for t in tensors]
        if native:
            function(*copies)
        else:
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(recurrences, "_native_kernels", lambda *tensors: None)
                function(*copies)
        results.append(copies)
    return results


def test_numba_kernels_are_used_on_cpu_floats_only():
    assert recurrences._compiled() is not None  # numba is a dependency
    assert recurrences._native_kernels(torch.zeros(2)) is not None
    assert recurrences._native_kernels(torch.zeros(2, dtype=torch.float64)) is not None
    assert recurrences._native_kernels(torch.zeros(2, dtype=torch.float16)) is None
    assert recurrences._native_kernels(torch.zeros(2, requires_grad=True)) is None
    assert recurrences._native_kernels(torch.zeros(2), torch.zeros(2, dtype=torch.float64)) is None


def test_without_numba_the_pytorch_loops_run(monkeypatch):
    monkeypatch.setitem(sys.modules, "numba", None)  # import numba now raises ImportError
    recurrences._compiled.cache_clear()
    try:
        assert recurrences._native_kernels(torch.zeros(2)) is None
        traces, p, q = input_traces(torch.ones(4, 3), torch.zeros(()), torch.zeros(()), LIFParameters())
        assert traces[0].tolist() == [0.0] * 3 and traces[1].tolist() == [1.0] * 3
        assert torch.equal(p, traces[-1]) and q.shape == (3,)
    finally:
        recurrences._compiled.cache_clear()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_input_traces_equal_the_pytorch_loop_bit_for_bit(dtype):
    generator = torch.Generator().manual_seed(0)
    inputs = (torch.rand(30, 4, 9, generator=generator) < 0.4).to(dtype)  # 36 units: not a multiple of 8
    p, q = torch.rand(2, 4, 9, generator=generator).to(dtype)
    traces = torch.empty_like(inputs)
    native, loop = _both(lambda t, i, p, q: recurrences.trace_steps(t, i, p, q, A, B), traces, inputs, p, q)
    for mine, theirs in zip(native, loop):
        assert torch.equal(mine, theirs)
    assert torch.equal(native[3], loop[3]) and not torch.equal(native[3], q)  # q moved on
    # broadcast inputs and a state without the sample dimension, through the public function
    wide = [input_traces(inputs, p, q.expand(3, 4, 9), LIFParameters()) for _ in range(2)]
    assert wide[0][0].shape == (30, 3, 4, 9) and torch.equal(wide[0][0][:, 1], wide[1][0][:, 2])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("threshold", [0.0, 0.1])
def test_refractory_recurrence_equals_the_pytorch_loop_bit_for_bit(dtype, threshold):
    generator = torch.Generator().manual_seed(1)
    drive = torch.randn(30, 4, 9, generator=generator).to(dtype)
    r = torch.rand(4, 9, generator=generator).to(dtype)
    s = (torch.rand(4, 9, generator=generator) < 0.5).to(dtype)
    spikes = torch.empty_like(drive)
    native, loop = _both(lambda d, r, s, o: recurrences.refractory_steps(d, r, s, o, C, threshold), drive, r, s, spikes)
    for mine, theirs in zip(native, loop):
        assert torch.equal(mine, theirs)
    potential, _, _, decided = native
    assert 0 < decided.mean() < 1 and torch.equal(decided, (potential > threshold).to(dtype))


def test_refractory_recurrence_reads_a_time_first_view_of_sample_first_memory():
    """With weight samples the drive is laid out (S, T, B, units) and read time first."""
    generator = torch.Generator().manual_seed(2)
    memory = torch.randn(3, 20, 5, 7, generator=generator)
    params = LIFParameters(threshold=0.05)
    results = []
    for native in (True, False):
        drive = memory.clone().movedim(1, 0)  # (T, S, B, units), not contiguous
        with pytest.MonkeyPatch.context() as patch:
            if not native:
                patch.setattr(recurrences, "_native_kernels", lambda *tensors: None)
            spikes, r = subtract_refractory_(drive, torch.zeros(()), torch.zeros(()), params)
        results.append((drive, spikes, r))
    for mine, theirs in zip(*results):
        assert torch.equal(mine, theirs)
    assert results[0][1].stride() == results[0][0].stride()  # the spikes laid out like the drive
