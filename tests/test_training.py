import json
import math
import pickle
import re

import pyro
import pytest
import torch

from bisnn_pyro.experiment import ExperimentConfig, create_run, open_run
from bisnn_pyro.inference import make_rule
from bisnn_pyro.inference.checkpoint import load_checkpoint, save_checkpoint

SMALL = dict(hidden=[48], steps=40, burn_in=5, test_size=300, samples=5)


def train(tmp_path, name="run", **overrides):
    run = create_run(ExperimentConfig(**{**SMALL, **overrides}), tmp_path / name)
    run.fit(progress=False)
    return run


@pytest.mark.parametrize(
    "rule, mode, options",
    [
        ("bayes", "ensemble", {}),
        ("bayes", "map", {}),
        ("bayes-adam", "ensemble", {}),
        ("ste", "map", {"lr": 1e-2}),  # the default 1e-3 needs ~20 epochs
        ("fp", "map", {}),
        ("fp-bayes", "ensemble", {}),
    ],
)
def test_each_rule_learns_two_moons(tmp_path, rule, mode, options):
    """Six epochs of a 48-neuron network: chance is 0.5; every rule gets past 0.85."""
    epochs = 6
    run = train(tmp_path, rule=rule, epochs=epochs, **options)
    losses = [json.loads(line)["loss"] for line in (run.directory / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == epochs
    assert run.evaluate(mode)["accuracy"] >= 0.85
    assert losses[-1] < losses[0]


def test_score_function_rule_trains_without_error(tmp_path):
    """bayes-sf runs end to end (its estimator's unbiasedness is tested in test_learning_rule)."""
    run = train(tmp_path, rule="bayes-sf", epochs=2)
    assert 0 <= run.evaluate("ensemble")["accuracy"] <= 1


def test_online_schedule_learns(tmp_path):
    run = train(tmp_path, schedule="online", epochs=2)
    assert run.evaluate("map")["accuracy"] >= 0.8


def test_save_load_predict_roundtrip(tmp_path):
    run = train(tmp_path, epochs=1)
    again = open_run(run.directory)
    x = run.test.x[:50]
    assert torch.equal(run.bsnn.predict(x, "map"), again.bsnn.predict(x, "map"))
    assert torch.equal(run.bsnn.predict(x, "mean"), again.bsnn.predict(x, "mean"))
    pyro.set_rng_seed(5)
    first = run.bsnn.predict(x, "ensemble", 4)
    pyro.set_rng_seed(5)
    assert torch.equal(first, again.bsnn.predict(x, "ensemble", 4))


def test_resume_continues_exactly(tmp_path):
    straight = train(tmp_path, "straight", epochs=2)
    half = train(tmp_path, "half", epochs=1)
    half.close()
    resumed = open_run(half.directory, write=True)
    assert resumed.trainer.epoch == 1
    resumed.fit(2, progress=False)
    for (name, a), (_, b) in zip(straight.bsnn.state_dict().items(), resumed.bsnn.state_dict().items()):
        assert torch.equal(a, b), name
    assert len((half.directory / "metrics.jsonl").read_text().splitlines()) == 2


def test_checkpoint_is_plain_tensors_and_atomic(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"epoch": 3, "weights": torch.ones(2)})
    assert load_checkpoint(path)["epoch"] == 3
    with pytest.raises((AttributeError, pickle.PicklingError)):  # which one depends on the Python version
        save_checkpoint(path, {"epoch": 4, "bad": lambda: None})  # not serialisable
    assert load_checkpoint(path)["epoch"] == 3  # the old checkpoint survived
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temporary file left behind


def test_ensemble_draws_differ_and_average_in_probability(tmp_path):
    run = train(tmp_path, epochs=1)
    per_draw = run.bsnn.predictive_probs(run.test.x[:20], "ensemble", 6)
    assert per_draw.shape == (6, 20, 2)
    assert not torch.allclose(per_draw[0], per_draw[1])
    torch.testing.assert_close(run.bsnn.predict(run.test.x[:20], "map").sum(-1), torch.ones(20))


def test_rule_rejects_bad_hyper_parameters():
    for kwargs, message in [
        ({"temperature": 0.0}, "temperature"),
        ({"prior_p": 1.5}, "in [1e-06, 0.999999]"),
        ({"lr": 0.0}, "optim.lr must be a finite number > 0"),
    ]:
        with pytest.raises(ValueError, match=re.escape(message)):
            make_rule("bayes", **kwargs)
    with pytest.raises(ValueError, match="unknown rule"):
        make_rule("bayes-xyz")


def test_pyro_predictive_works_on_the_model(tmp_path):
    """Pyro's own Predictive draws exact +-1 weights from the guide and batches them."""
    from pyro import poutine
    from pyro.infer import Predictive

    run = train(tmp_path, epochs=1)
    bsnn, x = run.bsnn.eval(), run.test.x[:30]
    predictive = Predictive(
        bsnn.model, guide=bsnn.guide, num_samples=5, parallel=True, return_sites=["_RETURN", "layers.0.weight"]
    )
    out = predictive(x)
    assert out["_RETURN"].shape == (5, 30, 1, 40, 2)  # draws, points, layers, steps, classes
    assert set(out["layers.0.weight"].unique().tolist()) == {-1.0, 1.0}
    with torch.no_grad():  # as Predictive runs it: without gradients the network filters the drive
        again = poutine.condition(bsnn.net, data={"layers.0.weight": out["layers.0.weight"]})(x).readouts
    torch.testing.assert_close(again, out["_RETURN"])


def test_vectorised_particles_train_as_one_batch(tmp_path):
    """Three ELBO particles per step: the weights carry a particle dimension, the whole-layer time
    loop runs them in one batch, and the rule still learns."""
    run = create_run(ExperimentConfig(**{**SMALL, "particles": 3, "epochs": 3}), tmp_path / "run")
    assert run.trainer.engine == "direct"
    before = {n: p.detach().clone() for n, p in run.bsnn.named_parameters()}
    history = run.fit(progress=False)
    assert all(math.isfinite(h["loss"]) for h in history) and history[-1]["loss"] < history[0]["loss"]
    assert any(not torch.equal(before[n], p) for n, p in run.bsnn.named_parameters())
    assert run.evaluate("ensemble")["accuracy"] >= 0.8


@pytest.mark.parametrize("rule", ["bayes", "ste", "fp"])
@pytest.mark.parametrize("model", ["mlp", "conv"])
def test_deterministic_biases_train_through_svi(rule, model):
    """bias=True: the biases are module-local PyroParams (a plain nn.Parameter on a PyroModule made
    SVI.step fail in module-local mode); one SVI epoch moves them and the weight parameters."""
    from bisnn_pyro import BayesianSNN, ReadoutCategorical, SpikingMLP, Trainer
    from bisnn_pyro.models import ConvSpikingNet

    torch.manual_seed(0)
    x = (torch.rand(8, 6, 2, 5, 5) < 0.3).float()
    y = torch.arange(8) % 2
    if model == "mlp":
        net = SpikingMLP((2, 5, 5), hidden=(12,), num_classes=2, bias=True)
    else:
        net = ConvSpikingNet((2, 5, 5), num_classes=2, channels=(4,), kernel_size=3, pool=1, bias=True)
    made = make_rule(rule, lr=0.1 if rule != "bayes" else 5e-2)
    bsnn = BayesianSNN(net, made.prior, ReadoutCategorical(num_data=8, burn_in=1), made.guide).setup(x)
    names = [name for name, _ in bsnn.named_parameters()]
    assert "net.layers.0.bias_unconstrained" in names and len(names) == 2
    before = {name: p.detach().clone() for name, p in bsnn.named_parameters()}
    Trainer(bsnn, made.optim, made.loss, x, y, batch_size=4, engine="svi").fit(1, progress=False)
    for name, p in bsnn.named_parameters():
        assert torch.isfinite(p).all() and not torch.equal(before[name], p.detach()), name
    probs = bsnn.eval().predict(x, "map")
    assert probs.shape == (8, 2) and torch.allclose(probs.sum(-1), torch.ones(8))


@pytest.mark.parametrize("rule", ["bayes", "ste"])
def test_runs_saved_before_per_site_guide_parameters_still_open(tmp_path, rule):
    """A run folder from version 0.1 (guide parameters named guide.params.<site>_unconstrained, and
    every rule option recorded, used or not) reopens with the same predictions."""
    run = train(tmp_path, rule=rule, epochs=1)
    state = load_checkpoint(run.checkpoint)

    def old(name: str) -> str:
        for leaf in (".natural", ".theta_unconstrained"):
            if leaf in name:
                return name.replace(leaf, "_unconstrained")
        return name

    state["model"] = {old(k): v for k, v in state["model"].items()}
    state["optimizer"] = {old(k): v for k, v in state["optimizer"].items()}
    assert any(k.endswith("weight_unconstrained") for k in state["model"])
    save_checkpoint(run.checkpoint, {k: v for k, v in state.items() if k != "format"})
    sections = json.loads((run.directory / "config.json").read_text())
    flat = {key: value for section in ("data", "model", "training") for key, value in sections[section].items()}
    flat["model"] = flat.pop("network")
    for key in ("loss",):
        flat.pop(key)
    # version 0.1 recorded every rule option, used or not, at its default
    flat.update(lr=None, temperature=0.5, prior_p=0.5, momentum=0.0, init_scale=0.1)
    (run.directory / "config.json").write_text(json.dumps(flat))
    run.close()
    again = open_run(run.directory, write=True)
    x = run.test.x[:50]
    assert torch.equal(run.bsnn.predict(x, "map"), again.bsnn.predict(x, "map"))
    again.fit(2, progress=False)  # its optimiser state loaded too
