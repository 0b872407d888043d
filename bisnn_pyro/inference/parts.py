"""The library's parts by name, for configuration files and the command line
(``bisnn_pyro.config.components``): priors, guides, likelihoods and optimisers with their
options, and the losses."""

from __future__ import annotations

from functools import partial

import pyro.optim
from pyro.infer import Trace_ELBO, TraceGraph_ELBO
from pyro.infer.autoguide import AutoDelta, AutoNormal, init_to_sample

from ..config.components import register
from ..config.options import Option, between, non_negative, positive, unit_interval_right_open
from ..models.likelihoods import LastReadoutCategorical, ReadoutCategorical
from ..models.priors import BetaBinaryPrior, BinaryPrior, GaussianPrior, RelaxedBinaryPrior
from .elbo import MeanFieldELBO
from .guides import DEFAULT_TEMPERATURE, SignBernoulliGuide, StraightThroughGuide
from .optim import DEFAULT_COMPANION_LR, BayesianLearningRule

P = Option("p", float, 0.5, "prior P(w = +1)", **between(1e-6, 1 - 1e-6, "a prior this sure leaves nothing to learn"),
           flags=("--prior-p",))
RELAXED = "below it relaxed draws are +-1 and carry no gradient; above it they carry no sign"
TEMPERATURE = Option("temperature", float, DEFAULT_TEMPERATURE, "relaxation temperature tau",
                     **between(0.01, 100, RELAXED), flags=("--temperature",))
INIT_SCALE = Option("init_scale", float, 0.1, "scale of the guide's random initial values", **non_negative(),
                    flags=("--init-scale",))


@register("prior", "binary", P)
def binary(p):
    """Sign-Bernoulli prior with P(w = +1) = p on every synaptic weight."""
    return BinaryPrior(p)


@register(
    "prior", "relaxed", P,
    Option("temperature", float, 1.0, "the relaxation's temperature", **between(0.01, 100, RELAXED)),
)
def relaxed(p, temperature):
    """The binary prior's concrete relaxation (a Monte-Carlo KL)."""
    return RelaxedBinaryPrior(p, temperature=temperature)


@register(
    "prior",
    "beta-binary",
    Option("a", float, 1.0, "Beta concentration a", **positive()),
    Option("b", float, 1.0, "Beta concentration b", **positive()),
    Option("per", str, "layer", "one p per layer or per output neuron", choices=BetaBinaryPrior.PER),
)
def beta_binary(a, b, per):
    """Hierarchical: p ~ Beta(a, b) per layer or neuron, w | p ~ sign-Bernoulli(p)."""
    return BetaBinaryPrior(a, b, per=per)


@register(
    "prior", "gaussian", Option("scale", float, 1.0, "prior standard deviation", **positive(), flags=("--prior-scale",))
)
def gaussian(scale):
    """Zero-mean Gaussian prior on real-valued weights (full precision)."""
    return GaussianPrior(scale)


@register("guide", "sign-bernoulli", TEMPERATURE, INIT_SCALE, loss="mean-field")
def sign_bernoulli(temperature, init_scale, seed=None):
    """Mean-field sign-Bernoulli posterior, relaxed draws at temperature tau (Bayes-BiSNN)."""
    return partial(SignBernoulliGuide, temperature=temperature, init_scale=init_scale, seed=seed)


@register("guide", "sign-bernoulli-exact", INIT_SCALE, loss="trace-graph")
def sign_bernoulli_exact(init_scale, seed=None):
    """Mean-field sign-Bernoulli posterior with exact +-1 draws (score-function gradients)."""
    return partial(SignBernoulliGuide, temperature=None, init_scale=init_scale, seed=seed)


@register("guide", "straight-through", INIT_SCALE, loss="trace", point_estimate=True)
def straight_through(init_scale, seed=None):
    """Latent real theta, weight sign(theta), identity backward (ST-BiSNN)."""
    return partial(StraightThroughGuide, init_scale=init_scale, seed=seed)


@register("guide", "auto-delta", loss="trace", point_estimate=True)
def auto_delta():
    """Pyro's AutoDelta: a point estimate of each weight, initialised by a prior draw."""
    return partial(AutoDelta, init_loc_fn=init_to_sample)


@register(
    "guide", "auto-normal", Option("init_scale", float, 0.05, "initial posterior scale", **positive()),
    loss="mean-field",
)
def auto_normal(init_scale):
    """Pyro's AutoNormal: a mean-field Gaussian posterior of each weight."""
    return partial(AutoNormal, init_loc_fn=init_to_sample, init_scale=init_scale)


@register(
    "likelihood", "decolle",
    Option("readouts", str, "all", "the readouts it scores", choices=ReadoutCategorical.READOUTS),
)
def decolle(num_data, burn_in, readouts):
    """DECOLLE's: the label at every step after burn-in of every layer's readout (or the last's)."""
    return ReadoutCategorical(num_data, burn_in, readouts)


@register("likelihood", "last-readout")
def last_readout(num_data, burn_in):
    """One categorical per example on the time-averaged last readout (the predictive's own model)."""
    return LastReadoutCategorical(num_data, burn_in)


@register(
    "optim",
    "learning-rule",
    Option("lr", float, 5e-4, "step size of the natural parameters", **positive(), flags=("--lr",)),
    Option(
        "momentum", float, 0.0, "momentum of the natural gradient", **unit_interval_right_open(), flags=("--momentum",)
    ),
    Option("companion_lr", float, DEFAULT_COMPANION_LR, "Adam's step size for every other parameter", **positive()),
)
def learning_rule(lr, momentum, companion_lr):
    """The Bayesian learning rule for natural parameters, Adam for the others."""
    return BayesianLearningRule({"lr": lr, "momentum": momentum}, companion=pyro.optim.Adam({"lr": companion_lr}))


@register("optim", "adam", Option("lr", float, 1e-3, "step size", **positive(), flags=("--lr",)))
def adam(lr):
    """Adam on every parameter."""
    return pyro.optim.Adam({"lr": lr})


LOSS_CLASSES = {"mean-field": MeanFieldELBO, "trace": Trace_ELBO, "trace-graph": TraceGraph_ELBO}


def make_loss(name: str, particles: int = 1):
    """The ELBO ``name`` with ``particles`` particles drawn as one batch (one data plate; the
    particles sit at dim -2, the leading sample dimension the network broadcasts over)."""
    return LOSS_CLASSES[name](num_particles=particles, vectorize_particles=particles > 1, max_plate_nesting=1)
