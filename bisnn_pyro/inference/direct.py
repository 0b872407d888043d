"""The ELBO evaluated directly, without Pyro's tracing: the light path for many small steps.

``SVI`` traces the guide and the model at every step, which costs a few milliseconds; with the
online schedule (an optimiser step at every time step) that overhead is most of the work.
:class:`DirectELBO` computes the loss of ``TraceMeanField_ELBO`` (exact KL per site) or of
``Trace_ELBO`` (log q - log p at the draw) from the guide's ``distributions()``, the prior's
distributions and the network's ``run``: the same draws, in the same order, for the same random
state, so the same loss and gradients (tested against SVI), with one particle or with vectorised
particles (P draws of every weight as one batch).  Like Pyro's JIT-compiled ELBOs it
skips distribution argument validation (the trainer checks every loss for NaN), and it rebuilds
the prior's distributions only when a prior tensor changes, so a fixed prior's normaliser is
computed once rather than at every online step.
"""

from __future__ import annotations

import pyro
import torch
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO
from pyro.infer.elbo import ELBO
from pyro.optim import PyroOptim
from torch.distributions import kl_divergence

from .bnn import BayesianSNN


class DirectELBO:
    """``loss(x, y, ...)`` of a :class:`BayesianSNN` whose guide has reparameterised
    ``distributions()`` and whose latent sites are the layers' weights."""

    def __init__(self, bsnn: BayesianSNN, *, analytic_kl: bool = True, num_particles: int = 1):
        reason = unsupported_reason(bsnn)
        if reason:
            raise ValueError(f"the direct ELBO cannot evaluate this model: {reason}")
        if num_particles < 1:
            raise ValueError(f"num_particles must be >= 1, got {num_particles}")
        self.bsnn = bsnn
        self.analytic_kl = analytic_kl
        self.num_particles = num_particles
        self.layer_sites = [f"layers.{i}.weight" for i in range(len(bsnn.net.layers))]
        self._prior_key: tuple = ()
        self._priors: dict = {}

    @classmethod
    def for_loss(cls, bsnn: BayesianSNN, loss: ELBO) -> DirectELBO:
        """The direct form of ``loss`` (``TraceMeanField_ELBO`` or ``Trace_ELBO``, one particle or
        vectorised particles)."""
        particles = getattr(loss, "num_particles", 1)
        if particles != 1 and not getattr(loss, "vectorize_particles", False):
            raise ValueError("the direct ELBO draws particles as one batch; use vectorize_particles=True or SVI")
        if isinstance(loss, TraceMeanField_ELBO):
            return cls(bsnn, analytic_kl=True, num_particles=particles)
        if type(loss) is Trace_ELBO:
            return cls(bsnn, analytic_kl=False, num_particles=particles)
        raise ValueError(f"the direct ELBO has no form of {type(loss).__name__}; use SVI")

    def draws(self) -> dict[str, torch.Tensor]:
        """One reparameterised draw per site, in the guide's site order."""
        return {name: q.rsample() for name, q in self.bsnn.guide.distributions().items()}

    def loss(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        t0: int = 0,
        state=None,
        carry: dict | None = None,
        kl_scale: float = 1.0,
    ) -> torch.Tensor:
        """-ELBO (differentiable) for steps t0 .. t0 + T - 1 of ``x``, as ``BayesianSNN.model`` defines
        it; with P particles, the mean over P draws of every weight taken as one batch (the network
        runs them along a leading sample dimension)."""
        bsnn, particles = self.bsnn, self.num_particles
        sample_shape = torch.Size([particles] if particles > 1 else [])
        with pyro.validation_enabled(False):
            posteriors = bsnn.guide.distributions()
            priors = self.prior_distributions()
            weights, divergence = {}, 0.0
            for name, q in posteriors.items():
                weights[name] = w = q.rsample(sample_shape)
                if self.analytic_kl:  # the same for every particle
                    divergence = divergence + kl_divergence(q, priors[name]).sum()
                else:
                    divergence = divergence + (q.log_prob(w) - priors[name].log_prob(w)).sum() / particles
        out = bsnn.net.run(x, [weights[name] for name in self.layer_sites], state)
        if carry is not None:
            carry["state"] = [s.detach() for s in out.state]
        log_likelihood = bsnn.likelihood.log_likelihood(out.readouts, y, t0) / particles
        return bsnn.kl_weight * kl_scale * divergence - log_likelihood

    def prior_distributions(self) -> dict[str, torch.distributions.Distribution]:
        """The model's prior per site, kept while the prior and its tensors are the same objects,
        unchanged."""
        buffers = self.bsnn.prior_buffers()
        key = (id(self.bsnn.prior), *((name, id(buffer), buffer._version) for name, buffer in buffers.items()))
        if key != self._prior_key:
            self._prior_key, self._priors = key, self.bsnn.prior_distributions()
        return self._priors


def unsupported_reason(bsnn: BayesianSNN) -> str:
    """Why :class:`DirectELBO` cannot evaluate ``bsnn`` ('' when it can)."""
    distributions = getattr(bsnn.guide, "distributions", None)
    if not callable(distributions):
        return f"{type(bsnn.guide).__name__} has no distributions() method"
    sites = getattr(bsnn.guide, "sites", {})
    expected = {f"layers.{i}.weight" for i in range(len(bsnn.net.layers))}
    if set(sites) != expected:
        return f"its latent sites {sorted(sites)} are not the layers' weights {sorted(expected)}"
    if bsnn.guide.training and not all(q.has_rsample for q in distributions().values()):
        return "its guide is not reparameterised (score-function training needs SVI with TraceGraph_ELBO)"
    return ""


class DirectSVI:
    """``SVI.step`` with a :class:`DirectELBO`: backward, then the Pyro optimiser on every module
    parameter that received a gradient (the same per-parameter optimisers SVI would build)."""

    def __init__(self, elbo: DirectELBO, optim: PyroOptim):
        self.elbo, self.optim = elbo, optim

    def step(self, *args, **kwargs) -> float:
        loss = self.elbo.loss(*args, **kwargs)
        loss.backward()
        params = [p for p in self.elbo.bsnn.parameters() if p.grad is not None]
        self.optim(params)
        for p in params:
            p.grad = None
        return loss.item()
