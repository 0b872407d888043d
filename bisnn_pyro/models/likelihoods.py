"""Likelihoods on readouts: the observation model of the ELBO and the predictive distribution.

Two observation models are offered, both predicting with the last layer's readout averaged over
the steps after burn-in (the paper's convention):

* ``ReadoutCategorical`` (``decolle``): DECOLLE's loss, one categorical observation of the
  label at every step after burn-in of every layer's readout (N x layers x (T - burn-in) terms: a
  tempered likelihood, the paper's form, and the one that lets each layer learn locally);
* ``LastReadoutCategorical`` (``last-readout``): one categorical per example on the
  time-averaged last readout, the very distribution the predictive uses, so that the ELBO, the
  posterior predictive and the log-likelihoods agree.

A likelihood of your own subclasses ``Likelihood`` and writes ``scored_logits`` and
``observation``; the data plate (size ``num_data``, so a minibatch of B is scaled by N/B), the
``readouts`` site and the predictive come from the base class.
"""

from __future__ import annotations

import pyro
import torch
from pyro.distributions import Categorical


class Likelihood:
    r"""Base class of observation models $p(y \mid \text{readouts})$: the model's data sites on
    readouts (*S, B, layers, T, classes) covering the steps t0 .. t0 + T - 1 of a sequence, and
    the predictive distribution from them; the protocol a likelihood of one's own implements.

    A subclass implements ``scored_logits`` (which readouts are scored: e.g. every layer's at
    every step after burn-in, DECOLLE's local losses) and ``observation`` (the distribution of
    the label given them).  Calling it places the sites in a ``pyro.plate`` of size ``num_data``
    that scales the minibatch's log-likelihood by $N/B$; ``logits`` and ``probs`` give the
    prediction of each weight draw (the last layer's readout averaged over the steps after
    burn-in).

    ``readouts`` says which layers' readouts the observation model scores: ``"all"`` or
    ``"last"`` (then only end-to-end learning trains the earlier layers).  ``online`` says whether
    it can score the steps of a sequence one at a time (the online schedule).
    """

    name = "likelihood"
    online = True
    READOUTS = ("all", "last")

    def __init__(self, num_data: int, burn_in: int = 10, readouts: str = "all"):
        if num_data < 1:
            raise ValueError(f"num_data must be >= 1, got {num_data}")
        if burn_in < 0:
            raise ValueError(f"burn_in must be >= 0, got {burn_in}")
        if readouts not in self.READOUTS:
            raise ValueError(f"readouts must be 'all' or 'last', got {readouts!r}")
        self.num_data = num_data
        self.burn_in = burn_in
        self.readouts = readouts

    def after_burn_in(self, readouts: torch.Tensor, t0: int) -> torch.Tensor:
        """The readouts of the steps after burn-in, for readouts starting at step ``t0``."""
        return readouts[..., max(self.burn_in - t0, 0) :, :]

    def scored_logits(self, readouts: torch.Tensor, t0: int) -> torch.Tensor | None:
        """The logits the observation model scores, or None when no step of these readouts counts."""
        raise NotImplementedError

    def observation(self, logits: torch.Tensor, y: torch.Tensor | None):
        """(distribution with batch shape (*S, B), observed value or None) for ``scored_logits``."""
        raise NotImplementedError

    def __call__(self, readouts: torch.Tensor, y: torch.Tensor | None, t0: int = 0) -> None:
        batch = readouts.shape[-4]
        # explicit indices: the minibatch is chosen by the caller, so the plate only scales (and
        # draws no random subsample of its own)
        subsample = torch.arange(batch, device=readouts.device)
        with pyro.plate("data", size=self.num_data, subsample=subsample, dim=-1):
            pyro.deterministic("readouts", readouts, event_dim=3)
            logits = self.scored_logits(readouts, t0)
            if logits is not None:
                distribution, obs = self.observation(logits, y)
                pyro.sample("obs", distribution, obs=obs)

    def log_likelihood(self, readouts: torch.Tensor, y: torch.Tensor, t0: int = 0) -> torch.Tensor:
        """The data site's log-probability summed and scaled by N/B, as the plate scales it (what
        the direct engine adds to the ELBO without tracing the model).  For the library's
        categorical observation models the log-probability is written out: building the
        distribution costs more than the arithmetic at every online step."""
        logits = self.scored_logits(readouts, t0)
        if logits is None:
            return readouts.new_zeros(())
        batch = readouts.shape[-4]
        if type(self).observation in CATEGORICAL_OBSERVATIONS:
            between = logits.dim() - (readouts.dim() - 4) - 2  # dims between the batch's and the classes'
            labels = y.long().reshape((batch,) + (1,) * between).expand(logits.shape[:-1]).unsqueeze(-1)
            return torch.log_softmax(logits, -1).gather(-1, labels).sum() * (self.num_data / batch)
        distribution, obs = self.observation(logits, y)
        return distribution.log_prob(obs).sum() * (self.num_data / batch)

    def logits(self, readouts: torch.Tensor) -> torch.Tensor:
        """The predictive logits (*S, B, classes): the last layer's readout averaged over the steps
        after burn-in."""
        return self.after_burn_in(readouts, 0)[..., -1, :, :].mean(-2)

    def probs(self, readouts: torch.Tensor) -> torch.Tensor:
        """Class probabilities (*S, B, classes) of each weight draw."""
        return torch.softmax(self.logits(readouts), dim=-1)


class ReadoutCategorical(Likelihood):
    """DECOLLE's likelihood: a categorical observation of the label at every step after burn-in of
    every layer's readout (``readouts="all"``, each layer's local loss) or of the last layer's only
    (``"last"``, for end-to-end learning with one output)."""

    name = "decolle"

    def scored_logits(self, readouts: torch.Tensor, t0: int) -> torch.Tensor | None:
        logits = self.after_burn_in(readouts, t0)
        if self.readouts == "last":
            logits = logits[..., -1:, :, :]
        return None if logits.shape[-2] == 0 else logits

    def observation(self, logits: torch.Tensor, y: torch.Tensor | None):
        batch, layers, steps = logits.shape[-4:-1]
        obs = None if y is None else y.reshape(batch, 1, 1).expand(batch, layers, steps)
        return Categorical(logits=logits).to_event(2), obs


class LastReadoutCategorical(Likelihood):
    """One categorical observation per example on the last layer's readout averaged over the steps
    after burn-in: the predictive distribution itself, so that the ELBO, the posterior predictive
    and the log-likelihoods agree.  It scores whole sequences (no online schedule) and, under
    local learning, would train the last layer only, so it needs end-to-end learning."""

    name = "last-readout"
    online = False

    def __init__(self, num_data: int, burn_in: int = 10):
        super().__init__(num_data, burn_in, readouts="last")

    def scored_logits(self, readouts: torch.Tensor, t0: int) -> torch.Tensor | None:
        if t0 != 0:
            raise ValueError("LastReadoutCategorical scores whole sequences from step 0; use the sequence schedule")
        if readouts.shape[-2] <= self.burn_in:
            return None
        return self.logits(readouts)

    def observation(self, logits: torch.Tensor, y: torch.Tensor | None):
        return Categorical(logits=logits), y


LIKELIHOODS = {cls.name: cls for cls in (ReadoutCategorical, LastReadoutCategorical)}
CATEGORICAL_OBSERVATIONS = (ReadoutCategorical.observation, LastReadoutCategorical.observation)
