"""Priors: objects that turn chosen parameters of a network into Pyro sample sites.

A prior rewrites a plain network in place (as in TyXe): each parameter for which
``select(name, module)`` is true becomes a ``PyroSample`` whose distribution is built from a buffer
registered beside it (``<param>_prior``), so the prior moves with the module, is saved in its
state dict, and can be replaced by a learned posterior for continual learning.
"""

from __future__ import annotations

from typing import Callable, Mapping

import torch
from pyro.distributions import Distribution, Normal
from pyro.nn import PyroModule, PyroSample

from .distributions import RelaxedSignBernoulli, SignBernoulli, natural_from_probs

Selector = Callable[[str, torch.nn.Module], bool]
PriorValue = float | torch.Tensor | Mapping[str, float | torch.Tensor]


def synapse_weights(name: str, module: torch.nn.Module) -> bool:
    """Default selector: every synaptic weight; biases and thresholds stay deterministic."""
    return name.rsplit(".", 1)[-1] == "weight"


def _value_for(value: PriorValue, name: str, param: torch.Tensor) -> torch.Tensor:
    """Broadcast a scalar, tensor or per-layer mapping to the parameter's shape."""
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
    """Base class: subclasses say which buffer a parameter needs and which distribution it defines."""

    def __init__(self, select: Selector = synapse_weights):
        self.select = select

    def buffer_for(self, name: str, param: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def distribution(self, buffer: torch.Tensor) -> Distribution:
        """The per-element distribution (batch shape = the parameter's shape)."""
        raise NotImplementedError

    def apply_(self, net: torch.nn.Module) -> torch.nn.Module:
        """Replace every selected parameter of ``net`` by a sample site; returns ``net``."""
        for module_name, module in list(net.named_modules()):
            for param_name, param in list(module.named_parameters(recurse=False)):
                name = f"{module_name}.{param_name}" if module_name else param_name
                if not self.select(name, module):
                    continue
                if not isinstance(module, PyroModule):
                    raise TypeError(f"{name}: a prior can only be placed on a PyroModule's parameter")
                key = f"{param_name}_prior"
                buffer = self.buffer_for(name, param.detach())
                delattr(module, param_name)
                module.register_buffer(key, buffer)
                event_dim = buffer.dim()
                site = PyroSample(
                    lambda m, key=key, event_dim=event_dim: self.distribution(getattr(m, key)).to_event(event_dim)
                )
                setattr(module, param_name, site)
        return net


class BinaryPrior(Prior):
    """Sign-Bernoulli prior with P(w = +1) = p (a scalar, a tensor, or {layer name: value})."""

    def __init__(self, p: PriorValue = 0.5, select: Selector = synapse_weights):
        super().__init__(select)
        _check_probabilities(p)
        self.p = p

    def buffer_for(self, name: str, param: torch.Tensor) -> torch.Tensor:
        return natural_from_probs(_value_for(self.p, name, param))

    def distribution(self, buffer: torch.Tensor) -> Distribution:
        return SignBernoulli(buffer)


class RelaxedBinaryPrior(BinaryPrior):
    """The binary prior's concrete relaxation at ``temperature``: the KL is then estimated by Monte
    Carlo from the relaxed log-densities instead of the exact discrete formula."""

    def __init__(self, p: PriorValue = 0.5, temperature: float = 1.0, select: Selector = synapse_weights):
        super().__init__(p, select)
        if not temperature > 0:
            raise ValueError(f"prior temperature must be > 0, got {temperature}")
        self.temperature = temperature

    def distribution(self, buffer: torch.Tensor) -> Distribution:
        return RelaxedSignBernoulli(buffer, self.temperature)


class GaussianPrior(Prior):
    """Zero-mean Gaussian prior for full-precision weights."""

    def __init__(self, scale: PriorValue = 1.0, select: Selector = synapse_weights):
        super().__init__(select)
        self.scale = scale

    def buffer_for(self, name: str, param: torch.Tensor) -> torch.Tensor:
        scale = _value_for(self.scale, name, param)
        if not bool((scale > 0).all()):
            raise ValueError(f"Gaussian prior scale must be > 0 for {name}")
        return scale

    def distribution(self, buffer: torch.Tensor) -> Distribution:
        return Normal(torch.zeros_like(buffer), buffer)


def _check_probabilities(p: PriorValue) -> None:
    values = p.values() if isinstance(p, Mapping) else [p]
    for value in values:
        tensor = torch.as_tensor(value, dtype=torch.float64)
        if not bool(((tensor > 0) & (tensor < 1)).all()):
            raise ValueError(f"prior probability p must lie in (0, 1), got {value}")
