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


def ensemble_size_curve(
    draw_probs: torch.Tensor, labels: torch.Tensor, orders: int = 0, seed: int = 0
) -> dict[str, list]:
    """Accuracy and ECE of the ensemble of the first k draws, for k = 1 .. K (draw_probs (K, N, C)).

    With ``orders`` > 0 the curve is also taken over that many random orders of the draws (a
    generator of its own, seeded by ``seed``): ``<metric>_low`` / ``<metric>_high`` are their 5th
    and 95th percentiles at each k, the spread that the order of the draws alone makes."""
    draw_probs = draw_probs.double()
    sizes = torch.arange(1, len(draw_probs) + 1, dtype=torch.float64).view(-1, 1, 1)

    def curve(probs: torch.Tensor) -> tuple[list[float], list[float]]:
        running = probs.cumsum(0) / sizes
        return [accuracy(p, labels) for p in running], [ece(p, labels) for p in running]

    hits, calibration = curve(draw_probs)
    result = {"samples": list(range(1, len(draw_probs) + 1)), "accuracy": hits, "ece": calibration}
    if orders > 0:
        generator = torch.Generator().manual_seed(seed)
        shuffled = [curve(draw_probs[torch.randperm(len(draw_probs), generator=generator)]) for _ in range(orders)]
        for i, metric in enumerate(("accuracy", "ece")):
            values = torch.tensor([c[i] for c in shuffled], dtype=torch.float64)
            result[f"{metric}_low"] = values.quantile(0.05, dim=0).tolist()
            result[f"{metric}_high"] = values.quantile(0.95, dim=0).tolist()
    return result
