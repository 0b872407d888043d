"""Pyro's mean-field ELBO, scoring only the sites its loss reads.

``TraceMeanField_ELBO`` computes the log-density of every site of both traces before the loss,
then uses the closed-form KL wherever ``kl_divergence(q, p)`` exists and drops them.  For a
binary network those unused densities are a dozen passes over every weight at every step (about
a tenth of an SVI step of the default two-moons run).  ``MeanFieldELBO`` scores observed
sites up front and a latent or auxiliary site only when its KL is missing: the same loss and
gradients, and the same validation checks.
"""

from __future__ import annotations

import torch
from pyro import poutine
from pyro.infer.util import is_validation_enabled
from pyro.poutine.util import prune_subsample_sites
from torch.distributions import kl_divergence

from ..adapters.pyro_internals import (
    MeanFieldTraceHooks,
    check_if_enumerated,
    check_mean_field_order,
    check_model_guide_match,
    check_site_shape,
    scale_and_mask,
    torch_item,
)
from ..adapters.torch_internals import is_tracing
from ..models.shapes import broadcast_shape


class MeanFieldELBO(MeanFieldTraceHooks):
    r"""Pyro's ``TraceMeanField_ELBO`` (same arguments, loss and gradients) that leaves unscored
    the log-densities an exact KL replaces, so a relaxed draw is never scored by the exact prior:

    $$-\mathcal{L} = -\mathbb{E}_{q}\big[\log p(y \mid x, \tilde w)\big]
    + \beta\,\mathrm{KL}\big(q(w)\,\|\,p(w)\big),$$

    with $\tilde w$ the guide's (relaxed) draw and the KL in closed form where one is registered
    ($\beta$, the KL weight, is applied by the guide's scale).
    """

    def trace_pair(self, model, guide, args, kwargs):
        """The guide's trace and the model's replayed on it (Pyro's own tracing for a guide that is a
        handler)."""
        if isinstance(poutine.unwrap(guide), poutine.messenger.Messenger):
            return self.pyro_trace_pair(model, guide, args, kwargs)
        guide_trace = poutine.trace(guide, graph_type="flat").get_trace(*args, **kwargs)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace), graph_type="flat").get_trace(
            *args, **kwargs
        )
        if is_validation_enabled():
            check_model_guide_match(model_trace, guide_trace, self.max_plate_nesting)
        guide_trace, model_trace = prune_subsample_sites(guide_trace), prune_subsample_sites(model_trace)
        model_trace.compute_log_prob(lambda name, site: site["is_observed"])
        if is_validation_enabled():
            for trace in (model_trace, guide_trace):
                for site in trace.nodes.values():
                    if site["type"] == "sample":
                        check_site_shape(_with_log_prob_shape(site), self.max_plate_nesting)
            check_if_enumerated(guide_trace)
            check_mean_field_order(model_trace, guide_trace)
        return model_trace, guide_trace

    def plate_nesting(self, model, guide, args, kwargs) -> None:
        """Pyro's guess of ``max_plate_nesting`` (the deepest plate of either trace), with its shape
        checks, without scoring the latent sites."""
        with poutine.block():
            guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
            model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args, **kwargs)
        guide_trace, model_trace = prune_subsample_sites(guide_trace), prune_subsample_sites(model_trace)
        sites = [
            site for trace in (model_trace, guide_trace) for site in trace.nodes.values() if site["type"] == "sample"
        ]
        if is_validation_enabled():
            model_trace.compute_log_prob(lambda name, site: site["is_observed"])
            for site in sites:
                check_site_shape(_with_log_prob_shape(site), max_plate_nesting=float("inf"))
        dims = [frame.dim for site in sites for frame in site["cond_indep_stack"] if frame.vectorized]
        self.max_plate_nesting = -min(dims) if dims else 0
        if self.vectorize_particles and self.num_particles > 1:
            self.max_plate_nesting += 1

    def particle_loss(self, model_trace, guide_trace):
        """(loss, surrogate loss) of one particle, as Pyro's ELBOs return them: the negative of the
        observed sites' log-likelihood minus the closed-form KL of every latent site that has one
        (log p - log q of the draw for the others)."""
        elbo_particle = 0.0
        for name, model_site in model_trace.nodes.items():
            if model_site["type"] != "sample":
                continue
            if model_site["is_observed"]:
                elbo_particle = elbo_particle + model_site["log_prob_sum"]
                continue
            guide_site = guide_trace.nodes[name]
            if is_validation_enabled():
                _check_reparameterised(guide_site)
            try:
                kl_qp = kl_divergence(guide_site["fn"], model_site["fn"])
            except NotImplementedError:  # score the draw, as TraceMeanField_ELBO does
                model_trace.compute_log_prob(lambda site_name, _, name=name: site_name == name)
                elbo_particle = elbo_particle + model_site["log_prob_sum"] - _entropy_term(guide_trace, name).sum()
                continue
            kl_qp = scale_and_mask(kl_qp, scale=guide_site["scale"], mask=guide_site["mask"])
            if torch.is_tensor(kl_qp):
                elbo_particle = elbo_particle - kl_qp.sum()
            else:
                elbo_particle = elbo_particle - kl_qp * guide_site["fn"].batch_shape.numel()
        for name, guide_site in guide_trace.nodes.items():
            if guide_site["type"] == "sample" and name not in model_trace.nodes:
                if not guide_site["infer"].get("is_auxiliary"):
                    raise ValueError(f"guide site {name!r} is not in the model and not marked is_auxiliary")
                if is_validation_enabled():
                    _check_reparameterised(guide_site)
                elbo_particle = elbo_particle - _entropy_term(guide_trace, name).sum()
        loss = -(elbo_particle.detach() if is_tracing() else torch_item(elbo_particle))
        return loss, -elbo_particle


def _with_log_prob_shape(site: dict) -> dict:
    """``site`` with a stand-in ``log_prob`` of the shape its log-density would have (the only
    thing Pyro's site-shape check reads), where the site is not scored."""
    if "log_prob" in site:
        return site
    fn, value = site["fn"], site["value"]
    shape = broadcast_shape(fn.batch_shape, value.shape[: value.dim() - len(fn.event_shape)])
    if torch.is_tensor(site["mask"]):
        shape = broadcast_shape(shape, site["mask"].shape)
    return {**site, "log_prob": torch.empty(shape, device="meta")}


def _check_reparameterised(guide_site: dict) -> None:
    """Pyro's check that a guide site is reparameterised, from the distribution rather than from
    its score parts (which are only computed where they are used)."""
    if not guide_site["fn"].has_rsample:
        raise NotImplementedError("All distributions in the guide must be fully reparameterized.")


def _entropy_term(guide_trace, name: str) -> torch.Tensor:
    guide_trace.compute_score_parts()
    return guide_trace.nodes[name]["score_parts"].entropy_term
