"""Diagnostics of a binary-weight posterior: per layer P(w = +1), entropy, decided weights, KL."""

from __future__ import annotations

import functools

import torch
from torch.distributions import kl_divergence

from ..models.distributions import SignBernoulli


def prior_natural(net: torch.nn.Module, site: str) -> torch.Tensor | None:
    """The sign prior's natural parameters for weight site ``site`` (None if it has none)."""
    module_name, _, param = site.rpartition(".")
    module = functools.reduce(getattr, module_name.split("."), net) if module_name else net
    return getattr(module, f"{param}_prior", None)


def sign_posteriors(bsnn) -> dict[str, SignBernoulli]:
    """q(w) per site for guides over signs (``posterior(name)``); empty for real-valued guides."""
    guide = bsnn.guide
    if not hasattr(guide, "posterior") or not hasattr(guide, "sites"):
        return {}
    return {name: guide.posterior(name) for name in guide.sites}


def layer_diagnostics(q: SignBernoulli, lam_prior: torch.Tensor | None, bins: int = 20) -> dict:
    """Mean P(w = +1), mean entropy (nats per weight), fraction decided (P > 0.99 or < 0.01),
    KL to the prior (nats, summed), and a histogram of P(w = +1) on [0, 1]."""
    p = q.probs.detach().double()
    stats = {
        "weights": p.numel(),
        "mean_p_plus": p.mean().item(),
        "mean_entropy": q.entropy().double().mean().item(),
        "decided": ((p > 0.99) | (p < 0.01)).double().mean().item(),
        "p_plus_hist": torch.histc(p, bins=bins, min=0.0, max=1.0).long().tolist(),
    }
    if lam_prior is not None:
        stats["kl_to_prior"] = kl_divergence(q, SignBernoulli(lam_prior.to(p.device))).sum().item()
    return stats


def posterior_diagnostics(bsnn, bins: int = 20) -> dict[str, dict]:
    """:func:`layer_diagnostics` for every sign-weight site of a :class:`BayesianSNN`."""
    return {
        name: layer_diagnostics(q, prior_natural(bsnn.net, name), bins) for name, q in sign_posteriors(bsnn).items()
    }
