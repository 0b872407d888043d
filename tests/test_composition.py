"""Swap any part: every prior x guide x optimiser x engine either trains or refuses in one line.

The matrix runs a small two-moons network (20 inputs, 16 + 8 neurons, T = 20) through the
library's priors and guides and two guides written here from the documented protocol alone: one
that learns its relaxation temperature and one whose natural parameters are low rank.
"""

from __future__ import annotations

import math
import warnings
from functools import partial

import pyro
import pyro.optim
import pytest
import torch
from pyro.infer import Trace_ELBO, TraceGraph_ELBO
from pyro.infer.autoguide import AutoDelta, AutoNormal, init_to_sample
from pyro.nn import PyroParam

from bisnn_pyro import BayesianSNN, ReadoutCategorical, SpikingMLP, Trainer
from bisnn_pyro.data import two_moons
from bisnn_pyro.inference import (
    BayesianLearningRule,
    CompositionError,
    GuideList,
    MeanFieldELBO,
    NaturalParameter,
    SignBernoulliGuide,
    StraightThroughGuide,
)
from bisnn_pyro.models import (
    BetaBinaryPrior,
    BinaryPrior,
    GaussianPrior,
    RelaxedBinaryPrior,
    RelaxedSignBernoulli,
    SignBernoulli,
)

STEPS, BURN_IN, N = 20, 5, 40


class LearnedTemperatureGuide(SignBernoulliGuide):
    """A user's guide: the relaxation temperature is learned too, as log tau."""

    def __init__(self, model, **options):
        super().__init__(model, **options)
        self.log_temperature = PyroParam(torch.tensor(math.log(self.temperature)))

    def site_distribution(self, name, params):
        natural = self.natural_parameter(name, params)
        if self.training:
            return RelaxedSignBernoulli(natural, self.log_temperature.exp())
        return SignBernoulli(natural)


class LowRankGuide(SignBernoulliGuide):
    """A user's guide: lam = U V^T + b per layer, a rank-2 natural parameter."""

    def init_site(self, name, prior, params, generator):
        rows, cols = prior.batch_shape
        params.u = PyroParam(self.init_scale * torch.randn(rows, 2, generator=generator))
        params.v = PyroParam(torch.randn(cols, 2, generator=generator))
        params.bias = PyroParam(torch.zeros(rows, 1))

    def natural_parameter(self, name, params):
        return params.u @ params.v.T + params.bias


PRIORS = {
    "binary": lambda: BinaryPrior(0.5),
    "per-layer": lambda: BinaryPrior({"layers.0": 0.3, "layers.1": 0.6}),
    "relaxed": lambda: RelaxedBinaryPrior(0.5, temperature=0.5),
    "beta": lambda: BetaBinaryPrior(2.0, 2.0),
    "gaussian": lambda: GaussianPrior(1.0),
}
GUIDES = {  # guide builder, the loss a user pairs with it, and the learning rule's step size for it
    "relaxed-sign": (partial(SignBernoulliGuide, temperature=0.5, seed=0), MeanFieldELBO, 0.02),
    # score-function gradients are ~100x larger and far noisier: 32 particles (16 lowered the objective
    # in 19 of 24 runs of four epochs, 32 in 24 of 24), and a step of 0.02 would saturate lam at once
    "exact-sign": (
        partial(SignBernoulliGuide, temperature=None, seed=0),
        partial(TraceGraph_ELBO, num_particles=32, vectorize_particles=True),
        2e-4,
    ),
    "straight-through": (partial(StraightThroughGuide, seed=0), Trace_ELBO, 0.02),
    "auto-delta": (partial(AutoDelta, init_loc_fn=init_to_sample), Trace_ELBO, 0.02),
    "auto-normal": (partial(AutoNormal, init_loc_fn=init_to_sample, init_scale=0.05), MeanFieldELBO, 0.02),
    "learned-temperature": (partial(LearnedTemperatureGuide, temperature=0.5, seed=0), MeanFieldELBO, 0.02),
    "low-rank": (partial(LowRankGuide, temperature=0.5, seed=0), MeanFieldELBO, 0.02),
}
OPTIMS = {
    "learning-rule": lambda lr: BayesianLearningRule({"lr": lr}),
    "adam": lambda lr: pyro.optim.Adam({"lr": 0.02}),
}
ENGINES = ("auto", "svi", "direct", "fused")

