"""Diagnostics of a binary-weight posterior: per layer P(w = +1), entropy, decided weights, KL."""

from __future__ import annotations

import torch
from torch.distributions import kl_divergence

from ..models.distributions import SignBernoulli


def sign_posteriors(bsnn) -> dict[str, SignBernoulli]:
    """q(w) per +-1 site whose guide gives it (``posterior(name)``); empty for real-valued guides."""
    posterior = getattr(bsnn.guide, "posterior", None)
    if posterior is None:
        return {}
    return {site.name: posterior(site.name) for site in bsnn.sites if site.binary}


def sign_priors(bsnn) -> dict[str, SignBernoulli]:
    """p(w) per +-1 site whose prior is a fixed sign-Bernoulli (none under hyper-latents)."""
    if bsnn.sites.hyper:
        return {}
    priors = {name: getattr(p, "base_dist", p) for name, p in bsnn.prior_distributions().items()}
    return {name: p for name, p in priors.items() if type(p) is SignBernoulli}


def layer_diagnostics(q: SignBernoulli, prior: SignBernoulli | None, bins: int = 20) -> dict:
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
    if prior is not None:
        stats["kl_to_prior"] = kl_divergence(q, SignBernoulli(prior.natural.detach().to(p.device))).sum().item()
    return stats


def posterior_diagnostics(bsnn, bins: int = 20) -> dict[str, dict]:
    """``layer_diagnostics`` for every sign-weight site of a ``BayesianSNN``."""
    priors = sign_priors(bsnn)
    return {name: layer_diagnostics(q, priors.get(name), bins) for name, q in sign_posteriors(bsnn).items()}
