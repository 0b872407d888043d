"""The Bayesian learning rule as a Pyro optimiser, for the parameters it is for.

For a mean-field sign-Bernoulli with natural parameters lam, the Fisher information is
1 - tanh(lam)^2; dividing the Euclidean gradient of the ELBO loss by it gives the natural
gradient, and lam <- lam - lr * natural_gradient is the BayesBiNN / Bayes-BiSNN update (the KL
part becomes lam - lam_prior exactly).  That preconditioning means something only for natural
parameters, so a parameter's role comes from where it was made: a guide that owns natural
parameters of sign-Bernoulli sites makes them ``NaturalParameter``s, and
``BayesianLearningRule`` steps those by the rule and hands every other parameter (a learned
temperature, hyper-posterior parameters, biases, your own) to a companion optimiser, Adam unless
you pass another.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Iterable

import pyro.optim
import torch
from pyro.optim import PyroOptim

from ..adapters.pyro_internals import add_parameter_optimizer, optimizer_objects
from ..errors import TrainingDiverged
from ..models.distributions import sign_fisher

DEFAULT_COMPANION_LR = 1e-2


class NaturalParameter(torch.nn.Parameter):
    """A parameter holding natural parameters lam of sign-Bernoulli guide sites: the learning rule
    preconditions its gradient by 1 / (1 - tanh^2 lam).  Make a guide's natural parameters this
    type (as ``SignBernoulliGuide`` does) to have them stepped by
    the rule; any other parameter goes to the rule's companion optimiser."""

    def unconstrained(self) -> "NaturalParameter":
        """Itself: its values are unconstrained (what Pyro's ``SVI`` asks of a parameter's value)."""
        return self


class NaturalGradientSign(torch.optim.Optimizer):
    r"""The natural-gradient step on the natural parameters $\lambda$ of sign-Bernoulli sites:

    $$m \leftarrow \mu\, m + (1 - d)\,\frac{g}{F(\lambda)}, \qquad
    \lambda \leftarrow \mathrm{clamp}(\lambda - \eta\, m, \pm\lambda_{\max}), \qquad
    F(\lambda) = \max(1 - \tanh^2\lambda,\ F_{\min}),$$

    with $g$ the gradient of the loss (the negative ELBO) in $\lambda$, $\eta$ ``lr``, $\mu$
    ``momentum``, $d$ ``dampening``; the first step starts the buffer at $m = g/F(\lambda)$, as
    ``torch.optim.SGD`` does.  $F$ is the Fisher information of
    $\mathrm{SignBernoulli}(\lambda)$, so $g / F$ is the natural gradient: for the KL term it is
    $\lambda - \lambda_p$, and with $\mu = 0$ (where neither guard below acts) the step is the
    BiSNN paper's (and BayesBiNN's)
    update $\lambda \leftarrow (1 - \eta\beta)\lambda - \eta\,(g_{\text{data}}/F - \beta\lambda_p)$.
    The division is guarded ($F_{\min}$, ``min_fisher``) and $\lambda$ bounded (``max_natural``;
    ``float("inf")`` lifts the bound) so no step overflows.  A gradient that is not finite stops
    training (``TrainingDiverged``) rather than being stepped on.
    """

    def __init__(
        self,
        params,
        lr: float = 5e-4,
        momentum: float = 0.0,
        dampening: float = 0.0,
        min_fisher: float = 1e-8,
        max_natural: float = 10.0,
    ):
        if not lr > 0:
            raise ValueError(f"learning rate must be > 0, got {lr}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must lie in [0, 1), got {momentum}")
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, min_fisher=min_fisher, max_natural=max_natural)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for lam in group["params"]:
                if lam.grad is None:
                    continue
                if not torch.isfinite(lam.grad).all():
                    name = getattr(self, "parameter_name", "a natural parameter")
                    raise TrainingDiverged(f"the gradient of {name} is not finite (the loss overflowed)")
                # in place on fresh tensors: this runs at every online step
                grad = lam.grad.div(sign_fisher(lam).clamp_min_(group["min_fisher"]))
                if group["momentum"] > 0:
                    state = self.state[lam]
                    if "momentum_buffer" not in state:
                        state["momentum_buffer"] = grad.clone()
                    else:
                        state["momentum_buffer"].mul_(group["momentum"]).add_(grad, alpha=1.0 - group["dampening"])
                    grad = state["momentum_buffer"]
                lam.add_(grad, alpha=-group["lr"])
                lam.clamp_(-group["max_natural"], group["max_natural"])
        return loss