SIGN_GUIDES = ("relaxed-sign", "exact-sign", "straight-through", "learned-temperature", "low-rank")
CONTINUOUS = "is continuous, but the prior SignBernoulli has support {-1, +1}"
# (prior, guide) pairs that are refused whatever the optimiser and engine: DESIGN.md section 10
REFUSED_PAIRS = {
    **{
        (prior, guide): CONTINUOUS
        for prior in ("binary", "per-layer", "beta")
        for guide in ("auto-delta", "auto-normal")
    },
    ("relaxed", "exact-sign"): "SignBernoulli has support {-1, +1}, but the prior RelaxedSignBernoulli",
    ("relaxed", "straight-through"): "PointSign has support {-1, +1}, but the prior RelaxedSignBernoulli",
    **{("gaussian", guide): "(prior Normal, support real) has no guide" for guide in SIGN_GUIDES},
}
DIRECT_REFUSES = {  # why the direct engine, named, refuses the rest
    "exact-sign": "no form of TraceGraph_ELBO",
    "auto-delta": "AutoDelta has no distributions()",
    "auto-normal": "AutoNormal has no distributions()",
}


def expected_outcome(prior: str, guide: str, optim: str, engine: str) -> str:
    """'' for a cell that trains, else a fragment of its one-line error."""
    if (prior, guide) in REFUSED_PAIRS:
        return REFUSED_PAIRS[(prior, guide)]
    if engine == "direct":
        if guide == "exact-sign" or prior != "beta":
            return DIRECT_REFUSES.get(guide, "")
        return "layers.0.weight_p, layers.1.weight_p are not layers' weights"
    if engine == "fused":
        if guide != "relaxed-sign" or prior == "beta":  # under BetaBinaryPrior the guide is a GuideList
            return "not a SignBernoulliGuide with a fixed relaxation temperature"
        if prior == "relaxed":
            return "is not a fixed SignBernoulli"
        if optim != "learning-rule":
            return "not BayesianLearningRule"
    return ""


@pytest.fixture(scope="module")
def data():
    train = two_moons(N, steps=STEPS, seed=0)
    return train.x, train.y


def _build(prior: str, guide: str, x: torch.Tensor) -> BayesianSNN:
    net = SpikingMLP(20, hidden=(16, 8), num_classes=2)
    likelihood = ReadoutCategorical(num_data=N, burn_in=BURN_IN)
    return BayesianSNN(net, PRIORS[prior](), likelihood, GUIDES[guide][0]).setup(x)


def _objective(bsnn: BayesianSNN, loss, x, y) -> float:
    """-ELBO of the cell's own estimator from 32 particles, on the same random numbers every call:
    what training should lower, without the noise of single-draw training losses."""
    elbo = type(loss)(num_particles=32, vectorize_particles=True, max_plate_nesting=1)
    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(123)
        return elbo.loss(bsnn.model, bsnn.guide, x, y)


def _train(prior, guide, optim, engine, x, y, epochs=4) -> tuple[BayesianSNN, Trainer, list[float]]:
    """Train a cell; returns the model, its trainer and the objective before and after each epoch."""
    pyro.set_rng_seed(0)
    bsnn = _build(prior, guide, x)
    builder, loss_class, rule_lr = GUIDES[guide]
    loss = loss_class(max_plate_nesting=1)
    schedule = "online" if engine == "fused" else "sequence"
    trainer = Trainer(bsnn, OPTIMS[optim](rule_lr), loss, x, y, batch_size=10, schedule=schedule, engine=engine)
    objectives = [_objective(bsnn, loss, x, y)]
    for _ in range(epochs):
        assert math.isfinite(trainer.run_epoch()["loss"])
        objectives.append(_objective(bsnn, loss, x, y))
    return bsnn, trainer, objectives


CELLS = [(p, g, o, e) for p in PRIORS for g in GUIDES for o in OPTIMS for e in ENGINES]


