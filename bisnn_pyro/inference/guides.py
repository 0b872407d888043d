"""Guides over the model's latent sites: mean-field sign-Bernoulli, straight-through, Beta, and
lists of guides over disjoint sites.

The protocol a guide follows here is Pyro's (a callable taking the model's arguments that samples
every latent site it covers) plus a few methods the library uses where they exist:

* ``setup(*example_args)``: create the parameters before any step, so ``load_state_dict`` works;
* ``distributions()``: q per site as the guide samples it (the direct engine evaluates the ELBO
  from these without tracing);
* ``median()`` and ``mean()``: point weights per site (MAP and mean predictions);
* ``sites``: the names and shapes of the sites it covers.

``WeightGuide`` provides all of them from three methods a subclass writes: ``covers(prior)``,
``init_site(name, prior, params, generator)`` and ``site_distribution(name, params)``.
Parameters are ``PyroParam``s (or ``NaturalParameter``s) of the guide module:
nothing lives in Pyro's global parameter store.
"""

from __future__ import annotations

import functools
from typing import Callable, Sequence

import pyro
import torch
from pyro import poutine
from pyro.distributions import Beta, Delta, Distribution, TorchDistribution, constraints
from pyro.nn import PyroModule, PyroParam

from ..adapters.pyro_internals import LocalPyroModule, local_params
from ..models.distributions import RelaxedSignBernoulli, SignBernoulli, relaxed_sign_values, sign_values
from .optim import NaturalParameter
from .sites import base_distribution, latent_sites

DECIDED_NATURAL = 20.0  # P(w = sign) = 1 - 4e-18: a point mass with a finite KL


DEFAULT_TEMPERATURE = 0.5  # tau of the relaxed draws: the Bayes-BiSNN default, also of the sign-bernoulli part


def sign(x: torch.Tensor) -> torch.Tensor:
    """sign with sign(0) = +1, so every weight is +-1."""
    return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)


def _set_nested(root: PyroModule, dotted: str, value: PyroModule) -> None:
    """Set ``root.a.b.c = value`` for ``dotted = 'a.b.c'``, creating PyroModules on the way."""
    *path, leaf = dotted.split(".")
    for part in path:
        if not hasattr(root, part):
            setattr(root, part, PyroModule())
        root = getattr(root, part)
    setattr(root, leaf, value)


def is_sign_site(prior: Distribution) -> bool:
    """Whether a site's prior is over +-1 weights, exact or relaxed (the sites the sign guides take;
    the relaxed prior refuses the exact and straight-through guides when the supports are checked)."""
    return prior.support is sign_values or prior.support is relaxed_sign_values


def covered_sites(guide: torch.nn.Module) -> dict[str, torch.Size] | None:
    """The sites a set-up guide covers and their shapes, as it says (``sites``) or, for a Pyro
    autoguide, as its prototype trace of the model shows; None for a guide that says neither."""
    if hasattr(guide, "sites"):
        return dict(guide.sites)
    prototype = getattr(guide, "prototype_trace", None)
    if prototype is None:
        return None
    return {name: site["value"].shape for name, site in prototype.iter_stochastic_nodes()}


def set_up(guide: torch.nn.Module, *args, **kwargs) -> None:
    """Create a guide's parameters: its ``setup`` where it has one, else one call (Pyro's
    autoguides make theirs on their first call)."""
    if hasattr(guide, "setup"):
        guide.setup(*args, **kwargs)
    else:
        with torch.no_grad(), poutine.block():
            guide(*args, **kwargs)


