"""The readout's fused backward gives the gradient autograd gives through the spikes, bit for bit."""

import pytest
import torch

from bisnn_pyro.models import native, readouts
from bisnn_pyro.models.readouts import readout, surrogate_readout
from bisnn_pyro.models.surrogates import boxcar, sigmoid, spikes_with_gradient


@pytest.fixture
def kernel_calls(monkeypatch):
    """How often the compiled window kernel runs."""
    calls = []
    kernel = native.compiled(readouts._window_kernel)

    def counted(*args):
        calls.append(1)
        return kernel(*args)

    monkeypatch.setattr(readouts, "_window_kernel", counted)
    monkeypatch.setattr(native, "compiled", lambda function: function)
    return calls


def _gradients(spike, u, matrix, scale, features, grad_logits):
    """The gradient of U through ``surrogate_readout`` and through the spikes' own autograd path."""
    decided = (u > 0).to(u.dtype)
    results = []
    for fused in (True, False):
        leaf = u.detach().clone().requires_grad_()
        if fused:
            logits = surrogate_readout(spike, leaf, decided, matrix, scale, features)
        else:
            logits = readout(spikes_with_gradient(spike, leaf, decided), matrix, scale, features)
        logits.backward(grad_logits)
        results.append((logits.detach(), leaf.grad))
    return results


def _signs(classes, units, generator, dtype):
    return (torch.randint(0, 2, (classes, units), generator=generator) * 2 - 1).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("classes", [2, 10])
def test_fused_readout_gradient_equals_autograd_bit_for_bit(dtype, classes, kernel_calls):
    generator = torch.Generator().manual_seed(0)
    u = torch.randn(30, 4, 37, generator=generator).to(dtype)  # (T, B, units): 37 is not a multiple of 8
    matrix = _signs(classes, 37, generator, dtype)
    grad_logits = torch.randn(30, 4, classes, generator=generator).to(dtype)
    (fused_logits, fused), (logits, reference) = _gradients(boxcar(), u, matrix, 0.3, 1, grad_logits)
    assert torch.equal(fused_logits, logits) and torch.equal(fused, reference)
    inside = u.abs() < 0.5
    assert fused[inside].abs().min() > 0 and fused[~inside].abs().max() == 0
    assert len(kernel_calls) == 1


def test_fused_readout_reads_strided_potentials_and_feature_maps(kernel_calls):
    generator = torch.Generator().manual_seed(1)
    # a time-first view of sample-first memory (T, S, B, C, H, W), as particles give
    memory = torch.randn(3, 20, 2, 4, 5, 5, generator=generator)
    u = memory.movedim(1, 0)
    matrix = _signs(3, 100, generator, torch.float32)
    grad_logits = torch.randn(20, 3, 2, 3, generator=generator)
    (_, fused), (_, reference) = _gradients(boxcar(0.7), u, matrix, 0.1, 3, grad_logits)
    assert torch.equal(fused, reference) and len(kernel_calls) == 1


def test_without_the_kernel_or_a_window_the_autograd_path_runs(monkeypatch):
    generator = torch.Generator().manual_seed(2)
    u = torch.randn(10, 3, 8, generator=generator)
    matrix = _signs(2, 8, generator, torch.float32)
    grad_logits = torch.randn(10, 3, 2, generator=generator)
    monkeypatch.setattr(native, "applies", lambda *tensors: False)
    (_, fused), (_, reference) = _gradients(boxcar(), u, matrix, 0.5, 1, grad_logits)
    assert torch.equal(fused, reference)
    monkeypatch.undo()
    assert not hasattr(sigmoid(), "surrogate_window")  # a smooth surrogate goes through the spikes
    (_, smooth), (_, reference) = _gradients(sigmoid(), u, matrix, 0.5, 1, grad_logits)
    assert torch.equal(smooth, reference)


def test_a_nan_potential_passes_the_gradient_as_hardtanh_does(kernel_calls):
    u = torch.tensor([[[float("nan"), 0.2, 0.9]]])
    matrix = torch.tensor([[1.0, -1.0, 1.0], [1.0, 1.0, -1.0]])
    grad_logits = torch.tensor([[[1.0, 2.0]]])
    (_, fused), (_, reference) = _gradients(boxcar(), u, matrix, 1.0, 1, grad_logits)
    assert fused.tolist() == reference.tolist() == [[[3.0, 1.0, 0.0]]] and len(kernel_calls) == 1
