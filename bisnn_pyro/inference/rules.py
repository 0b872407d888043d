"""Learning rules by name: each is a prior, a guide builder, an ELBO and an optimiser.

========== ========================================= ======================= ================
rule       guide                                     loss                    optimiser
========== ========================================= ======================= ================
bayes      mean-field sign-Bernoulli, relaxed at tau MeanField (exact KL)  Bayesian learning rule
bayes-adam the same                                  the same                Adam
bayes-sf   the same, exact +-1 samples               TraceGraph (score fn)   Adam
ste        straight-through sign(theta)              Trace                   Adam
fp         AutoDelta, Gaussian prior                 Trace                   Adam
fp-bayes   AutoNormal, Gaussian prior                MeanField               Adam
========== ========================================= ======================= ================

MeanField is :class:`.elbo.MeanFieldELBO`: Pyro's ``TraceMeanField_ELBO`` without the unused
log-densities.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable

import pyro.optim
from pyro.infer import Trace_ELBO, TraceGraph_ELBO
from pyro.infer.autoguide import AutoDelta, AutoNormal, init_to_sample
from pyro.infer.elbo import ELBO
from pyro.optim import PyroOptim

from ..models.priors import BinaryPrior, GaussianPrior, Prior
from .elbo import MeanFieldELBO
from .guides import SignBernoulliGuide, StraightThroughGuide
from .optim import BayesianLearningRule

RULES = ("bayes", "bayes-adam", "bayes-sf", "ste", "fp", "fp-bayes")
POINT_ESTIMATE_RULES = ("ste", "fp")  # their guides are point masses: an ensemble is the MAP

DEFAULT_LR = {
    "bayes": 5e-4,
    "bayes-adam": 5e-2,
    "bayes-sf": 5e-2,
    "ste": 1e-3,
    "fp": 2e-2,
    "fp-bayes": 1e-2,
}


@dataclass
class Rule:
    """The swappable parts of a learning rule (any of them may be replaced by the user's own)."""

    name: str
    prior: Prior
    guide: Callable[[Callable], object]
    loss: ELBO
    optim: PyroOptim
    lr: float


def make_rule(
    name: str,
    *,
    lr: float | None = None,
    temperature: float = 0.5,
    prior_p: float = 0.5,
    prior_scale: float = 1.0,
    init_scale: float = 0.1,
    momentum: float = 0.0,
    num_particles: int = 1,
    seed: int | None = None,
) -> Rule:
    """Build rule ``name`` with its hyper-parameters (``lr=None`` takes the rule's default)."""
    if name not in RULES:
        raise ValueError(f"unknown rule {name!r}; expected one of {', '.join(RULES)}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if not 0 < prior_p < 1:
        raise ValueError(f"prior probability p must lie in (0, 1), got {prior_p}")
    if num_particles < 1:
        raise ValueError(f"num_particles must be >= 1, got {num_particles}")
    lr = DEFAULT_LR[name] if lr is None else lr
    if not lr > 0:
        raise ValueError(f"learning rate must be > 0, got {lr}")
    adam = pyro.optim.Adam({"lr": lr})
    # one plate (the data) in the model; vectorised particles sit at dim -2, the leading sample
    # dimension the network broadcasts its weights over
    particles = dict(num_particles=num_particles, vectorize_particles=num_particles > 1, max_plate_nesting=1)
    if name in ("bayes", "bayes-adam", "bayes-sf"):
        guide = partial(
            SignBernoulliGuide,
            temperature=None if name == "bayes-sf" else temperature,
            init_scale=init_scale,
            seed=seed,
        )
        if name == "bayes":
            optim = BayesianLearningRule({"lr": lr, "momentum": momentum})
        else:
            optim = adam
        loss = TraceGraph_ELBO(**particles) if name == "bayes-sf" else MeanFieldELBO(**particles)
        return Rule(name, BinaryPrior(prior_p), guide, loss, optim, lr)
    if name == "ste":
        guide = partial(StraightThroughGuide, init_scale=init_scale, seed=seed)
        return Rule(name, BinaryPrior(0.5), guide, Trace_ELBO(**particles), adam, lr)
    if name == "fp":
        guide = partial(AutoDelta, init_loc_fn=init_to_sample)
        return Rule(name, GaussianPrior(prior_scale), guide, Trace_ELBO(**particles), adam, lr)
    guide = partial(AutoNormal, init_loc_fn=init_to_sample, init_scale=0.05)
    return Rule(name, GaussianPrior(prior_scale), guide, MeanFieldELBO(**particles), adam, lr)