@pytest.mark.parametrize("prior, guide, optim, engine", CELLS, ids=["-".join(cell) for cell in CELLS])
def test_composition_matrix(data, prior, guide, optim, engine):
    x, y = data
    expected = expected_outcome(prior, guide, optim, engine)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if expected:
            with pytest.raises(CompositionError) as refusal:
                _train(prior, guide, optim, engine, x, y, epochs=1)
            message = str(refusal.value)
            assert expected in message and "\n" not in message
            return
        bsnn, trainer, objectives = _train(prior, guide, optim, engine, x, y)
    # real-valued weights in [-1, 1] are allowed under the relaxed prior, and said where the user builds
    said = [w for w in caught if "learns real-valued weights in [-1, 1]" in str(w.message)]
    assert bool(said) == (prior == "relaxed" and guide.startswith("auto-"))
    assert all(w.filename == __file__ for w in said)
    # a learning rule over a guide without natural parameters says that its companion does the work
    idle = any("finds no natural parameters" in str(w.message) for w in caught)
    assert idle == (optim == "learning-rule" and guide in ("straight-through", "auto-delta", "auto-normal", "low-rank"))
    assert engine in ("auto", trainer.engine)
    assert all(math.isfinite(value) for value in objectives)
    assert objectives[-1] < objectives[0], objectives
    for name, param in bsnn.named_parameters():
        assert torch.isfinite(param).all() and param.abs().max() < 1e3, name
    if guide == "learned-temperature":
        own = bsnn.guide.parts[0] if prior == "beta" else bsnn.guide  # a GuideList under hyper-latents
        assert 0.05 < own.log_temperature.exp().item() < 20
    for mode in ("map", "ensemble", "mean"):  # and every prediction mode runs on what it learned
        probs = bsnn.predict(x[:6], mode, samples=3)
        assert probs.shape == (6, 2) and torch.allclose(probs.sum(-1), torch.ones(6))


def test_engine_auto_picks_the_fastest_that_runs_the_parts(data):
    """auto: fused for the online steps of the bayes parts, else direct, else SVI."""
    x, y = data
    picks = {
        ("binary", "relaxed-sign", "learning-rule", "online"): "fused",
        ("binary", "relaxed-sign", "learning-rule", "sequence"): "direct",
        ("relaxed", "relaxed-sign", "learning-rule", "online"): "direct",
        ("binary", "learned-temperature", "learning-rule", "online"): "direct",
        ("beta", "relaxed-sign", "learning-rule", "sequence"): "svi",
        ("gaussian", "auto-normal", "adam", "sequence"): "svi",
    }
    for (prior, guide, optim, schedule), engine in picks.items():
        bsnn = _build(prior, guide, x)
        optimiser = OPTIMS[optim](GUIDES[guide][2])
        trainer = Trainer(bsnn, optimiser, GUIDES[guide][1](max_plate_nesting=1), x, y, schedule=schedule)
        assert trainer.engine == engine, (prior, guide, optim, schedule)


def test_learning_rule_steps_only_natural_parameters(data):
    """One step of the rule: lam moves by the natural gradient; a learned temperature takes the
    companion's (Adam's) first step, lr * sign(gradient), and nothing is clamped."""
    x, y = data
    bsnn = _build("binary", "learned-temperature", x)
    optim = BayesianLearningRule({"lr": 0.02}, companion=pyro.optim.Adam({"lr": 0.1}))
    trainer = Trainer(bsnn, optim, MeanFieldELBO(max_plate_nesting=1), x, y, batch_size=N, engine="svi")
    params = dict(bsnn.named_parameters())
    natural = [p for p in params.values() if isinstance(p, NaturalParameter)]
    others = {n: p for n, p in params.items() if not isinstance(p, NaturalParameter)}
    assert len(natural) == 2 and list(others) == ["guide.log_temperature_unconstrained"]
    tau = others["guide.log_temperature_unconstrained"]
    before = tau.detach().clone()
    grads = {}
    hooks = [p.register_hook(lambda g, p=p: grads.__setitem__(id(p), g.clone())) for p in (tau, *natural)]
    lam_before = [lam.detach().clone() for lam in natural]
    trainer.run_epoch()
    for hook in hooks:
        hook.remove()
    torch.testing.assert_close(tau.detach() - before, -0.1 * torch.sign(grads[id(tau)]), rtol=1e-3, atol=1e-6)
    for lam, lam0 in zip(natural, lam_before):
        fisher = 1 - torch.tanh(lam0) ** 2
        torch.testing.assert_close(lam.detach(), lam0 - 0.02 * grads[id(lam)] / fisher, rtol=1e-4, atol=1e-6)


