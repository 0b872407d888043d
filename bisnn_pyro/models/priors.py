"""Priors: objects that turn chosen parameters of a network into Pyro sample sites.

A prior rewrites a plain network in place (as in TyXe): each parameter for which
``select(name, module)`` is true becomes a ``PyroSample`` site named after the parameter
(``layers.0.weight``); the others stay learned parameters.  Writing a prior of your own takes two
methods, both given the site's name:

* ``buffer(name, weight)``: the tensor the site's prior reads (or None), registered beside the
  parameter as ``<param>_prior``, so it moves with the module, is saved in its state dict, and
  can be replaced by a learned posterior for continual learning;
* ``distribution(name, buffer, shape)``: p(w) with batch shape ``shape`` (the weight's shape).  It
  may draw hyper-latents first, with ``pyro.sample(f"{name}_<hyper>", ...)``, as
  ``BetaBinaryPrior`` does; the model then has those sites too, and guides are composed for
  them (``GuideList``).
"""

from __future__ import annotations

from typing import Callable, Mapping

import pyro
import torch
from pyro.distributions import Beta, Distribution, Normal
from pyro.nn import PyroModule, PyroParam, PyroSample

from ..adapters.pyro_internals import param_attributes
from .distributions import RelaxedSignBernoulli, SignBernoulli, natural_from_probs

Selector = Callable[[str, torch.nn.Module], bool]
PriorValue = float | torch.Tensor | Mapping[str, float | torch.Tensor]


def synapse_weights(name: str, module: torch.nn.Module) -> bool:
    """Default selector: every synaptic weight; biases and thresholds stay deterministic."""
    return name.rsplit(".", 1)[-1] == "weight"


def value_for(value: PriorValue, name: str, param: torch.Tensor) -> torch.Tensor:
    """A scalar, a tensor or a ``{layer or parameter name: value}`` mapping, broadcast to the shape,
    dtype and device of parameter ``name``."""
    if isinstance(value, Mapping):
        module_name = name.rsplit(".", 1)[0]
        matches = [v for k, v in value.items() if k in (name, module_name)]
        if not matches:
            raise KeyError(f"prior has no value for parameter {name!r} (keys: {sorted(value)})")
        value = matches[0]
    tensor = torch.as_tensor(value, dtype=param.dtype, device=param.device)
    try:
        return tensor.expand_as(param).clone()
    except RuntimeError:
        raise ValueError(
            f"prior value of shape {tuple(tensor.shape)} does not broadcast to {name} {tuple(param.shape)}"
        ) from None


class Prior:
    r"""Base class of priors $p(w)$ over a network's weights: the protocol a prior of one's own
    implements.

    ``apply_(net)`` turns every parameter that ``select(name, module)`` chooses (default: every
    synaptic weight) into a ``PyroSample`` site whose prior is ``distribution(name, buffer,
    shape)``.  A subclass implements ``distribution`` and, when the distribution reads a tensor
    (hyper-parameters per site, per neuron...), ``buffer``: that tensor is registered as a buffer
    of the layer, so it is saved in the state dict and moves with the network between devices.

    ``distribution`` may itself call ``pyro.sample`` for hyper-latents (a hierarchical prior such
    as ``BetaBinaryPrior``: $p_\ell \sim \mathrm{Beta}(a, b)$, $w \mid p_\ell \sim
    \mathrm{SignBernoulli}(\tfrac12\mathrm{logit}\,p_\ell)$); the model then describes them in
    ``BayesianSNN.sites.hyper`` and a guide is composed for them.  Which guide, loss and engine go
    with which prior is in the guide to swapping parts.
    """

    def __init__(self, select: Selector = synapse_weights):
        self.select = select

    def buffer(self, name: str, weight: torch.Tensor) -> torch.Tensor | None:
        """The tensor the prior of site ``name`` reads, made from the parameter it replaces (which
        gives the shape, dtype and device); None when it reads none."""
        return None

    def distribution(self, name: str, buffer: torch.Tensor | None, shape: torch.Size) -> Distribution:
        """p(w) of site ``name``, with batch shape ``shape`` (the weight's), from its ``buffer``
        (None when ``buffer`` returned None); called inside the model, once per forward pass."""
        raise NotImplementedError(f"{type(self).__name__} must implement distribution(name, buffer, shape)")

    def apply_(self, net: torch.nn.Module) -> torch.nn.Module:
        """Replace every selected parameter of ``net`` by a sample site, and make every other
        parameter of its PyroModules a ``PyroParam`` (a learned point value, as Pyro's ``SVI``
        expects of module-local parameters); returns ``net``."""
        for module_name, module in list(net.named_modules()):
            for param_name, param, is_pyro_param in list(_parameters(module)):
                name = f"{module_name}.{param_name}" if module_name else param_name
                selected = self.select(name, module)
                if not isinstance(module, PyroModule):
                    if selected:
                        raise TypeError(f"{name}: a prior can only be placed on a PyroModule's parameter")
                    continue
                if not selected:
                    if not is_pyro_param:
                        delattr(module, param_name)
                        setattr(module, param_name, PyroParam(param.detach()))
                    continue
                delattr(module, param_name)
                buffer = self.buffer(name, param.detach())
                key = f"{param_name}_prior"
                if buffer is not None:
                    module.register_buffer(key, buffer)
                site = PyroSample(
                    lambda m, name=name, key=key, shape=param.shape: self.distribution(
                        name, getattr(m, key, None), shape
                    ).to_event(len(shape))
                )
                setattr(module, param_name, site)
        return net


