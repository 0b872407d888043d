"""The direct ELBO (no tracing) against Pyro's own: same draws, same loss, same gradients."""

import copy
from functools import partial

import pyro
import pytest
import torch
from pyro.infer import TraceMeanField_ELBO

from bisnn_pyro.experiment import ExperimentConfig, build, load_data
from bisnn_pyro.inference import make_rule
from bisnn_pyro.inference.direct import DirectELBO
from bisnn_pyro.inference.training import Trainer
from bisnn_pyro.models import BinaryPrior, RelaxedBinaryPrior, RelaxedSignBernoulli

SMALL = {"hidden": [12, 10], "steps": 12, "burn_in": 3, "train_size": 16, "test_size": 4, "kl_weight": 0.3}


def _model(rule, learning="local", kl_weight=SMALL["kl_weight"], particles=1):
    config = ExperimentConfig(rule=rule, learning=learning, **{**SMALL, "kl_weight": kl_weight})
    train, _ = load_data(config)
    bsnn, _ = build(config, train)
    return bsnn, make_rule(rule, num_particles=particles), train


def _loss_and_grads(bsnn, compute):
    bsnn.zero_grad()
    pyro.set_rng_seed(7)
    loss = compute()
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in bsnn.named_parameters()}


@pytest.mark.parametrize(
    "rule, learning, kl_weight, particles",
    [
        ("bayes", "local", 0.3, 1),
        ("bayes-adam", "local", 0.3, 1),
        ("ste", "local", 0.3, 1),
        ("bayes", "end-to-end-output", 0.3, 1),
        ("bayes", "local", 0.0, 1),  # beta = 0 masks the weight sites (Pyro's scale must be > 0)
        ("ste", "local", 0.0, 1),
        ("bayes", "local", 0.3, 3),  # vectorised particles: one batch of three draws per site
        ("ste", "local", 0.3, 3),
    ],
)
def test_direct_loss_and_gradients_equal_pyro_elbo(rule, learning, kl_weight, particles):
    bsnn, made, train = _model(rule, learning, kl_weight, particles)
    x, y = train.x[:5], train.y[:5]
    direct = DirectELBO.for_loss(bsnn, made.loss)
    carry = {}
    direct.loss(x[:, :4], y, carry=carry)  # a state to continue from, as the online schedule does
    cases = [((x, y), {}), ((x[:, 4:5], y), {"t0": 4, "state": carry["state"], "kl_scale": 0.125})]
    for args, kwargs in cases:
        expected = _loss_and_grads(
            bsnn,
            lambda args=args, kwargs=kwargs: made.loss.differentiable_loss(bsnn.model, bsnn.guide, *args, **kwargs),
        )
        got = _loss_and_grads(bsnn, lambda args=args, kwargs=kwargs: direct.loss(*args, **kwargs))
        torch.testing.assert_close(got[0], expected[0], rtol=1e-5, atol=1e-4)
        for name, grad in expected[1].items():
            assert grad.abs().sum() > 0
            torch.testing.assert_close(got[1][name], grad, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("schedule, particles", [("online", 1), ("sequence", 1), ("online", 2), ("sequence", 2)])
def test_epoch_is_the_same_through_svi_and_direct(schedule, particles):
    bsnn, made, train = _model("bayes")
    twin = copy.deepcopy(bsnn)
    results = []
    for model, engine in ((bsnn, "svi"), (twin, "direct")):
        rule = make_rule("bayes", num_particles=particles)
        trainer = Trainer(
            model, rule.optim, rule.loss, train.x, train.y, batch_size=8, schedule=schedule, engine=engine
        )
        assert trainer.engine == engine
        pyro.set_rng_seed(3)
        results.append(trainer.run_epoch()["loss"])
    assert results[0] == pytest.approx(results[1], rel=1e-5)
    for a, b in zip(bsnn.parameters(), twin.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_auto_engine_is_direct_where_the_rule_allows_it():
    """(``bayes`` under the online schedule takes the fused engine: see test_fused.py.)"""
    for rule in ("bayes", "bayes-adam"):
        bsnn, made, train = _model(rule)
        for schedule in ("online", "sequence"):
            engine = Trainer(bsnn, made.optim, made.loss, train.x, train.y, schedule=schedule).engine
            assert engine == ("fused" if (rule, schedule) == ("bayes", "online") else "direct")


def test_direct_engine_refuses_what_it_cannot_evaluate():
    for rule in ("bayes-sf", "fp"):
        bsnn, made, train = _model(rule)
        with pytest.raises(ValueError, match="direct engine"):
            DirectELBO.for_loss(bsnn, made.loss)
        for schedule in ("online", "sequence"):
            trainer = Trainer(bsnn, made.optim, made.loss, train.x, train.y, schedule=schedule)
            assert trainer.engine == "svi"  # auto falls back
    with pytest.raises(ValueError, match="engine"):
        Trainer(bsnn, made.optim, made.loss, train.x, train.y, engine="jit")
    bsnn, _, _ = _model("bayes")
    with pytest.raises(ValueError, match="vectorize_particles"):  # particles one after another: SVI's loop
        DirectELBO.for_loss(bsnn, TraceMeanField_ELBO(num_particles=2))


def test_learning_modes_decide_which_readouts_reach_which_layers():
    """With the KL switched off, the first layer's gradient comes from the readouts alone: its own
    under local learning, the last layer's through the network under end-to-end-output, and none
    when only the last readout counts but learning is local."""
    from bisnn_pyro.models import ReadoutCategorical

    def first_layer_grad(learning, readouts=None):
        config = ExperimentConfig(rule="bayes", learning=learning, **{**SMALL, "kl_weight": 0.0})
        train, _ = load_data(config)
        bsnn, _ = build(config, train)
        if readouts:
            bsnn.likelihood = ReadoutCategorical(16, burn_in=3, readouts=readouts)
        pyro.set_rng_seed(3)
        DirectELBO(bsnn).loss(train.x[:6], train.y[:6]).backward()
        return bsnn.guide.natural()["layers.0.weight"].grad.abs().sum().item()

    assert first_layer_grad("local") > 0
    assert first_layer_grad("end-to-end-output") > 0
    assert first_layer_grad("local", readouts="last") == 0
    with pytest.raises(ValueError, match="readouts must be 'all' or 'last'"):
        ReadoutCategorical(16, readouts="first")


@pytest.mark.parametrize("readouts", ["all", "last"])
def test_log_likelihood_equals_the_categorical_site(readouts):
    """The written-out log-likelihood against Pyro's Categorical, with a leading sample dimension,
    int32 labels and a call that starts inside the burn-in."""
    from pyro.distributions import Categorical

    from bisnn_pyro.models import ReadoutCategorical

    torch.manual_seed(0)
    likelihood = ReadoutCategorical(num_data=50, burn_in=4, readouts=readouts)
    logits = torch.randn(3, 5, 2, 7, 4)  # draws, batch, layers, steps, classes
    y = torch.randint(0, 4, (5,), dtype=torch.int32)
    for t0 in (0, 2, 6):
        kept = logits[..., max(4 - t0, 0) :, :]
        kept = kept[..., -1:, :, :] if readouts == "last" else kept
        obs = y.long().reshape(5, 1, 1).expand(*kept.shape[-4:-1])
        expected = Categorical(logits=kept).to_event(2).log_prob(obs).sum() * 50 / 5
        torch.testing.assert_close(likelihood.log_likelihood(logits, y, t0), expected)
    assert likelihood.log_likelihood(logits[..., :3, :], y, 0) == 0  # every step is burn-in


def test_prior_is_rebuilt_when_its_tensors_change():
    """The direct ELBO keeps the prior's distributions between steps, but not past a change."""
    bsnn, made, train = _model("bayes")
    x, y = train.x[:5], train.y[:5]
    direct = DirectELBO.for_loss(bsnn, made.loss)
    first = direct.prior_distributions()
    assert direct.prior_distributions() is first
    with torch.no_grad():
        bsnn.net.layers[0].weight_prior.fill_(0.4)  # in place: a new version of the same tensor
    assert direct.prior_distributions() is not first
    expected = _loss_and_grads(bsnn, lambda: made.loss.differentiable_loss(bsnn.model, bsnn.guide, x, y))
    got = _loss_and_grads(bsnn, lambda: direct.loss(x, y))
    torch.testing.assert_close(got[0], expected[0], rtol=1e-5, atol=1e-4)
    bsnn.net.layers[0].weight_prior = torch.full_like(bsnn.net.layers[0].weight_prior, -0.2)  # replaced
    changed = direct.prior_distributions()
    torch.testing.assert_close(changed["layers.0.weight"].base_dist.natural, bsnn.net.layers[0].weight_prior)
    bsnn.prior = RelaxedBinaryPrior(0.5, temperature=0.5)  # another prior over the same tensors
    assert isinstance(direct.prior_distributions()["layers.0.weight"].base_dist, RelaxedSignBernoulli)


@pytest.mark.parametrize("particles", [1, 3])
def test_relaxed_prior_is_charged_the_same_monte_carlo_kl_as_mean_field_elbo(particles):
    """No closed-form KL between two relaxed distributions: both engines score log q - log p at
    the draw, with the same draws."""
    from bisnn_pyro import BayesianSNN, ReadoutCategorical, SpikingMLP
    from bisnn_pyro.inference import MeanFieldELBO, SignBernoulliGuide

    train, _ = load_data(ExperimentConfig(**SMALL))
    x, y = train.x[:5], train.y[:5]
    net = SpikingMLP(20, hidden=(12, 10), num_classes=2)
    guide = partial(SignBernoulliGuide, temperature=0.5, seed=0)
    likelihood = ReadoutCategorical(16, burn_in=3)
    bsnn = BayesianSNN(net, RelaxedBinaryPrior(0.4, temperature=0.7), likelihood, guide, kl_weight=0.3).setup(x)
    loss = MeanFieldELBO(num_particles=particles, vectorize_particles=particles > 1, max_plate_nesting=1)
    direct = DirectELBO.for_loss(bsnn, loss)
    expected = _loss_and_grads(bsnn, lambda: loss.differentiable_loss(bsnn.model, bsnn.guide, x, y))
    got = _loss_and_grads(bsnn, lambda: direct.loss(x, y))
    torch.testing.assert_close(got[0], expected[0], rtol=1e-5, atol=1e-4)
    for name, grad in expected[1].items():
        torch.testing.assert_close(got[1][name], grad, rtol=1e-4, atol=1e-5)


def test_last_readout_likelihood_is_the_predictive_distribution():
    """LastReadoutCategorical scores one categorical per example on the predictive's own logits,
    through the model site and the written-out log-likelihood alike, and refuses the online schedule."""
    from pyro import poutine
    from pyro.distributions import Categorical

    from bisnn_pyro.models import LastReadoutCategorical

    torch.manual_seed(0)
    likelihood = LastReadoutCategorical(num_data=50, burn_in=4)
    readouts = torch.randn(3, 5, 2, 7, 4)  # draws, batch, layers, steps, classes
    y = torch.randint(0, 4, (5,))
    logits = readouts[..., 4:, :][..., -1, :, :].mean(-2)
    expected = Categorical(logits=logits).log_prob(y).sum() * 50 / 5
    torch.testing.assert_close(likelihood.log_likelihood(readouts, y), expected)
    torch.testing.assert_close(likelihood.probs(readouts), torch.softmax(logits, -1))
    trace = poutine.trace(likelihood).get_trace(readouts[0], y)  # one draw through the model's site
    first = Categorical(logits=logits[0]).log_prob(y).sum() * 50 / 5
    torch.testing.assert_close(trace.log_prob_sum(), first, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="sequence schedule"):
        likelihood.log_likelihood(readouts[..., 5:6, :], y, t0=5)


def test_a_likelihood_of_ones_own_is_evaluated_alike_by_both_engines():
    """A Likelihood subclass with its own observation model (here a tempered categorical): the
    direct engine's log-likelihood comes from that model, as SVI's does."""
    from pyro.distributions import Categorical

    from bisnn_pyro import BayesianSNN, SpikingMLP
    from bisnn_pyro.inference import MeanFieldELBO, SignBernoulliGuide
    from bisnn_pyro.models import ReadoutCategorical

    class TemperedReadouts(ReadoutCategorical):
        def observation(self, logits, y):
            distribution, obs = super().observation(logits, y)
            return Categorical(logits=0.5 * logits).to_event(2), obs

    train, _ = load_data(ExperimentConfig(**SMALL))
    x, y = train.x[:5], train.y[:5]
    guide = partial(SignBernoulliGuide, temperature=0.5, seed=0)
    bsnn = BayesianSNN(SpikingMLP(20, (12, 10), 2), BinaryPrior(0.5), TemperedReadouts(16, burn_in=3), guide).setup(x)
    loss = MeanFieldELBO(max_plate_nesting=1)
    expected = _loss_and_grads(bsnn, lambda: loss.differentiable_loss(bsnn.model, bsnn.guide, x, y))
    got = _loss_and_grads(bsnn, lambda: DirectELBO.for_loss(bsnn, loss).loss(x, y))
    torch.testing.assert_close(got[0], expected[0], rtol=1e-5, atol=1e-4)