def test_learned_temperature_under_the_learning_rule_matches_adam():
    """The learned-temperature guide trained by make_rule('bayes')'s optimiser learns tau in a
    sensible range and reaches the accuracy that Adam reaches with the same guide."""
    from bisnn_pyro import make_rule

    train, test = two_moons(200, seed=0), two_moons(500, seed=1)
    results = {}
    for name in ("bayes", "bayes-adam"):
        rule = make_rule(name)
        pyro.set_rng_seed(0)
        guide = partial(LearnedTemperatureGuide, temperature=0.5, seed=0)
        bsnn = BayesianSNN(SpikingMLP(20, (64,), 2), rule.prior, ReadoutCategorical(200, burn_in=10), guide)
        Trainer(bsnn.setup(train.x), rule.optim, rule.loss, train.x, train.y).fit(10, progress=False)
        tau = bsnn.guide.log_temperature.exp().item()
        results[name] = (tau, bsnn.evaluate(test.x, test.y, "map")["accuracy"])
    (tau, accuracy), (_, adam_accuracy) = results["bayes"], results["bayes-adam"]
    assert 0.1 < tau < 5 and tau != pytest.approx(0.5, abs=1e-3), results
    assert accuracy >= adam_accuracy - 0.03 and accuracy > 0.9, results


def test_select_keeps_the_other_weights_learned_parameters(data):
    """select=: the second layer's weight is a +-1 site, the first an ordinary parameter that the
    companion optimiser trains, through SVI and the direct engine alike."""
    x, y = data
    for engine in ("svi", "direct"):
        prior = BinaryPrior(0.5, select=lambda name, module: name == "layers.1.weight")
        net = SpikingMLP(20, hidden=(16, 8), num_classes=2)
        bsnn = BayesianSNN(net, prior, ReadoutCategorical(N, burn_in=BURN_IN), SignBernoulliGuide).setup(x)
        assert bsnn.sites.layer_weights == (None, "layers.1.weight")
        first = bsnn.net.layers[0].weight.detach().clone()
        trainer = Trainer(bsnn, BayesianLearningRule({"lr": 0.02}), MeanFieldELBO(), x, y, engine=engine)
        losses = [trainer.run_epoch()["loss"] for _ in range(3)]
        assert trainer.engine == engine and losses[-1] < losses[0]
        assert not torch.equal(bsnn.net.layers[0].weight.detach(), first)


def test_per_parameter_options_reach_module_local_parameters(data):
    """BayesianLearningRule(lambda name: ...) names each parameter as the model does."""
    x, y = data
    bsnn = _build("binary", "relaxed-sign", x)
    seen = []

    def options(name):
        seen.append(name)
        return {"lr": 1e-9 if "layers.0" in name else 0.05}

    lam = bsnn.guide.natural()
    first, second = lam["layers.0.weight"].detach().clone(), lam["layers.1.weight"].detach().clone()
    Trainer(bsnn, BayesianLearningRule(options), MeanFieldELBO(), x, y).run_epoch()
    assert sorted(seen) == ["guide.params.layers.0.weight.natural", "guide.params.layers.1.weight.natural"]
    assert (lam["layers.0.weight"] - first).abs().max() < 1e-6 < (lam["layers.1.weight"] - second).abs().max()
    with pytest.raises(ValueError, match="bind_optimizer"):  # a plain SVI loop must name them first
        pyro.infer.SVI(bsnn.model, bsnn.guide, BayesianLearningRule(options), MeanFieldELBO()).step(x, y)


def test_svi_with_model_guide_optimises_the_beta_scaled_elbo(data):
    """SVI(model.model, model.guide): the loss is -E[log p(y|w)] + beta KL for every beta."""
    x, y = data
    bsnn = _build("per-layer", "relaxed-sign", x)
    elbo = MeanFieldELBO(max_plate_nesting=1)
    q, p = bsnn.guide.distributions(), bsnn.prior_distributions()
    kl = sum(torch.distributions.kl_divergence(q[name], p[name]).sum() for name in q).item()
    losses = {}
    for beta in (0.0, 0.3, 1.0):
        bsnn.kl_weight = beta
        pyro.set_rng_seed(5)
        losses[beta] = elbo.differentiable_loss(bsnn.model, bsnn.guide, x, y).item()
    for beta in (0.3, 1.0):
        assert losses[beta] == pytest.approx(losses[0.0] + beta * kl, rel=1e-5)


def test_predictive_returns_weights_and_readouts(data):
    x, _ = data
    bsnn = _build("binary", "relaxed-sign", x).eval()
    samples = pyro.infer.Predictive(bsnn.model, guide=bsnn.guide, num_samples=3, parallel=True)(x[:4])
    assert samples["readouts"].shape == (3, 4, 2, STEPS, 2)
    assert set(samples["layers.0.weight"].unique().tolist()) == {-1.0, 1.0}
    expected = bsnn.readouts_with({k: v for k, v in samples.items() if k.startswith("layers")}, x[:4])
    torch.testing.assert_close(samples["readouts"], expected)


