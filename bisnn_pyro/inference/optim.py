"""The Bayesian learning rule as a PyTorch optimiser, wrapped for Pyro.

For a mean-field sign-Bernoulli with natural parameters lam, the Fisher information is
1 - tanh(lam)^2; dividing the Euclidean gradient of the ELBO loss by it gives the natural
gradient, and lam <- lam - lr * natural_gradient is the BayesBiNN / Bayes-BiSNN update (the KL
part becomes lam - lam_prior exactly).  The division is guarded by ``min_fisher`` and lam is kept
within +-``max_natural`` so no step overflows.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from pyro.optim import PyroOptim

from ..models.distributions import sign_fisher


class NaturalGradientSign(torch.optim.Optimizer):
    """lam <- clamp(lam - lr * m, +-max_natural), m = momentum * m + (1 - dampening) * g / F(lam).

    ``precondition=False`` in a parameter group turns it into plain SGD with the same momentum,
    for parameters that are not natural parameters (deterministic biases, say).
    """

    def __init__(
        self,
        params,
        lr: float = 5e-4,
        momentum: float = 0.0,
        dampening: float = 0.0,
        min_fisher: float = 1e-8,
        max_natural: float = 10.0,
        precondition: bool = True,
    ):
        if not lr > 0:
            raise ValueError(f"learning rate must be > 0, got {lr}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must lie in [0, 1), got {momentum}")
        defaults = dict(
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            min_fisher=min_fisher,
            max_natural=max_natural,
            precondition=precondition,
        )
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
                grad = torch.nan_to_num(lam.grad, nan=0.0, posinf=0.0, neginf=0.0)
                if group["precondition"]:  # in place on fresh tensors: this runs at every online step
                    grad.div_(sign_fisher(lam).clamp_min_(group["min_fisher"]))
                if group["momentum"] > 0:
                    state = self.state[lam]
                    if "momentum_buffer" not in state:
                        state["momentum_buffer"] = grad.clone()
                    else:
                        state["momentum_buffer"].mul_(group["momentum"]).add_(grad, alpha=1.0 - group["dampening"])
                    grad = state["momentum_buffer"]
                lam.add_(grad, alpha=-group["lr"])
                if group["precondition"]:
                    lam.clamp_(-group["max_natural"], group["max_natural"])
        return loss


def parameter_optimizer(optim: PyroOptim, param: torch.Tensor) -> torch.optim.Optimizer:
    """The PyTorch optimiser ``optim`` keeps for ``param``, made as ``PyroOptim`` makes it on the
    parameter's first step (for engines that step parameters without calling ``optim``)."""
    if param not in optim.optim_objs:
        optim.optim_objs[param] = optim._get_optim(param)
        optim.grad_clip[param] = optim._get_grad_clip(param)
    return optim.optim_objs[param]


def BayesianLearningRule(optim_args: dict[str, Any] | Callable[..., dict[str, Any]]) -> PyroOptim:
    """``pyro.optim`` wrapper of :class:`NaturalGradientSign` (use as ``SVI(..., optim=...)``).

    Every parameter it is handed gets the preconditioned step, deterministic biases included
    (their "Fisher" 1 - tanh(b)^2 has no meaning); train a biased network with ``bayes-adam``.
    """
    return PyroOptim(NaturalGradientSign, optim_args)
