"""The ELBO evaluated directly, without Pyro's tracing: the light path for many small steps.

``SVI`` traces the guide and the model at every step, which costs a few milliseconds; with the
online schedule (an optimiser step at every time step) that overhead is most of the work.
``DirectELBO`` computes the loss of ``TraceMeanField_ELBO`` (exact KL per site) or of
``Trace_ELBO`` (log q - log p at the draw) from the guide's ``distributions()``, the prior's
distributions and the network's ``run``: the same draws, in the same order, for the same random
state, so the same loss and gradients (tested against SVI), with one particle or with vectorised
particles (P draws of every weight as one batch).  It reads the latent sites, their priors and which layer
each feeds from the model's description (``bsnn.sites``).  Like Pyro's JIT-compiled ELBOs it
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

from ..adapters.torch_internals import version
from .bnn import BayesianSNN
from .sites import CompositionError


class DirectELBO:
    """``loss(x, y, ...)`` of a ``BayesianSNN`` whose guide has reparameterised
    ``distributions()`` over every latent site, and whose latent sites are layers' weights under
    priors without hyper-latents (read from ``bsnn.sites``)."""

    def __init__(self, bsnn: BayesianSNN, *, analytic_kl: bool = True, num_particles: int = 1):
        reason = unsupported_reason(bsnn)
        if reason:
            raise CompositionError(f"the direct engine cannot evaluate this model: {reason}")
        if num_particles < 1:
            raise ValueError(f"num_particles must be >= 1, got {num_particles}")
        self.bsnn = bsnn
        self.analytic_kl = analytic_kl
        self.num_particles = num_particles
        self._prior_key: tuple = ()
        self._priors: dict = {}

    @classmethod
    def for_loss(cls, bsnn: BayesianSNN, loss: ELBO) -> DirectELBO:
        """The direct form of ``loss`` (a mean-field ELBO or ``Trace_ELBO``, one particle or
        vectorised particles)."""
        particles = getattr(loss, "num_particles", 1)
        if particles != 1 and not getattr(loss, "vectorize_particles", False):
            raise CompositionError(
                "the direct engine draws particles as one batch; use vectorize_particles=True or SVI"
            )
        if isinstance(loss, TraceMeanField_ELBO):
            return cls(bsnn, analytic_kl=True, num_particles=particles)
        if type(loss) is Trace_ELBO:
            return cls(bsnn, analytic_kl=False, num_particles=particles)
        raise CompositionError(f"the direct engine has no form of {type(loss).__name__}; use SVI")

    def weights(self, draws: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """The weight of every layer: its site's draw, or the layer's own parameter where the prior
        left it a learned parameter."""
        return [
            draws[site] if site is not None else layer.weight
            for site, layer in zip(self.bsnn.sites.layer_weights, self.bsnn.net.layers)
        ]

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
        runs them along a leading sample dimension).  A site without a closed-form KL is charged
        log q(w) - log p(w) at its draw, as ``MeanFieldELBO`` charges it."""
        bsnn, particles = self.bsnn, self.num_particles
        sample_shape = torch.Size([particles] if particles > 1 else [])
        with pyro.validation_enabled(False):
            posteriors = bsnn.guide.distributions()
            priors = self.prior_distributions()
            draws, divergence = {}, 0.0
            for name, q in posteriors.items():
                draws[name] = w = q.rsample(sample_shape)
                if self.analytic_kl:  # the same for every particle
                    try:
                        divergence = divergence + kl_divergence(q, priors[name]).sum()
                        continue
                    except NotImplementedError:
                        pass
                divergence = divergence + (q.log_prob(w) - priors[name].log_prob(w)).sum() / particles
        out = bsnn.net.run(x, self.weights(draws), state)
        if carry is not None:
            carry["state"] = [s.detach() for s in out.state]
        log_likelihood = bsnn.likelihood.log_likelihood(out.readouts, y, t0) / particles
        return bsnn.kl_weight * kl_scale * divergence - log_likelihood

    def prior_distributions(self) -> dict[str, torch.distributions.Distribution]:
        """The model's prior per site, kept while the prior and its tensors are the same objects,
        unchanged."""
        buffers = self.bsnn.prior_buffers()
        key = (id(self.bsnn.prior), *((name, id(buffer), version(buffer)) for name, buffer in buffers.items()))
        if key != self._prior_key:
            self._prior_key, self._priors = key, self.bsnn.prior_distributions()
        return self._priors


def unsupported_reason(bsnn: BayesianSNN) -> str:
    """Why ``DirectELBO`` cannot evaluate ``bsnn`` ('' when it can)."""
    sites = bsnn.sites
    others = sites.hyper + sites.parameters
    if others:
        return f"its latent sites {', '.join(others)} are not layers' weights under fixed priors; use SVI"
    distributions = getattr(bsnn.guide, "distributions", None)
    if not callable(distributions):
        return f"its guide {type(bsnn.guide).__name__} has no distributions() method; use SVI"
    covered = set(distributions())
    if covered != set(sites.sites):
        return f"its guide's distributions() cover {sorted(covered)}, not the latent sites {sorted(sites.sites)}"
    if bsnn.guide.training and not all(site.reparameterised for site in sites):
        return "its guide is not reparameterised (score-function training needs SVI with TraceGraph_ELBO)"
    return ""


class DirectSVI:
    """``SVI.step`` with a ``DirectELBO``: backward, then the Pyro optimiser on every module
    parameter that received a gradient (the same per-parameter optimisers SVI would build)."""

    def __init__(self, elbo: DirectELBO, optim: PyroOptim):
        self.elbo, self.optim = elbo, optim

    def step(self, *args, **kwargs) -> float:
        """One optimiser step on the loss of ``args`` (as ``SVI.step``); returns the loss."""
        loss = self.elbo.loss(*args, **kwargs)
        loss.backward()
        params = [p for p in self.elbo.bsnn.parameters() if p.grad is not None]
        self.optim(params)
        for p in params:
            p.grad = None
        return loss.item()
