"""MeanFieldELBO against Pyro's TraceMeanField_ELBO: the same loss, gradients and validation, without
scoring what an exact KL replaces."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import TraceMeanField_ELBO

from bisnn_pyro.experiment import ExperimentConfig, build, load_data
from bisnn_pyro.inference.elbo import MeanFieldELBO

SMALL = {"hidden": [12, 10], "steps": 12, "burn_in": 3, "train_size": 16, "test_size": 4, "kl_weight": 0.3}


def _loss_and_grads(elbo, model, guide, params, *args):
    for p in params:
        p.grad = None
    pyro.set_rng_seed(3)
    loss = elbo.differentiable_loss(model, guide, *args)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in params]


def _assert_same(elbo_args, model, guide, params, *args, validate=True):
    with pyro.validation_enabled(validate):
        expected = _loss_and_grads(TraceMeanField_ELBO(**elbo_args), model, guide, params, *args)
    got = _loss_and_grads(MeanFieldELBO(**elbo_args), model, guide, params, *args)
    torch.testing.assert_close(got[0], expected[0])
    for grad, reference in zip(got[1], expected[1]):
        assert reference.abs().sum() > 0
        torch.testing.assert_close(grad, reference)


@pytest.mark.parametrize("rule", ["bayes", "fp-bayes"])
@pytest.mark.parametrize("particles", [1, 3])
def test_same_loss_and_gradients_as_pyro_on_the_network(rule, particles):
    config = ExperimentConfig(rule=rule, **SMALL)
    train, _ = load_data(config)
    bsnn, _ = build(config, train)
    bsnn.train()
    elbo_args = dict(num_particles=particles, vectorize_particles=particles > 1, max_plate_nesting=1)
    params = list(bsnn.parameters())
    # Pyro's ELBO scores the exact prior at the relaxed draws before it replaces that by the KL: a
    # meaningless density that validation rightly refuses, so the reference runs without it
    validate = rule != "bayes"
    _assert_same(elbo_args, bsnn.model, bsnn.guide, params, train.x[:5], train.y[:5], validate=validate)


def test_latent_sites_with_a_kl_are_left_unscored():
    config = ExperimentConfig(**SMALL)
    train, _ = load_data(config)
    bsnn, _ = build(config, train)
    model_trace, guide_trace = MeanFieldELBO(max_plate_nesting=1)._get_trace(
        bsnn.model, bsnn.guide, (train.x[:5], train.y[:5]), {}
    )
    latent = [name for name, site in guide_trace.nodes.items() if site["type"] == "sample"]
    assert latent and all("score_parts" not in guide_trace.nodes[name] for name in latent)
    assert all("log_prob" not in model_trace.nodes[name] for name in latent)
    assert "log_prob_sum" in model_trace.nodes["obs"]


def _gamma_model(data):
    rate = pyro.sample("rate", dist.Gamma(2.0, 1.0))
    with pyro.plate("data", len(data)):
        pyro.sample("obs", dist.Exponential(rate), obs=data)


def test_a_site_without_a_kl_is_scored_as_pyro_scores_it():
    """LogNormal against Gamma has no closed-form KL: the loss falls back on the draw's log-densities."""
    loc = torch.tensor(0.2, requires_grad=True)
    scale = torch.tensor(0.5, requires_grad=True)

    def guide(data):
        pyro.sample("rate", dist.LogNormal(loc, scale))

    _assert_same({}, _gamma_model, guide, [loc, scale], torch.tensor([0.5, 1.5, 0.7]))


def test_auxiliary_guide_sites_enter_through_their_entropy():
    loc = torch.tensor(0.2, requires_grad=True)

    def guide(data):
        pyro.sample("rate", dist.LogNormal(loc, 0.5))
        pyro.sample("aux", dist.Normal(loc, 1.0), infer={"is_auxiliary": True})

    _assert_same({}, _gamma_model, guide, [loc], torch.tensor([0.5, 1.5]))


def test_validation_rejects_what_pyro_rejects():
    data = torch.tensor([0.5, 1.5, 0.7])

    def unreparameterised_guide(data):
        pyro.sample("rate", dist.Poisson(2.0))

    def misshapen_model(data):
        rate = pyro.sample("rate", dist.Gamma(2.0, 1.0).expand([2]))  # batch shape 2 outside any plate
        pyro.sample("obs", dist.Exponential(rate[0]).expand([3]).to_event(1), obs=data)

    def misshapen_guide(data):
        pyro.sample("rate", dist.LogNormal(torch.zeros(2), 1.0))

    for elbo in (TraceMeanField_ELBO(), MeanFieldELBO()):
        with pyro.validation_enabled(True):
            with pytest.raises(NotImplementedError, match="reparameterized"):
                elbo.differentiable_loss(_gamma_model, unreparameterised_guide, data)
            with pytest.raises(ValueError, match="invalid log_prob shape"):
                elbo.differentiable_loss(misshapen_model, misshapen_guide, data)


@pytest.mark.parametrize("rule", ["bayes", "fp-bayes"])
def test_plate_nesting_is_guessed_without_scoring_latent_sites(rule):
    """Without max_plate_nesting, vectorised particles make MeanFieldELBO guess it as Pyro does, but
    it never scores the exact prior at a relaxed draw while guessing."""
    config = ExperimentConfig(rule=rule, **SMALL)
    train, _ = load_data(config)
    bsnn, _ = build(config, train)
    args = (train.x[:5], train.y[:5])
    particles = dict(num_particles=3, vectorize_particles=True)
    guessed, given = MeanFieldELBO(**particles), MeanFieldELBO(max_plate_nesting=1, **particles)
    guessed.differentiable_loss(bsnn.model, bsnn.guide, *args)  # the guess draws random numbers of its own
    losses = []
    for elbo in (guessed, given):
        pyro.set_rng_seed(4)
        losses.append(elbo.differentiable_loss(bsnn.model, bsnn.guide, *args))
    assert guessed.max_plate_nesting == given.max_plate_nesting == 2  # the data plate and the particles'
    torch.testing.assert_close(losses[0], losses[1])
    if rule == "fp-bayes":  # where Pyro's own guess can run, it agrees
        pyro_elbo = TraceMeanField_ELBO(**particles)
        pyro_elbo.differentiable_loss(bsnn.model, bsnn.guide, *args)
        assert pyro_elbo.max_plate_nesting == guessed.max_plate_nesting
