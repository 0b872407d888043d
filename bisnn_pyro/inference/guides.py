"""Guides over the network's weight sites: mean-field sign-Bernoulli and straight-through.

Both discover their sites by tracing the model once in an explicit ``setup(*example_args)``, so
their parameters exist (and ``load_state_dict`` works) before any training step.  Parameters are
``PyroParam``s of the guide module: nothing lives in Pyro's global parameter store.
"""

from __future__ import annotations

import functools
from typing import Callable

import pyro
import torch
from pyro import poutine
from pyro.distributions import Delta, TorchDistribution
from pyro.poutine.util import site_is_subsample
from pyro.nn import PyroModule, PyroParam

from ..models.distributions import RelaxedSignBernoulli, SignBernoulli


def _latent_sites(model: Callable, *args, **kwargs) -> dict[str, torch.Size]:
    """Shapes of the unobserved sample sites of one run of ``model`` (no gradients, no params)."""
    with torch.no_grad(), poutine.block(hide_types=["param"]):
        trace = poutine.trace(model).get_trace(*args, **kwargs)
    return {
        name: site["value"].shape
        for name, site in trace.nodes.items()
        if site["type"] == "sample" and not site["is_observed"] and not site_is_subsample(site)
    }


def _set_nested(root: PyroModule, dotted: str, value: PyroParam) -> None:
    """Set ``root.a.b.c = value`` for ``dotted = 'a.b.c'``, creating PyroModules on the way."""
    *path, leaf = dotted.split(".")
    for part in path:
        if not hasattr(root, part):
            setattr(root, part, PyroModule())
        root = getattr(root, part)
    setattr(root, leaf, value)


DECIDED_NATURAL = 20.0  # P(w = sign) = 1 - 4e-18: a point mass with a finite KL


def sign(x: torch.Tensor) -> torch.Tensor:
    """sign with sign(0) = +1, so every weight is +-1."""
    return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)


class _WeightGuide(PyroModule):
    """Shared set-up: one real parameter tensor per latent site, initialised small and random."""

    def __init__(self, model: Callable, *, init_scale: float = 0.1, seed: int | None = None):
        super().__init__()
        self.model = (model,)  # a tuple, so the model is not registered as a submodule
        self.init_scale = init_scale
        self.seed = seed
        self.sites: dict[str, torch.Size] = {}
        self.params = PyroModule()

    def setup(self, *args, **kwargs) -> "_WeightGuide":
        """Create one parameter per latent site of ``model(*args, **kwargs)``."""
        generator = torch.Generator()
        if self.seed is not None:
            generator.manual_seed(self.seed)
        else:
            generator.seed()
        self.sites = dict(_latent_sites(self.model[0], *args, **kwargs))
        for name, shape in self.sites.items():
            init = self.init_scale * torch.randn(shape, generator=generator)
            _set_nested(self.params, name, PyroParam(init))
        return self

    def _check_setup(self) -> None:
        if not self.sites:
            raise RuntimeError(f"{type(self).__name__}.setup(example inputs) must be called before use")

    def param(self, name: str) -> torch.Tensor:
        return functools.reduce(getattr, name.split("."), self.params)

    def _per_site(self, make_distribution) -> dict[str, TorchDistribution]:
        self._check_setup()
        return {name: make_distribution(self.param(name)).to_event(len(shape)) for name, shape in self.sites.items()}

    def distributions(self) -> dict[str, TorchDistribution]:
        """q(w) per site, as :meth:`forward` samples it (so a loss can be evaluated without tracing)."""
        raise NotImplementedError

    def forward(self, *args, **kwargs) -> dict[str, torch.Tensor]:
        return {name: pyro.sample(name, distribution) for name, distribution in self.distributions().items()}


class SignBernoulliGuide(_WeightGuide):
    """Mean-field q(w) = prod SignBernoulli(w | lam): the Bayes-BiSNN posterior.

    In training mode it draws relaxed samples at ``temperature`` (reparameterised); in eval mode,
    or with ``temperature=None`` (score-function training), exact +-1 samples.
    """

    def __init__(
        self,
        model: Callable,
        *,
        temperature: float | None = 1.0,
        init_scale: float = 0.1,
        seed: int | None = None,
    ):
        super().__init__(model, init_scale=init_scale, seed=seed)
        if temperature is not None and not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature

    def distributions(self) -> dict[str, TorchDistribution]:
        if self.training and self.temperature is not None:
            return self._per_site(lambda lam: RelaxedSignBernoulli(lam, self.temperature))
        return self._per_site(SignBernoulli)

    def natural(self) -> dict[str, torch.Tensor]:
        """The natural parameters lam per site."""
        return {name: self.param(name) for name in self.sites}

    def posterior(self, name: str) -> SignBernoulli:
        return SignBernoulli(self.param(name).detach())

    @torch.no_grad()
    def median(self, *args, **kwargs) -> dict[str, torch.Tensor]:
        """The posterior mode sign(lam) (MAP weights)."""
        return {name: sign(lam) for name, lam in self.natural().items()}

    @torch.no_grad()
    def mean(self, *args, **kwargs) -> dict[str, torch.Tensor]:
        """The posterior mean tanh(lam) (real-valued; a diagnostic)."""
        return {name: torch.tanh(lam) for name, lam in self.natural().items()}


class _StraightThroughSign(torch.autograd.Function):
    @staticmethod
    def forward(ctx, theta: torch.Tensor) -> torch.Tensor:
        return sign(theta)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> torch.Tensor:
        return grad_output


class StraightThroughGuide(_WeightGuide):
    """ST-BiSNN: latent real theta, weight sign(theta) forward, identity backward (a point mass)."""

    def distributions(self) -> dict[str, TorchDistribution]:
        return self._per_site(lambda theta: Delta(_StraightThroughSign.apply(theta)))

    @torch.no_grad()
    def median(self, *args, **kwargs) -> dict[str, torch.Tensor]:
        return {name: sign(self.param(name)) for name in self.sites}

    mean = median

    def posterior(self, name: str) -> SignBernoulli:
        """The point mass at sign(theta), as a sign-Bernoulli that is (numerically) certain."""
        return SignBernoulli(DECIDED_NATURAL * sign(self.param(name).detach()))
