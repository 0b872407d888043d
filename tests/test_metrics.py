import numpy as np
import pytest
import torch

from bisnn_pyro.analysis.metrics import (
    accuracy,
    auroc,
    brier,
    confidence_histogram,
    ece,
    expected_entropy,
    mce,
    mutual_information,
    nll,
    predictive_entropy,
    reliability_curve,
    summary,
)


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
    assert summary(probs, labels) == {"accuracy": 1.0, "nll": 0.0, "brier": 0.0, "ece": 0.0, "mce": 0.0}


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


def test_equal_mass_bins_hold_equal_counts():
    generator = torch.Generator().manual_seed(1)
    probs = torch.softmax(torch.randn(300, 3, generator=generator), -1)
    labels = torch.randint(0, 3, (300,), generator=generator)
    curve = reliability_curve(probs, labels, bins=10, strategy="mass")
    assert curve.count.tolist() == [30.0] * 10
    assert torch.all(curve.edges[1:].diff() >= 0)
    # with every point in its own bin, ECE is the mean |confidence - correct|
    confidence, predicted = probs.max(-1)
    single = (confidence.double() - (predicted == labels).double()).abs().mean().item()
    assert ece(probs, labels, bins=300, strategy="mass") == pytest.approx(single)


def test_mce_is_the_worst_bin():
    probs = torch.tensor([[0.95, 0.05]] * 4 + [[0.55, 0.45]] * 4)
    labels = torch.tensor([0, 0, 1, 1, 0, 0, 0, 0])  # 50 % at 0.95, 100 % at 0.55
    assert mce(probs, labels) == pytest.approx(0.45)
    assert ece(probs, labels) == pytest.approx(0.5 * 0.45 + 0.5 * 0.45)


def test_confidence_histogram_counts_every_point():
    probs = torch.tensor([[0.5, 0.5], [0.99, 0.01], [0.7, 0.3]])
    counts, edges = confidence_histogram(probs, bins=10)
    assert counts.sum() == 3 and counts[-1] == 1 and len(edges) == 11


def test_entropy_decomposition():
    agree = torch.tensor([[[0.9, 0.1]], [[0.9, 0.1]]])  # two draws, one point, same prediction
    disagree = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])  # confident draws that disagree
    assert mutual_information(agree).item() == pytest.approx(0.0, abs=1e-12)
    assert mutual_information(disagree).item() == pytest.approx(torch.log(torch.tensor(2.0)).item())
    assert expected_entropy(disagree).item() == pytest.approx(0.0)
    h = -(0.9 * torch.log(torch.tensor(0.9)) + 0.1 * torch.log(torch.tensor(0.1))).item()
    assert predictive_entropy(agree).item() == pytest.approx(h)
    generator = torch.Generator().manual_seed(2)
    draws = torch.softmax(torch.randn(5, 40, 3, generator=generator), -1)
    total = predictive_entropy(draws)
    torch.testing.assert_close(total, expected_entropy(draws) + mutual_information(draws))


def test_auroc_against_pairwise_counting():
    generator = torch.Generator().manual_seed(3)
    inside = torch.randn(70, generator=generator).round(decimals=1)
    outside = (torch.randn(50, generator=generator) + 1).round(decimals=1)
    pairs = (outside[:, None] > inside[None, :]).double() + 0.5 * (outside[:, None] == inside[None, :]).double()
    assert auroc(inside, outside) == pytest.approx(pairs.mean().item())
    assert auroc(torch.zeros(3), torch.ones(3)) == 1.0
    assert auroc(torch.ones(3), torch.ones(3)) == 0.5
