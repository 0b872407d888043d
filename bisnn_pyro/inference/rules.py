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
log-densities.  The Bayesian learning rule steps the natural parameters and hands any other
parameter to its companion (Adam).  Each rule takes the options of :data:`RULE_OPTIONS` and refuses
the others, so nothing given to a rule is silently ignored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
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

OPTION_DEFAULTS = {"temperature": 0.5, "prior_p": 0.5, "init_scale": 0.1, "momentum": 0.0, "prior_scale": 1.0}
RULE_OPTIONS = {  # the options each rule uses; any other option given to it is refused
    "bayes": ("temperature", "prior_p", "init_scale", "momentum"),
    "bayes-adam": ("temperature", "prior_p", "init_scale"),
    "bayes-sf": ("prior_p", "init_scale"),
    "ste": ("prior_p", "init_scale"),
    "fp": ("prior_scale",),
    "fp-bayes": ("prior_scale",),
}


@dataclass
class Rule:
    """The swappable parts of a learning rule (any of them may be replaced by the user's own), the
    learning rate, and the options that took effect."""

    name: str
    prior: Prior
    guide: Callable[[Callable], object]
    loss: ELBO
    optim: PyroOptim
    lr: float
    options: dict[str, float] = field(default_factory=dict)


def rule_options(name: str, **given: float | None) -> dict[str, float]:
    """The options rule ``name`` uses, with ``given`` (None: the default) in place of defaults;
    raises ValueError for an unknown rule, an option the rule does not use, or a value out of range."""
    if name not in RULES:
        raise ValueError(f"unknown rule {name!r}; expected one of {', '.join(RULES)}")
    unknown = sorted(set(given) - set(OPTION_DEFAULTS))
    if unknown:
        raise TypeError(f"unknown rule options {unknown}; expected some of {sorted(OPTION_DEFAULTS)}")
    used = RULE_OPTIONS[name]
    unused = sorted(option for option, value in given.items() if value is not None and option not in used)
    if unused:
        takes = ", ".join(used) if used else "none of them"
        raise ValueError(f"rule {name!r} does not use {', '.join(unused)} (it takes {takes})")
    options = {option: OPTION_DEFAULTS[option] if given.get(option) is None else given[option] for option in used}
    checks = {
        "temperature": (lambda v: v > 0 and math.isfinite(v), "temperature must be a finite number > 0"),
        "prior_p": (lambda v: 0 < v < 1, "prior probability p must lie in (0, 1)"),
        "init_scale": (lambda v: v >= 0 and math.isfinite(v), "init scale must be a finite number >= 0"),
        "momentum": (lambda v: 0 <= v < 1, "momentum must lie in [0, 1)"),
        "prior_scale": (lambda v: v > 0 and math.isfinite(v), "prior scale must be a finite number > 0"),
    }
    for option, value in options.items():
        ok, message = checks[option]
        if not ok(value):
            raise ValueError(f"{message}, got {value}")
    return options


def make_rule(
    name: str,
    *,
    lr: float | None = None,
    temperature: float | None = None,
    prior_p: float | None = None,
    prior_scale: float | None = None,
    init_scale: float | None = None,
    momentum: float | None = None,
    num_particles: int = 1,
    seed: int | None = None,
) -> Rule:
    """Build rule ``name`` with its hyper-parameters; None takes the rule's default, and an option
    the rule does not use is refused (``make_rule("ste", temperature=0.7)`` is a ValueError)."""
    options = rule_options(
        name, temperature=temperature, prior_p=prior_p, prior_scale=prior_scale, init_scale=init_scale, momentum=momentum
    )
    if num_particles < 1:
        raise ValueError(f"num_particles must be >= 1, got {num_particles}")
    lr = DEFAULT_LR[name] if lr is None else lr
    if not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"learning rate must be a finite number > 0, got {lr}")
    adam = pyro.optim.Adam({"lr": lr})
    # one plate (the data) in the model; vectorised particles sit at dim -2, the leading sample
    # dimension the network broadcasts its weights over
    particles = dict(num_particles=num_particles, vectorize_particles=num_particles > 1, max_plate_nesting=1)
    if name in ("bayes", "bayes-adam", "bayes-sf"):
        guide = partial(
            SignBernoulliGuide,
            temperature=options.get("temperature"),
            init_scale=options["init_scale"],
            seed=seed,
        )
        optim = BayesianLearningRule({"lr": lr, "momentum": options["momentum"]}) if name == "bayes" else adam
        loss = TraceGraph_ELBO(**particles) if name == "bayes-sf" else MeanFieldELBO(**particles)
        return Rule(name, BinaryPrior(options["prior_p"]), guide, loss, optim, lr, options)
    if name == "ste":
        guide = partial(StraightThroughGuide, init_scale=options["init_scale"], seed=seed)
        return Rule(name, BinaryPrior(options["prior_p"]), guide, Trace_ELBO(**particles), adam, lr, options)
    prior = GaussianPrior(options["prior_scale"])
    if name == "fp":
        guide = partial(AutoDelta, init_loc_fn=init_to_sample)
        return Rule(name, prior, guide, Trace_ELBO(**particles), adam, lr, options)
    guide = partial(AutoNormal, init_loc_fn=init_to_sample, init_scale=0.05)
    return Rule(name, prior, guide, MeanFieldELBO(**particles), adam, lr, options)
