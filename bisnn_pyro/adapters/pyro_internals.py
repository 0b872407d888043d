"""Pyro internals (checked by tests/test_adapters.py with pyro-ppl 1.9.2): per-parameter
optimisers of a ``PyroOptim``, the sample and param attributes of a ``PyroModule``, the
module-local parameter state of its context, and the hooks ``TraceMeanField_ELBO`` is built from."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator

import pyro
import torch
from pyro.distributions.util import scale_and_mask  # noqa: F401  (the helpers Pyro's own ELBOs use,
from pyro.infer import TraceMeanField_ELBO
from pyro.infer.trace_mean_field_elbo import _check_mean_field_requirement
from pyro.infer.util import torch_item  # noqa: F401  undocumented: MeanFieldELBO uses them as Pyro does)
from pyro.nn import PyroModule
from pyro.optim import PyroOptim
from pyro.util import check_if_enumerated, check_model_guide_match, check_site_shape  # noqa: F401

# Pyro's SVI collects the parameters to step as ``site["value"].unconstrained()`` of every param
# site: a PyroParam's value carries that method; bisnn_pyro.inference.optim.NaturalParameter (a
# plain Parameter inside a PyroModule) defines it to return itself.


@contextmanager
def local_params() -> Iterator[None]:
    """Pyro's module-local parameters inside the block, its global setting as it was after."""
    with pyro.settings.context(module_local_params=True):
        yield


class LocalPyroModule(PyroModule):
    """A ``PyroModule`` that keeps its parameters in its own ``state_dict`` whatever Pyro's global
    ``module_local_params`` setting: it is made, and called, with the setting on."""

    def __init__(self, *args, **kwargs):
        with local_params():
            super().__init__(*args, **kwargs)

    def __call__(self, *args, **kwargs):
        with local_params():
            return super().__call__(*args, **kwargs)


def give_local_param_state(module: torch.nn.Module) -> None:
    """Let every ``PyroModule`` in ``module`` made while the setting was off (a user's network or
    a Pyro autoguide) run with module-local parameters: the state Pyro gives a module's context
    when it is made with the setting on."""
    for part in module.modules():
        context = getattr(part, "_pyro_context", None)
        if context is not None and not hasattr(context, "param_state"):
            context.param_state = {"params": {}, "constraints": {}}


def sample_attributes(module: torch.nn.Module) -> tuple[str, ...]:
    """The names of ``module``'s ``PyroSample`` attributes (its own, not its submodules')."""
    if not isinstance(module, PyroModule):
        return ()
    return tuple(module.__dict__.get("_pyro_samples", {}))


def param_attributes(module: torch.nn.Module) -> tuple[str, ...]:
    """The names of ``module``'s ``PyroParam`` attributes (stored as ``<name>_unconstrained``)."""
    if not isinstance(module, PyroModule):
        return ()
    return tuple(module.__dict__.get("_pyro_params", {}))


def optimizer_objects(optim: PyroOptim) -> dict[torch.Tensor, torch.optim.Optimizer]:
    """The PyTorch optimiser ``optim`` keeps for each parameter it has seen."""
    return optim.optim_objs


def optimizer_constructor(optim: PyroOptim) -> Callable:
    """The PyTorch optimiser class (or factory) ``optim`` wraps."""
    return optim.pt_optim_constructor


def clips_gradients(optim: PyroOptim) -> bool:
    """Whether ``optim`` was given gradient clipping arguments."""
    return bool(optim.pt_clip_args)


def add_parameter_optimizer(optim: PyroOptim, param: torch.Tensor, name: str | None) -> torch.optim.Optimizer:
    """Make the PyTorch optimiser ``optim`` keeps for ``param``, as ``PyroOptim`` makes it on the
    parameter's first step, but taking per-parameter options (a callable ``optim_args`` or
    ``clip_args``) for the parameter's ``name`` in its module: Pyro looks names up in its global
    parameter store, which module-local parameters are not in."""
    args, clip = optim.pt_optim_args, optim.pt_clip_args
    if callable(args) or callable(clip):
        if name is None:
            raise ValueError(
                "per-parameter optimiser options need the parameters' names: call "
                "bisnn_pyro.inference.bind_optimizer(optim, model) before stepping (Trainer does)"
            )
        module, _, leaf = name.rpartition(".")
    if callable(args):
        args = args(name) if optim.pt_optim_args_argc == 1 else args(module, leaf)
        if not isinstance(args, dict):
            raise TypeError(f"per-parameter optimiser options must be a dict, got {type(args).__name__} for {name}")
    if callable(clip):
        clip = clip(module, leaf)
    optimizer = optim.pt_optim_constructor([param], **args)
    optim.optim_objs[param] = optimizer
    optim.grad_clip[param] = (lambda p: PyroOptim._clip_grad(p, **clip)) if clip else None
    return optimizer


class MeanFieldTraceHooks(TraceMeanField_ELBO):
    """``TraceMeanField_ELBO`` with its internal steps exposed under names of their own:
    ``pyro_trace_pair`` (Pyro's own tracing of model and guide) and the overridable
    ``trace_pair``, ``particle_loss`` and ``plate_nesting`` (the guess of ``max_plate_nesting``
    when none is given; it sets ``self.max_plate_nesting``)."""

    def _guess_max_plate_nesting(self, model, guide, args, kwargs):
        self.plate_nesting(model, guide, args, kwargs)

    def plate_nesting(self, model, guide, args, kwargs) -> None:
        super()._guess_max_plate_nesting(model, guide, args, kwargs)

    def _get_trace(self, model, guide, args, kwargs):
        return self.trace_pair(model, guide, args, kwargs)

    def _differentiable_loss_particle(self, model_trace, guide_trace):
        return self.particle_loss(model_trace, guide_trace)

    def pyro_trace_pair(self, model, guide, args, kwargs) -> tuple[Any, Any]:
        return super()._get_trace(model, guide, args, kwargs)

    def trace_pair(self, model, guide, args, kwargs) -> tuple[Any, Any]:
        return self.pyro_trace_pair(model, guide, args, kwargs)

    def particle_loss(self, model_trace, guide_trace):
        return super()._differentiable_loss_particle(model_trace, guide_trace)


def check_mean_field_order(model_trace, guide_trace) -> None:
    """Pyro's check that model and guide sample their shared sites in the same order (a warning)."""
    _check_mean_field_requirement(model_trace, guide_trace)