class LearningRule(PyroOptim):
    """The Bayesian learning rule (``NaturalGradientSign``) for ``NaturalParameter``s and
    ``companion`` for every other parameter, as one ``pyro.optim`` optimiser for ``SVI``."""

    def __init__(
        self,
        optim_args: dict[str, Any] | Callable[[str], dict[str, Any]],
        companion: PyroOptim | None = None,
        clip_args: dict[str, Any] | Callable | None = None,
    ):
        super().__init__(NaturalGradientSign, optim_args, clip_args)
        self.companion = companion if companion is not None else pyro.optim.Adam({"lr": DEFAULT_COMPANION_LR})
        if not isinstance(self.companion, PyroOptim):
            raise TypeError(f"the companion optimiser must be a pyro.optim optimiser, got {type(companion).__name__}")
        self.natural_parameters: set[torch.Tensor] = set()  # named by a guide's natural(), in bind_optimizer

    def is_natural(self, param: torch.Tensor) -> bool:
        """Whether ``param`` holds natural parameters: made a ``NaturalParameter``, or given by
        the guide's ``natural()`` when the optimiser was bound to the model."""
        return isinstance(param, NaturalParameter) or param in self.natural_parameters

    def route(self, param: torch.Tensor) -> PyroOptim:
        """The optimiser that steps ``param``: this rule for natural parameters, else the companion."""
        return self if self.is_natural(param) else self.companion

    def __call__(self, params: Iterable[torch.Tensor], *args, **kwargs) -> None:
        params = list(params)
        natural = [p for p in params if self.is_natural(p)]
        other = [p for p in params if not self.is_natural(p)]
        for p in natural:
            parameter_optimizer(self, p)  # refuses per-parameter options for an unnamed parameter
        super().__call__(natural, *args, **kwargs)
        if other:
            self.companion(other, *args, **kwargs)

    def get_state(self) -> dict:
        raise NotImplementedError(
            "LearningRule keeps module-local parameters, which Pyro's get_state cannot name: save "
            "Trainer.state_dict(), or bisnn_pyro.inference.training.optimizer_state(optim, model)"
        )

    def set_state(self, state_dict: dict) -> None:
        raise NotImplementedError(
            "LearningRule keeps module-local parameters, which Pyro's set_state cannot name: load "
            "Trainer.load_state_dict(), or bisnn_pyro.inference.training.load_optimizer_state(optim, model, state)"
        )


def BayesianLearningRule(
    optim_args: dict[str, Any] | Callable[[str], dict[str, Any]], companion: PyroOptim | None = None
) -> LearningRule:
    """The Bayesian learning rule as a ``pyro.optim`` optimiser (use as ``SVI(..., optim=...)``):
    ``NaturalGradientSign`` for every ``NaturalParameter``, ``companion`` for the rest.

    ``optim_args``: ``NaturalGradientSign``'s options (``lr``, ``momentum``, ...), or a callable
    from a parameter's name in the model (``"guide.params.layers.0.weight.natural"``) to them;
    ``companion``: the optimiser of every parameter that is not a natural parameter (default
    ``pyro.optim.Adam({"lr": 1e-2})``).
    """
    return LearningRule(optim_args, companion)


def parameter_optimizer(optim: PyroOptim, param: torch.Tensor, name: str | None = None) -> torch.optim.Optimizer:
    """The PyTorch optimiser that ``optim`` keeps for ``param`` (made as ``PyroOptim`` makes it on
    the parameter's first step, with per-parameter options taken for ``name``)."""
    owner = optim.route(param) if isinstance(optim, LearningRule) else optim
    objects = optimizer_objects(owner)
    if param not in objects:
        add_parameter_optimizer(owner, param, name)
        if name is not None:
            objects[param].parameter_name = name  # for messages about it
    return objects[param]


def all_parameter_optimizers(optim: PyroOptim) -> dict[torch.Tensor, torch.optim.Optimizer]:
    """Every per-parameter optimiser of ``optim`` (a learning rule's and its companion's)."""
    objects = dict(optimizer_objects(optim))
    if isinstance(optim, LearningRule):
        objects.update(all_parameter_optimizers(optim.companion))
    return objects


def bind_optimizer(optim: PyroOptim, module: torch.nn.Module) -> None:
    """Make ``optim``'s optimiser for every trainable parameter of ``module`` now, so per-parameter
    options (a callable ``optim_args``) receive each parameter's name in ``module``: Pyro looks
    names up in its global parameter store, which module-local parameters are not in.  A learning
    rule also learns which parameters the model's guide names in ``natural()``, and warns when it
    finds no natural parameter at all (then the companion steps everything)."""
    params = dict(module.named_parameters())
    if isinstance(optim, LearningRule):
        natural = getattr(getattr(module, "guide", None), "natural", None)
        held = {id(p) for p in params.values()}
        if callable(natural):
            optim.natural_parameters.update(lam for lam in natural().values() if id(lam) in held)
        if not any(optim.is_natural(p) for p in params.values()):
            warnings.warn(
                "BayesianLearningRule finds no natural parameters of sign-Bernoulli sites in this model: its "
                "companion optimiser steps every parameter",
                stacklevel=3,
            )
    for name, param in params.items():
        if param.requires_grad:
            parameter_optimizer(optim, param, name.removesuffix("_unconstrained"))