class WeightGuide(LocalPyroModule):
    r"""Base of mean-field guides $q(w) = \prod_s q_s(w_s)$ with parameters of their own for each
    latent site $s$ they cover: the protocol a guide of one's own implements.

    A subclass implements three methods: ``covers(prior)`` (which sites it takes),
    ``init_site(name, prior, params, generator)`` (create a site's parameters) and
    ``site_distribution(name, params)`` ($q_s$ from them).  ``setup(*example_args)`` traces the
    model once and, for every latent site whose prior ``covers`` accepts, makes a small module
    ``params`` for the site (``site_parameters(name)``) and calls ``init_site`` to fill it.  The
    guide then samples each site from ``site_distribution``, whose batch shape is the site's
    shape, and offers ``distributions()`` (every $q_s$ at once), from which the direct engine
    evaluates the ELBO without tracing.
    """

    def __init__(self, model: Callable, *, init_scale: float = 0.1, seed: int | None = None):
        super().__init__()
        self.model = (model,)  # a tuple, so the model is not registered as a submodule
        self.init_scale = init_scale
        self.seed = seed
        self.sites: dict[str, torch.Size] = {}
        self.params = PyroModule()
        self.is_set_up = False

    def covers(self, prior: Distribution) -> bool:
        """Whether this guide takes a latent site with (base) prior distribution ``prior``."""
        raise NotImplementedError

    def init_site(self, name: str, prior: Distribution, params: PyroModule, generator: torch.Generator) -> None:
        """Create the parameters of site ``name`` as attributes of ``params`` (the site's shape is
        ``prior.batch_shape``; draw random initial values from ``generator``)."""
        raise NotImplementedError

    def site_distribution(self, name: str, params: PyroModule) -> Distribution:
        """q of site ``name`` from its parameters, batch shape = the site's shape."""
        raise NotImplementedError

    def setup(self, *args, **kwargs) -> "WeightGuide":
        """Create the parameters of every latent site of ``model(*args, **kwargs)`` this guide covers.
        Their random initial values come from a generator of the guide's own, seeded by ``seed``,
        or when that is None by one draw from torch's global generator (so ``pyro.set_rng_seed``
        makes them reproducible)."""
        generator = torch.Generator()
        generator.manual_seed(self.seed if self.seed is not None else int(torch.randint(2**62, ()).item()))
        for name, site in latent_sites(self.model[0], *args, **kwargs).items():
            prior = base_distribution(site["fn"])
            if not self.covers(prior):
                continue
            self.sites[name] = prior.batch_shape
            params = PyroModule()
            _set_nested(self.params, name, params)
            self.init_site(name, prior, params, generator)
        self.is_set_up = True
        return self

    def site_parameters(self, name: str) -> PyroModule:
        """The module holding the parameters of site ``name``."""
        return functools.reduce(getattr, name.split("."), self.params)

    def distributions(self) -> dict[str, TorchDistribution]:
        """q per site, as ``forward`` samples it (so a loss can be evaluated without tracing)."""
        if not self.is_set_up:
            raise RuntimeError(f"{type(self).__name__}.setup(example inputs) must be called before use")
        return {
            name: self.site_distribution(name, self.site_parameters(name)).to_event(len(shape))
            for name, shape in self.sites.items()
        }

    def forward(self, *args, **kwargs) -> dict[str, torch.Tensor]:
        return {name: pyro.sample(name, q) for name, q in self.distributions().items()}


