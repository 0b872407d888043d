"""Metrics as curves: against the number of time steps read (anytime) and the ensemble size."""

from __future__ import annotations

import torch

from .metrics import accuracy, ece


def anytime_probs(draw_readouts: torch.Tensor, burn_in: int) -> torch.Tensor:
    """Per-draw class probabilities from the last layer's readout averaged over steps burn_in..t,
    for every t >= burn_in: (K, N, L, T, C) -> (T - burn_in, K, N, C)."""
    logits = draw_readouts[..., -1, burn_in:, :]  # (K, N, T', C)
    steps = torch.arange(1, logits.shape[-2] + 1, dtype=logits.dtype, device=logits.device)
    running = logits.cumsum(-2) / steps.unsqueeze(-1)
    return torch.softmax(running, -1).movedim(-2, 0)


def anytime_curve(draw_readouts: torch.Tensor, labels: torch.Tensor, burn_in: int) -> dict[str, list]:
    """Accuracy and ECE of the ensemble (probabilities averaged over draws) after each step."""
    per_step = anytime_probs(draw_readouts, burn_in).mean(1)  # (T', N, C)
    return {
        "step": list(range(burn_in + 1, burn_in + 1 + per_step.shape[0])),
        "accuracy": [accuracy(p, labels) for p in per_step],
        "ece": [ece(p, labels) for p in per_step],
    }


def ensemble_size_curve(draw_probs: torch.Tensor, labels: torch.Tensor) -> dict[str, list]:
    """Accuracy and ECE of the ensemble of the first k draws, for k = 1 .. K (draw_probs (K, N, C))."""
    running = draw_probs.double().cumsum(0) / torch.arange(1, len(draw_probs) + 1, dtype=torch.float64).view(-1, 1, 1)
    return {
        "samples": list(range(1, len(draw_probs) + 1)),
        "accuracy": [accuracy(p, labels) for p in running],
        "ece": [ece(p, labels) for p in running],
    }
