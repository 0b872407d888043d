import numpy as np
import pytest
import torch

from bisnn_pyro.analysis import accuracy, brier, ece, nll, summary


def reference_ece(probs, labels, bins=15):
    """Loop-based ECE over equal-width bins (lo, hi], written independently."""
    probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels)
    confidence, predicted = probs.max(1), probs.argmax(1)
    edges = np.linspace(0, 1, bins + 1)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (confidence > lo) & (confidence <= hi) if lo > 0 else (confidence >= lo) & (confidence <= hi)
        if inside.any():
            total += inside.mean() * abs(confidence[inside].mean() - (predicted[inside] == labels[inside]).mean())
    return total


def test_perfect_predictions():
    labels = torch.tensor([0, 2, 1, 2])
    probs = torch.nn.functional.one_hot(labels, 3).float()
    assert summary(probs, labels) == {"accuracy": 1.0, "nll": 0.0, "brier": 0.0, "ece": 0.0}


def test_known_calibration_gap():
    probs = torch.tensor([[0.8, 0.2]] * 10)
    labels = torch.tensor([0] * 6 + [1] * 4)  # 60 % correct at confidence 0.8
    assert ece(probs, labels) == pytest.approx(0.2)
    assert accuracy(probs, labels) == pytest.approx(0.6)
    assert brier(probs, labels) == pytest.approx(0.6 * 0.08 + 0.4 * 1.28)


def test_against_independent_implementations():
    generator = torch.Generator().manual_seed(0)
    probs = torch.softmax(2 * torch.randn(500, 4, generator=generator), -1)
    labels = torch.randint(0, 4, (500,), generator=generator)
    assert ece(probs, labels) == pytest.approx(reference_ece(probs.numpy(), labels.numpy()), abs=1e-9)
    expected_nll = torch.nn.functional.nll_loss(torch.log(probs.double()), labels).item()
    assert nll(probs, labels) == pytest.approx(expected_nll)


def test_shape_errors_are_clear():
    with pytest.raises(ValueError, match=r"\(N, C\)"):
        ece(torch.rand(5), torch.zeros(5))
