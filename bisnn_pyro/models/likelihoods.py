"""Likelihoods on readouts: the training term of the ELBO and the predictive distribution."""

from __future__ import annotations

import pyro
import torch
from pyro.distributions import Categorical


class ReadoutCategorical:
    """Categorical likelihood on the readouts at every step after ``burn_in``: every layer's
    (``readouts="all"``, DECOLLE's local losses) or only the last layer's (``"last"``, for
    end-to-end learning with one output).

    The data plate has size ``num_data`` so a minibatch of B sequences is scaled by N/B.  Readouts
    are (*S, B, layers, T, classes) covering the steps t0 .. t0 + T - 1 of the sequence.
    Predictions use the last layer's readout averaged over the steps after burn-in.
    """

    READOUTS = ("all", "last")

    def __init__(self, num_data: int, burn_in: int = 10, readouts: str = "all"):
        if num_data < 1:
            raise ValueError(f"num_data must be >= 1, got {num_data}")
        if burn_in < 0:
            raise ValueError(f"burn_in must be >= 0, got {burn_in}")
        if readouts not in self.READOUTS:
            raise ValueError(f"readouts must be one of {self.READOUTS}, got {readouts!r}")
        self.num_data = num_data
        self.burn_in = burn_in
        self.readouts = readouts

    def _after_burn_in(self, readouts: torch.Tensor, t0: int) -> torch.Tensor:
        return readouts[..., max(self.burn_in - t0, 0) :, :]

    def _scored(self, readouts: torch.Tensor, t0: int) -> torch.Tensor | None:
        """The logits the likelihood scores (*S, B, layers, T', classes), or None when every step is burn-in."""
        logits = self._after_burn_in(readouts, t0)
        if self.readouts == "last":
            logits = logits[..., -1:, :, :]
        return None if logits.shape[-2] == 0 else logits

    def _site(self, readouts: torch.Tensor, y: torch.Tensor | None, t0: int):
        """(distribution, observation, batch size) of the data site, or None when every step is burn-in."""
        logits = self._scored(readouts, t0)
        if logits is None:
            return None
        batch, layers, steps = logits.shape[-4:-1]
        obs = None if y is None else y.reshape(batch, 1, 1).expand(batch, layers, steps)
        return Categorical(logits=logits).to_event(2), obs, batch

    def __call__(self, readouts: torch.Tensor, y: torch.Tensor | None, t0: int = 0) -> None:
        site = self._site(readouts, y, t0)
        if site is None:
            return
        distribution, obs, batch = site
        # explicit indices: the minibatch is chosen by the caller, so the plate only scales (and
        # draws no random subsample of its own)
        subsample = torch.arange(batch, device=readouts.device)
        with pyro.plate("data", size=self.num_data, subsample=subsample, dim=-1):
            pyro.sample("obs", distribution, obs=obs)

    def log_likelihood(self, readouts: torch.Tensor, y: torch.Tensor, t0: int = 0) -> torch.Tensor:
        """The data site's log-probability, summed and scaled by N/B as the plate scales it (the
        categorical log-probability written out: building the distribution costs more than the
        arithmetic at every online step)."""
        logits = self._scored(readouts, t0)
        if logits is None:
            return readouts.new_zeros(())
        batch = logits.shape[-4]
        labels = y.long().reshape(batch, 1, 1, 1).expand(*logits.shape[:-1], 1)
        return torch.log_softmax(logits, -1).gather(-1, labels).sum() * (self.num_data / batch)

    def logits(self, readouts: torch.Tensor) -> torch.Tensor:
        """Time-averaged last-layer logits (*S, B, classes)."""
        return self._after_burn_in(readouts, 0)[..., -1, :, :].mean(-2)

    def probs(self, readouts: torch.Tensor) -> torch.Tensor:
        """Class probabilities (*S, B, classes) of each weight draw."""
        return torch.softmax(self.logits(readouts), dim=-1)
