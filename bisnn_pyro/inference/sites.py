"""The model description: one account of a model's latent sites that every engine reads.

``describe`` traces a ``BayesianSNN``'s model and guide once, at set-up, and
records for every latent site its shape, its prior, the guide's distribution for it, the module
attribute it replaces and, for a layer's weight, the layer.  SVI, the direct engine and the fused
engine read the sites, their priors and their guides from here, never from the format of a site's
name or from argument positions.  The same pass checks that the guide fits the prior, site by
site (``pair_problem``), and ``loss_problem`` checks a loss against the pair.

What may be combined (DESIGN.md, section 10):

================== ======================= ================ ============== =====================
prior \\ guide      sign-Bernoulli, relaxed exact (score fn.) straight-thr.  AutoNormal / AutoDelta
================== ======================= ================ ============== =====================
BinaryPrior        exact KL                exact KL         point mass     refused
RelaxedBinaryPrior Monte-Carlo KL          refused          refused        real weights in [-1, 1]
BetaBinaryPrior    weights as above, the hyper-latents get a Beta guide     refused over weights
GaussianPrior      refused                 refused          refused        full precision
================== ======================= ================ ============== =====================
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable

import torch
from pyro import poutine
from pyro.distributions import Delta, Distribution
from pyro.infer.autoguide import AutoGuide
from pyro.infer.elbo import ELBO
from pyro.poutine.util import site_is_subsample
from torch.distributions import Independent, constraints

from ..adapters.pyro_internals import sample_attributes
from ..errors import CompositionError
from ..models.distributions import relaxed_sign_values, sign_values


def latent_sites(model: Callable, *args, **kwargs) -> dict[str, dict]:
    """The unobserved sample sites of one run of ``model``, in order (no gradients, no params)."""
    with torch.no_grad(), poutine.block(hide_types=["param"]):
        trace = poutine.trace(model).get_trace(*args, **kwargs)
    return {
        name: site
        for name, site in trace.nodes.items()
        if site["type"] == "sample" and not site["is_observed"] and not site_is_subsample(site)
    }


def guide_sites(guide: torch.nn.Module, *args, **kwargs) -> dict[str, Distribution]:
    """The distribution of every site ``guide`` samples for the model (auxiliary sites left out),
    from one call in training mode, without gradients."""
    was_training = guide.training
    guide.train()
    try:
        with torch.no_grad(), poutine.block():
            trace = poutine.trace(guide).get_trace(*args, **kwargs)
    finally:
        guide.train(was_training)
    return {
        name: site["fn"]
        for name, site in trace.nodes.items()
        if site["type"] == "sample" and not site["infer"].get("is_auxiliary")
    }


def base_distribution(fn: Distribution) -> Distribution:
    """``fn`` without its ``Independent`` (``to_event``) wrappers."""
    while isinstance(fn, Independent):
        fn = fn.base_dist
    return fn


def _base_support(fn: Distribution) -> constraints.Constraint:
    support = fn.support
    while isinstance(support, constraints.independent):
        support = support.base_constraint
    return support


def support_name(fn: Distribution) -> str:
    """The support of ``fn`` in words."""
    support = _base_support(fn)
    if support is sign_values:
        return "{-1, +1}"
    if isinstance(support, constraints.interval):
        return f"[{float(support.lower_bound):g}, {float(support.upper_bound):g}]"
    return {constraints.real: "real", constraints.positive: "(0, inf)"}.get(support, repr(support))


def _same_support(a: constraints.Constraint, b: constraints.Constraint) -> bool:
    if a is b:
        return True
    if type(a) is not type(b):
        return False
    bounds = ("lower_bound", "upper_bound")
    return all(float(getattr(a, k, 0.0)) == float(getattr(b, k, 0.0)) for k in bounds)


REMEDIES = {
    "binary": "a +-1 site takes SignBernoulliGuide or StraightThroughGuide; for a continuous guide use "
    "RelaxedBinaryPrior or GaussianPrior with AutoNormal",
    "relaxed": "a relaxed site takes a relaxed SignBernoulliGuide (temperature > 0) or AutoNormal / AutoDelta",
    "real": "a real-valued site takes AutoNormal or AutoDelta (full precision)",
    "other": "give it a guide with the prior's support (e.g. BetaGuide for a Beta site)",
}


def _prior_kind(prior: Distribution) -> str:
    support = _base_support(prior)
    if support is sign_values:
        return "binary"
    if support is relaxed_sign_values:
        return "relaxed"
    return "real" if support is constraints.real else "other"


def pair_problem(name: str, prior: Distribution, guide_fn: Distribution, guide: torch.nn.Module) -> str:
    """Why the guide's distribution ``guide_fn`` cannot stand for the prior ``prior`` at site
    ``name`` ('' when it can).  Equal supports fit; so does the declared pair (a relaxed
    sign-Bernoulli against the exact prior, charged the exact KL); a Pyro autoguide maps onto any
    continuous support by construction, and a point value (``Delta``, as in a part of a
    ``GuideList`` made by an autoguide) fits any continuous prior."""
    kind = _prior_kind(prior)
    prior_support, guide_support = _base_support(prior), _base_support(guide_fn)
    if isinstance(guide, AutoGuide):
        if not prior_support.is_discrete:
            return ""
        return (
            f"site {name}: {type(guide).__name__} is continuous, but the prior {type(prior).__name__} has "
            f"support {support_name(prior)}; {REMEDIES[kind]}"
        )
    if _same_support(prior_support, guide_support):
        return ""
    if prior_support is sign_values and guide_support is relaxed_sign_values:
        return ""
    point = base_distribution(guide_fn)
    if type(point) is Delta and not prior_support.is_discrete:  # a point value (an autoguide's, say)
        return ""
    return (
        f"site {name}: the guide's {type(base_distribution(guide_fn)).__name__} has support "
        f"{support_name(guide_fn)}, but the prior {type(prior).__name__} has support {support_name(prior)}; "
        f"{REMEDIES[kind]}"
    )


def uncovered_problem(name: str, prior: Distribution, guide: torch.nn.Module) -> str:
    return (
        f"site {name} (prior {type(prior).__name__}, support {support_name(prior)}) has no guide: "
        f"{type(guide).__name__} does not cover it; {REMEDIES[_prior_kind(prior)]}"
    )


@dataclass(frozen=True)
class LatentSite:
    """One latent site: ``prior`` and ``guide`` are the base distributions traced at set-up (the
    guide's in training mode); ``module`` and ``attribute`` say which parameter it replaces
    (None for a site a prior samples on its own, such as a hyper-latent); ``layer`` is the index
    of the network layer whose weight it is (else None)."""

    name: str
    shape: torch.Size
    prior: Distribution
    guide: Distribution
    module: torch.nn.Module | None
    attribute: str | None
    layer: int | None

    @property
    def prior_buffer(self) -> torch.Tensor | None:
        """The tensor the site's prior reads now (``<attribute>_prior`` beside the parameter)."""
        return None if self.module is None else getattr(self.module, f"{self.attribute}_prior", None)

    @property
    def binary(self) -> bool:
        """Whether the site's prior is over {-1, +1}."""
        return _base_support(self.prior) is sign_values

    @property
    def relaxed_against_exact(self) -> bool:
        """Whether a relaxed guide stands for an exact sign prior (scored by the exact KL only)."""
        return self.binary and _base_support(self.guide) is relaxed_sign_values

    @property
    def reparameterised(self) -> bool:
        """Whether the guide's draws of this site carry a pathwise gradient."""
        return self.guide.has_rsample


@dataclass(frozen=True)
class ModelSites:
    """The latent sites of a model in the order it samples them, and for each network layer the
    site of its weight (None where the weight stays a learned parameter)."""

    sites: dict[str, LatentSite]
    layer_weights: tuple[str | None, ...]

    def __iter__(self):
        return iter(self.sites.values())

    def __getitem__(self, name: str) -> LatentSite:
        return self.sites[name]

    @property
    def hyper(self) -> list[str]:
        """Sites that replace no parameter of the network (hyper-latents of a hierarchical prior)."""
        return [site.name for site in self if site.module is None]

    @property
    def parameters(self) -> list[str]:
        """Sites that replace a parameter that is not a layer's weight (a bias under a prior, say)."""
        return [site.name for site in self if site.module is not None and site.layer is None]


def replaced_parameters(net: torch.nn.Module) -> dict[str, tuple[torch.nn.Module, str, int | None]]:
    """Per site a prior made on ``net``: (module, attribute, layer index or None), named as Pyro
    names the site (the module's path in ``net``, then the attribute).  A layer's synaptic weight
    is its ``weight``, the attribute the network's ``forward`` hands to ``run``."""
    layers = {id(layer): index for index, layer in enumerate(getattr(net, "layers", []))}
    found = {}
    for path, module in net.named_modules():
        for attribute in sample_attributes(module):
            layer = layers.get(id(module)) if attribute == "weight" else None
            found[f"{path}.{attribute}" if path else attribute] = (module, attribute, layer)
    return found


def describe(guide: torch.nn.Module, net: torch.nn.Module, model_sites: dict[str, dict], *args, **kwargs) -> ModelSites:
    """Trace ``guide`` (set up) on the example ``args`` and describe ``model_sites`` (the model's
    latent sites from ``latent_sites``), checking that the guide covers and fits every one of
    them; raises ``CompositionError`` naming the first site that does not."""
    guide_fns = guide_sites(guide, *args, **kwargs)
    replaced = replaced_parameters(net)
    sites = {}
    for name, site in model_sites.items():
        prior = base_distribution(site["fn"])
        if name not in guide_fns:
            raise CompositionError(uncovered_problem(name, prior, guide))
        problem = pair_problem(name, prior, guide_fns[name], guide)
        if problem:
            raise CompositionError(problem)
        module, attribute, layer = replaced.get(name, (None, None, None))
        sites[name] = LatentSite(
            name, prior.batch_shape, prior, base_distribution(guide_fns[name]), module, attribute, layer
        )
    extra = sorted(set(guide_fns) - set(model_sites))
    if extra:
        raise CompositionError(f"the guide samples sites the model does not have: {', '.join(extra)}")
    weights = [None] * len(getattr(net, "layers", []))
    for site in sites.values():
        if site.layer is not None:
            weights[site.layer] = site.name
    described = ModelSites(sites, tuple(weights))
    _warn_real_valued(described, guide)
    return described


def _warn_real_valued(sites: ModelSites, guide: torch.nn.Module) -> None:
    relaxed = [
        site.name
        for site in sites
        if _prior_kind(site.prior) == "relaxed" and _base_support(site.guide) is not relaxed_sign_values
    ]
    if relaxed:
        warnings.warn(
            f"{type(guide).__name__} learns real-valued weights in [-1, 1] at {', '.join(relaxed)}: predictions "
            "run the network on those real values, not on +-1 weights",
            stacklevel=4,  # the caller of BayesianSNN.setup
        )


def loss_problem(sites: ModelSites, loss: ELBO) -> str:
    """Why ``loss`` cannot train a model with these sites ('' when it can)."""
    from .elbo import MeanFieldELBO

    mean_field = isinstance(loss, MeanFieldELBO)
    for site in sites:
        if site.relaxed_against_exact and not mean_field:
            return (
                f"{type(loss).__name__} scores the exact prior of {site.name} at the guide's relaxed draws "
                "(a meaningless density); use bisnn_pyro.inference.MeanFieldELBO (the exact KL) or RelaxedBinaryPrior"
            )
        if not site.reparameterised and mean_field:
            return (
                f"MeanFieldELBO needs reparameterised guide sites, but {site.name} draws exact samples "
                "(a score-function guide); use TraceGraph_ELBO or Trace_ELBO"
            )
    return ""