class BinaryPrior(Prior):
    """Sign-Bernoulli prior with P(w = +1) = p (a scalar, a tensor, or {layer name: value}); its
    buffer holds the natural parameters lam_p = logit(p) / 2, one per weight."""

    def __init__(self, p: PriorValue = 0.5, select: Selector = synapse_weights):
        super().__init__(select)
        _check_probabilities(p)
        self.p = p

    def buffer(self, name: str, weight: torch.Tensor) -> torch.Tensor:
        return natural_from_probs(value_for(self.p, name, weight))

    def distribution(self, name: str, buffer: torch.Tensor, shape: torch.Size) -> Distribution:
        return SignBernoulli(buffer)


class RelaxedBinaryPrior(BinaryPrior):
    """The binary prior's concrete relaxation at ``temperature`` (continuous on [-1, 1]): the KL
    is then estimated by Monte Carlo from the relaxed log-densities instead of the exact formula."""

    def __init__(self, p: PriorValue = 0.5, temperature: float = 1.0, select: Selector = synapse_weights):
        super().__init__(p, select)
        if not temperature > 0:
            raise ValueError(f"prior temperature must be > 0, got {temperature}")
        self.temperature = temperature

    def distribution(self, name: str, buffer: torch.Tensor, shape: torch.Size) -> Distribution:
        return RelaxedSignBernoulli(buffer, self.temperature)


class BetaBinaryPrior(Prior):
    """Hierarchical binary prior: p ~ Beta(a, b) per layer (``per="layer"``: one site
    ``<weight>_p``, a scalar) or per output neuron (``per="neuron"``: shape (out, 1, ...)), and
    w | p ~ SignBernoulli with P(w = +1) = p.  Its buffer holds (a, b), stacked.

    With mean-field q(w) (mean m) and q(p) = Beta(alpha, beta), the expected log prior of the
    weights is sum ((1 + m)/2 (psi(alpha) - psi(alpha + beta)) + (1 - m)/2 (psi(beta) - psi(alpha + beta))),
    so for fixed q(w) the optimal q(p) is Beta(a + sum (1 + m)/2, b + sum (1 - m)/2).
    """

    PER = ("layer", "neuron")

    def __init__(self, a: float = 1.0, b: float = 1.0, per: str = "layer", select: Selector = synapse_weights):
        super().__init__(select)
        if not (a > 0 and b > 0):
            raise ValueError(f"Beta concentrations a and b must be > 0, got a={a}, b={b}")
        if per not in self.PER:
            raise ValueError(f"per must be one of {self.PER}, got {per!r}")
        self.a, self.b, self.per = a, b, per

    def buffer(self, name: str, weight: torch.Tensor) -> torch.Tensor:
        shape = () if self.per == "layer" else (weight.shape[0],) + (1,) * (weight.dim() - 1)
        return torch.stack(
            [torch.full(shape, float(v), dtype=weight.dtype, device=weight.device) for v in (self.a, self.b)]
        )

    def distribution(self, name: str, buffer: torch.Tensor, shape: torch.Size) -> Distribution:
        a, b = buffer.unbind(0)
        p = pyro.sample(f"{name}_p", Beta(a, b).to_event(a.dim()))
        if self.per == "layer":  # a scalar per draw, broadcast over the weights
            p = p.reshape(p.shape + (1,) * len(shape))
        natural = natural_from_probs(p)
        return SignBernoulli(natural).expand(natural.shape[: natural.dim() - len(shape)] + shape)


class GaussianPrior(Prior):
    """Zero-mean Gaussian prior for full-precision weights; its buffer holds the scales."""

    def __init__(self, scale: PriorValue = 1.0, select: Selector = synapse_weights):
        super().__init__(select)
        self.scale = scale

    def buffer(self, name: str, weight: torch.Tensor) -> torch.Tensor:
        scale = value_for(self.scale, name, weight)
        if not bool((scale > 0).all()):
            raise ValueError(f"Gaussian prior scale must be > 0 for {name}")
        return scale

    def distribution(self, name: str, buffer: torch.Tensor, shape: torch.Size) -> Distribution:
        return Normal(torch.zeros_like(buffer), buffer)


def _parameters(module: torch.nn.Module):
    """(name, value, is a PyroParam) for each parameter of ``module`` itself, a ``PyroParam`` under
    its own name and value rather than its unconstrained storage."""
    pyro_params = param_attributes(module)
    for name, param in module.named_parameters(recurse=False):
        base = name.removesuffix("_unconstrained")
        if base != name and base in pyro_params:
            yield base, getattr(module, base).detach(), True
        else:
            yield name, param, False


def _check_probabilities(p: PriorValue) -> None:
    values = p.values() if isinstance(p, Mapping) else [p]
    for value in values:
        tensor = torch.as_tensor(value, dtype=torch.float64)
        if not bool(((tensor > 0) & (tensor < 1)).all()):
            raise ValueError(f"prior probability p must lie in (0, 1), got {value}")
