"""Signs that a finished run did not learn, told in words for the run's summary."""

from __future__ import annotations

import math
import statistics
from typing import Sequence

RISING_EPOCHS = 3  # epochs in a row of a rising loss that are worth a word


def loss_warnings(losses: Sequence[float]) -> list[str]:
    """A loss that ended above where it began, or rose in each of the last epochs by more, in all,
    than twice its typical change from one epoch to the next (the median of |loss_t - loss_{t-1}|):
    a minibatch estimate of the ELBO wanders by that much at convergence, and three rises in a row
    happen there by chance one time in 24."""
    if len(losses) < RISING_EPOCHS:
        return []
    if losses[-1] > losses[0]:
        return [
            f"the loss rose from {losses[0]:.4g} (epoch 1) to {losses[-1]:.4g} (epoch {len(losses)}): "
            "the step size may be too large"
        ]
    tail = losses[-RISING_EPOCHS - 1 :]
    typical_change = statistics.median(abs(b - a) for a, b in zip(losses, losses[1:]))
    rising = all(b > a for a, b in zip(tail, tail[1:])) and tail[-1] - tail[0] > 2 * typical_change
    if len(tail) > RISING_EPOCHS and rising:
        return [f"the loss rose in each of the last {RISING_EPOCHS} epochs ({tail[0]:.4g} -> {tail[-1]:.4g})"]
    return []


def chance_warnings(accuracy: float, classes: int, points: int, what: str = "accuracy") -> list[str]:
    """An accuracy within two standard errors of guessing (1 / classes) on ``points`` test points, or below it."""
    chance = 1.0 / classes
    margin = 2.0 * math.sqrt(chance * (1.0 - chance) / points)
    if accuracy > chance + margin:
        return []
    return [
        f"{what} {accuracy:.3f} is no better than chance ({chance:.3f} for {classes} classes, "
        f"+-{margin:.3f} on {points} test points): the run has not learned the task"
    ]