class SignBernoulliGuide(WeightGuide):
    r"""Mean-field $q(w) = \prod_i \mathrm{SignBernoulli}(w_i \mid \lambda_i)$ over the model's
    $\pm 1$ sites: the Bayes-BiSNN posterior.  Each site's natural parameters $\lambda$ are a
    ``NaturalParameter``, which ``BayesianLearningRule`` steps along the natural gradient.

    In training mode it draws relaxed samples $\tilde w = \tanh((\lambda + \delta)/\tau)$ at
    ``temperature`` $\tau$ (reparameterised, ``RelaxedSignBernoulli``); in eval mode, or with
    ``temperature=None`` (score-function training), exact $\pm 1$ samples.  ``median()`` is the
    MAP weights $\mathrm{sign}\,\lambda$ and ``mean()`` the mean weights $\tanh\lambda$.
    Subclasses may compute $\lambda$ differently (``natural_parameter``, e.g. low rank
    $\lambda = UV^\top$) or relax differently (``site_distribution``).
    """

    def __init__(
        self,
        model: Callable,
        *,
        temperature: float | None = DEFAULT_TEMPERATURE,
        init_scale: float = 0.1,
        seed: int | None = None,
    ):
        super().__init__(model, init_scale=init_scale, seed=seed)
        if temperature is not None and not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature

    def covers(self, prior: Distribution) -> bool:
        return is_sign_site(prior)

    def init_site(self, name: str, prior: Distribution, params: PyroModule, generator: torch.Generator) -> None:
        params.natural = NaturalParameter(self.init_scale * torch.randn(prior.batch_shape, generator=generator))

    def natural_parameter(self, name: str, params: PyroModule) -> torch.Tensor:
        """lam of site ``name``."""
        return params.natural

    def site_distribution(self, name: str, params: PyroModule) -> Distribution:
        natural = self.natural_parameter(name, params)
        if self.training and self.temperature is not None:
            return RelaxedSignBernoulli(natural, self.temperature)
        return SignBernoulli(natural)

    def natural(self) -> dict[str, torch.Tensor]:
        """The natural parameters lam per site."""
        return {name: self.natural_parameter(name, self.site_parameters(name)) for name in self.sites}

    def posterior(self, name: str) -> SignBernoulli:
        """q of site ``name`` (exact, without gradient)."""
        return SignBernoulli(self.natural_parameter(name, self.site_parameters(name)).detach())

    @torch.no_grad()
    def median(self, *args, **kwargs) -> dict[str, torch.Tensor]:
        """The posterior mode sign(lam) (MAP weights)."""
        return {name: sign(lam) for name, lam in self.natural().items()}

    @torch.no_grad()
    def mean(self, *args, **kwargs) -> dict[str, torch.Tensor]:
        """The posterior mean tanh(lam) (real-valued; a diagnostic)."""
        return {name: torch.tanh(lam) for name, lam in self.natural().items()}


class PointSign(Delta):
    """A point mass at a +-1 value: a ``Delta`` whose support is {-1, +1}."""

    @constraints.dependent_property
    def support(self):
        return constraints.independent(sign_values, self.event_dim)


class _StraightThroughSign(torch.autograd.Function):
    @staticmethod
    def forward(ctx, theta: torch.Tensor) -> torch.Tensor:
        return sign(theta)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> torch.Tensor:
        return grad_output


class StraightThroughGuide(WeightGuide):
    """ST-BiSNN: latent real theta, weight sign(theta) forward, identity backward (a point mass
    on +-1).  Under a non-uniform prior the gradient of log p(sign theta) = lam_p sign(theta) -
    log 2cosh(lam_p) passes straight through to theta."""

    def covers(self, prior: Distribution) -> bool:
        return is_sign_site(prior)

    def init_site(self, name: str, prior: Distribution, params: PyroModule, generator: torch.Generator) -> None:
        params.theta = PyroParam(self.init_scale * torch.randn(prior.batch_shape, generator=generator))

    def site_distribution(self, name: str, params: PyroModule) -> Distribution:
        return PointSign(_StraightThroughSign.apply(params.theta))

    @torch.no_grad()
    def median(self, *args, **kwargs) -> dict[str, torch.Tensor]:
        """The point weights sign(theta) (the mean too: the guide is a point mass)."""
        return {name: sign(self.site_parameters(name).theta) for name in self.sites}

    mean = median

    def posterior(self, name: str) -> SignBernoulli:
        """The point mass at sign(theta), as a sign-Bernoulli that is (numerically) certain."""
        return SignBernoulli(DECIDED_NATURAL * sign(self.site_parameters(name).theta.detach()))