def test_rules_honour_or_refuse_every_option():
    from bisnn_pyro import make_rule

    ste = make_rule("ste", prior_p=0.7)  # ST-BiSNN honours the prior's p
    assert ste.prior.p == 0.7 and ste.parts["prior"] == {"name": "binary", "p": 0.7}
    assert ste.parts["guide"] == {"name": "straight-through", "init_scale": 0.1}
    for name, option in [("ste", "temperature"), ("ste", "momentum"), ("fp", "prior_p"), ("bayes-adam", "momentum")]:
        with pytest.raises(ValueError, match=f"rule '{name}' does not use {option}"):
            make_rule(name, **{option: 0.3})


def test_a_guide_list_may_hold_a_pyro_autoguide(data):
    """GuideList(model, [SignBernoulliGuide, AutoDelta over the hyper-latents]): point values for p."""
    from pyro import poutine

    x, y = data

    def guide(model):
        hyper = poutine.block(model, expose_fn=lambda message: message["name"].endswith("_p"))
        return GuideList(model, [SignBernoulliGuide(model, temperature=0.5), AutoDelta(hyper)])

    net = SpikingMLP(20, hidden=(16, 8), num_classes=2)
    bsnn = BayesianSNN(net, BetaBinaryPrior(2.0, 2.0), ReadoutCategorical(N, burn_in=BURN_IN), guide).setup(x)
    assert isinstance(bsnn.guide, GuideList) and len(bsnn.guide.parts) == 2  # not composed a second time
    trainer = Trainer(bsnn, BayesianLearningRule({"lr": 0.02}), MeanFieldELBO(max_plate_nesting=1), x, y)
    # the autoguide samples every p before the weights, where the model interleaves them: Pyro warns
    with pytest.warns(UserWarning, match="ensure model and guide sites occur in the same order"):
        objective = _objective(bsnn, trainer.loss, x, y)
        for _ in range(4):
            trainer.run_epoch()
        assert _objective(bsnn, trainer.loss, x, y) < objective
    p = bsnn.guide.median()["layers.0.weight_p"]
    assert 0 < p.item() < 1


def test_an_interrupted_guide_leaves_nothing_on_pyros_stack(data):
    """The KL weight is opened around the guide's forward with a with block: Ctrl-C inside the
    guide must not leave a scale or mask behind for the rest of the process."""
    from pyro.poutine.runtime import _PYRO_STACK

    x, _ = data
    bsnn = _build("binary", "relaxed-sign", x)
    bsnn.kl_weight = 0.0  # a mask, the messenger that did the most harm when it leaked
    inner = type(bsnn.guide).distributions

    def interrupted(self):
        raise KeyboardInterrupt

    type(bsnn.guide).distributions = interrupted
    try:
        with pytest.raises(KeyboardInterrupt):
            bsnn.guide(x)
    finally:
        type(bsnn.guide).distributions = inner
    assert not _PYRO_STACK


def test_the_rule_finds_natural_parameters_that_lost_their_type(data):
    """Parameters replaced by load_state_dict(assign=True) are plain Parameters: bound to the model,
    the learning rule still knows them from the guide's natural()."""
    x, y = data
    bsnn = _build("binary", "relaxed-sign", x)
    bsnn.load_state_dict({k: v.clone() for k, v in bsnn.state_dict().items()}, assign=True)
    lam = bsnn.guide.natural()["layers.0.weight"]
    assert not isinstance(lam, NaturalParameter)
    rule = BayesianLearningRule({"lr": 0.02})
    Trainer(bsnn, rule, MeanFieldELBO(max_plate_nesting=1), x, y, engine="direct")
    assert rule.route(lam) is rule


def test_a_guide_without_seed_follows_pyros_seed():
    """A guide built without ``seed=`` draws its initial values from a generator seeded by torch's
    global one: ``pyro.set_rng_seed`` makes them reproducible, and two guides in one process differ."""
    x = two_moons(8, seed=0).x

    def initial_natural():
        bsnn = BayesianSNN(SpikingMLP(20, hidden=(16,)), BinaryPrior(), ReadoutCategorical(8), SignBernoulliGuide)
        return bsnn.setup(x).guide.site_parameters("layers.0.weight").natural.detach().clone()

    pyro.set_rng_seed(3)
    first, second = initial_natural(), initial_natural()
    pyro.set_rng_seed(3)
    again = initial_natural()
    assert torch.equal(first, again) and not torch.equal(first, second)