class BetaGuide(WeightGuide):
    """Mean-field q(p) = Beta(alpha, beta) for the model's Beta-distributed sites (the hyper-latents
    of ``BetaBinaryPrior``), initialised at the prior."""

    def covers(self, prior: Distribution) -> bool:
        return isinstance(prior, torch.distributions.Beta)

    def init_site(self, name: str, prior: Distribution, params: PyroModule, generator: torch.Generator) -> None:
        params.alpha = PyroParam(prior.concentration1.detach().clone(), constraint=constraints.positive)
        params.beta = PyroParam(prior.concentration0.detach().clone(), constraint=constraints.positive)

    def site_distribution(self, name: str, params: PyroModule) -> Distribution:
        return Beta(params.alpha, params.beta)

    @torch.no_grad()
    def median(self, *args, **kwargs) -> dict[str, torch.Tensor]:
        """The posterior means alpha / (alpha + beta) (a point value for each site)."""
        return {name: base_distribution(q).mean for name, q in self.distributions().items()}

    mean = median


class GuideList(LocalPyroModule):
    """Guides over disjoint sets of the model's latent sites, used as one guide (in the manner of
    Pyro's ``AutoGuideList``): e.g. ``GuideList(model, [SignBernoulliGuide(model), BetaGuide(model)])``.
    A part may be any guide, a Pyro autoguide over ``poutine.block(model, expose=[...])`` too.
    When every part has ``distributions()``, the sites are sampled in the model's order."""

    def __init__(self, model: Callable, parts: Sequence[torch.nn.Module]):
        super().__init__()
        self.model = (model,)
        self.parts = PyroModule[torch.nn.ModuleList](list(parts))
        self.order: list[str] = []

    def setup(self, *args, **kwargs) -> "GuideList":
        """Set up every part not yet set up, and record the order of the model's latent sites."""
        for part in self.parts:
            if not getattr(part, "is_set_up", False):
                set_up(part, *args, **kwargs)
        self.order = list(latent_sites(self.model[0], *args, **kwargs))
        return self

    @property
    def sites(self) -> dict[str, torch.Size]:
        """Name and shape of every site the parts cover."""
        return {name: shape for part in self.parts for name, shape in (covered_sites(part) or {}).items()}

    def part_for(self, name: str) -> torch.nn.Module:
        """The part covering site ``name``."""
        for part in self.parts:
            if name in (covered_sites(part) or {}):
                return part
        raise KeyError(f"no part of this GuideList covers site {name!r}")

    def distributions(self) -> dict[str, TorchDistribution]:
        """q per site of every part, in the order the model samples the sites."""
        merged = {}
        for part in self.parts:
            merged.update(part.distributions())
        return {name: merged[name] for name in sorted(merged, key=self._position)}

    def forward(self, *args, **kwargs) -> dict[str, torch.Tensor]:
        if all(callable(getattr(part, "distributions", None)) for part in self.parts):
            return {name: pyro.sample(name, q) for name, q in self.distributions().items()}
        values = {}
        for part in self.parts:
            values.update(part(*args, **kwargs) or {})
        return values

    def _position(self, name: str) -> int:
        return self.order.index(name) if name in self.order else len(self.order)

    def _merged(self, method: str, *args, **kwargs) -> dict[str, torch.Tensor]:
        merged = {}
        with local_params():  # an autoguide's median runs the part, which must use its own parameters
            for part in self.parts:
                found = getattr(part, method, None) or part.median
                merged.update(found(*args, **kwargs))
        return merged

    def median(self, *args, **kwargs) -> dict[str, torch.Tensor]:
        """Each part's point value per site (the MAP weights for sign-Bernoulli parts)."""
        return self._merged("median", *args, **kwargs)

    def mean(self, *args, **kwargs) -> dict[str, torch.Tensor]:
        """Each part's mean per site (its median where it has no mean)."""
        return self._merged("mean", *args, **kwargs)

    def natural(self) -> dict[str, torch.Tensor]:
        """The natural parameters of the parts that have them."""
        return {name: lam for part in self.parts if hasattr(part, "natural") for name, lam in part.natural().items()}

    def posterior(self, name: str):
        """The posterior the part covering site ``name`` gives for it."""
        return self.part_for(name).posterior(name)
