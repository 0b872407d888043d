"""The fused online step against the direct engine (same uniforms: same losses and updates), and
its own arithmetic (exp, log, uniforms) against float64 and the uniform law."""

import math

import numpy as np
import pytest
import torch

from bisnn_pyro import BayesianSNN, ReadoutCategorical, SpikingMLP, Trainer, make_rule
from bisnn_pyro.experiment import ConfigError, ExperimentConfig, build, load_data
from bisnn_pyro.inference import fused_kernels
from bisnn_pyro.inference.checkpoint import load_checkpoint, save_checkpoint
from bisnn_pyro.inference.fused import FusedOnline, unsupported_reason
from bisnn_pyro.inference.random_stream import RandomStream

STEPS, BURN_IN, N = 7, 2, 12


def _data():
    generator = torch.Generator().manual_seed(3)
    x = (torch.rand(N, STEPS, 20, generator=generator) < 0.3).float()
    y = torch.randint(0, 2, (N,), generator=generator)
    return x, y


def _model(x, *, prior_p=0.5, momentum=None, temperature=0.5, spike="boxcar", rule_name="bayes"):
    rule = make_rule(rule_name, lr=0.05, prior_p=prior_p, momentum=momentum, temperature=temperature, seed=1)
    net = SpikingMLP(20, hidden=(32, 24), num_classes=2, spike=spike)
    likelihood = ReadoutCategorical(num_data=3 * N, burn_in=BURN_IN)
    bsnn = BayesianSNN(net, rule.prior, likelihood, rule.guide, kl_weight=0.7).setup(x)
    return bsnn, rule


def _replaying_rand(uniforms: list[torch.Tensor]):
    """A stand-in for torch.rand handing out the given uniforms in order (the direct engine's draws)."""
    queue = list(uniforms)

    def rand(*shape, **kwargs):
        u = queue.pop(0)
        assert tuple(u.shape) == tuple(shape[0] if len(shape) == 1 else shape)
        return u.clone()

    return rand


def _fused_uniforms(bsnn, seed: int, steps: int) -> list[torch.Tensor]:
    """The uniforms the fused engine draws in one sequence after torch.manual_seed(seed), per step
    and layer, in the direct engine's order."""
    torch.manual_seed(seed)
    keys = torch.randint(-(2**63), 2**63 - 1, (steps,), dtype=torch.int64).numpy().view(np.uint64)
    shapes = [lam.shape for lam in bsnn.guide.natural().values()]
    out, first = [], 0
    for key in keys:
        first = 0
        for shape in shapes:
            u = np.empty(math.prod(shape), np.float32)
            fused_kernels.uniforms(key, np.uint64(first), u)
            out.append(torch.from_numpy(u).reshape(shape))
            first += u.size
    return out


@pytest.mark.parametrize(
    "options",
    [{}, {"prior_p": 0.3}, {"momentum": 0.9}, {"temperature": 0.7}],
    ids=["default", "prior-0.3", "momentum", "temperature-0.7"],
)
def test_fused_sequences_equal_direct_engine_with_same_uniforms(monkeypatch, options):
    x, y = _data()
    fused_model, fused_rule = _model(x, **options)
    direct_model, direct_rule = _model(x, **options)
    fused = Trainer(
        fused_model, fused_rule.optim, fused_rule.loss, x, y, batch_size=N, schedule="online", engine="fused"
    )
    direct = Trainer(
        direct_model, direct_rule.optim, direct_rule.loss, x, y, batch_size=N, schedule="online", engine="direct"
    )
    assert (fused.engine, direct.engine) == ("fused", "direct")
    for epoch in range(2):  # the second epoch starts from moved parameters and optimiser states
        uniforms = _fused_uniforms(fused_model, 10 + epoch, STEPS)
        fused.draws = RandomStream(10 + epoch)  # the stream whose uniforms were just replayed
        fused_loss = fused.run_epoch()["loss"]
        with monkeypatch.context() as patch:
            patch.setattr(torch, "rand", _replaying_rand(uniforms))
            direct_loss = direct.run_epoch()["loss"]
        assert fused_loss == pytest.approx(direct_loss, rel=1e-5)
        for (name, lam_fused), lam_direct in zip(
            fused_model.guide.natural().items(), direct_model.guide.natural().values()
        ):
            torch.testing.assert_close(lam_fused, lam_direct, rtol=1e-5, atol=1e-6, msg=name)
    moved = [
        (lam - lam0).abs().max()
        for lam, lam0 in zip(fused_model.guide.natural().values(), _model(x, **options)[0].guide.natural().values())
    ]
    assert min(moved) > 1e-3  # the comparison is of parameters that learning moved


def test_fused_exp_and_log_match_float64():
    x = np.linspace(-87.0, 88.0, 200_001, dtype=np.float32)
    out = np.empty_like(x)
    fused_kernels.exp32_array(x, out)
    exact = np.exp(x.astype(np.float64))
    assert np.max(np.abs(out - exact) / exact) < 3e-7
    positive = np.concatenate([np.geomspace(1e-37, 1e37, 200_001), np.linspace(0.5, 2.0, 100_001)]).astype(np.float32)
    out = np.empty_like(positive)
    fused_kernels.log32_array(positive, out)
    exact = np.log(positive.astype(np.float64))
    assert np.max(np.abs(out - exact) / np.maximum(np.abs(exact), 1e-3)) < 3e-7


def test_fused_uniforms_are_uniform_and_keyed():
    n = 200_000
    u = np.empty(n, np.float32)
    fused_kernels.uniforms(np.uint64(12345), np.uint64(0), u)
    assert 0.0 < u.min() and u.max() < 1.0
    ordered = np.sort(u.astype(np.float64))
    ks = np.max(np.abs(ordered - np.arange(1, n + 1) / n))  # Kolmogorov-Smirnov distance to U(0, 1)
    assert ks < 1.63 / math.sqrt(n)  # the 1 % critical value
    assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < 4.0 / math.sqrt(n)
    tail = np.empty(1000, np.float32)
    fused_kernels.uniforms(np.uint64(12345), np.uint64(n - 1000), tail)
    np.testing.assert_array_equal(tail, u[-1000:])  # a counter names one number, whatever the range
    other = np.empty(n, np.float32)
    fused_kernels.uniforms(np.uint64(12346), np.uint64(0), other)
    assert abs(np.corrcoef(u, other)[0, 1]) < 4.0 / math.sqrt(n)


@pytest.mark.parametrize(
    "temperature, kernel",
    [(0.7, "draw"), (0.5, "draw"), (0.5, "draw_reciprocal_temperature"), (1.0, "draw_reciprocal_temperature")],
)
def test_fused_draw_is_the_relaxed_sign_of_its_uniforms(temperature, kernel):
    lam = torch.linspace(-10.0, 10.0, 5001)
    weight, u = np.empty(lam.numel(), np.float32), np.empty(lam.numel(), np.float32)
    draw = getattr(fused_kernels, kernel)
    draw(lam.numpy(), np.uint64(99), np.uint64(7), np.float32(1 / temperature), np.float32(0.25), weight)
    fused_kernels.uniforms(np.uint64(99), np.uint64(7), u)
    expected = 0.25 * torch.tanh((lam.double() + 0.5 * torch.logit(torch.from_numpy(u).double())) / temperature)
    torch.testing.assert_close(torch.from_numpy(weight).double(), expected, rtol=0, atol=3e-7)


def test_fused_resumes_where_it_stopped(tmp_path):
    x, y = _data()

    def trainer():
        bsnn, rule = _model(x)
        return bsnn, Trainer(bsnn, rule.optim, rule.loss, x, y, batch_size=6, schedule="online", seed=4)

    torch.manual_seed(0)
    straight_model, straight = trainer()
    straight.fit(3)
    torch.manual_seed(0)
    first_model, first = trainer()
    first.fit(2)
    save_checkpoint(tmp_path / "checkpoint.pt", first.state_dict())
    resumed_model, resumed = trainer()
    resumed.load_state_dict(load_checkpoint(tmp_path / "checkpoint.pt"))
    resumed.fit(3)
    assert resumed.engine == "fused"
    for a, b in zip(straight_model.guide.natural().values(), resumed_model.guide.natural().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_fused_applies_only_where_it_computes_the_same_step():
    x, y = _data()
    bsnn, rule = _model(x)
    assert unsupported_reason(bsnn, rule.optim, rule.loss) == ""
    assert Trainer(bsnn, rule.optim, rule.loss, x, y, schedule="online").engine == "fused"
    assert Trainer(bsnn, rule.optim, rule.loss, x, y, schedule="sequence").engine == "direct"
    with pytest.raises(ValueError, match="online schedule"):
        Trainer(bsnn, rule.optim, rule.loss, x, y, schedule="sequence", engine="fused")
    sigmoid, sigmoid_rule = _model(x, spike="sigmoid")
    assert "boxcar" in unsupported_reason(sigmoid, sigmoid_rule.optim, sigmoid_rule.loss)
    with pytest.raises(ValueError, match="boxcar"):
        FusedOnline(sigmoid, sigmoid_rule.optim, sigmoid_rule.loss)
    assert Trainer(sigmoid, sigmoid_rule.optim, sigmoid_rule.loss, x, y, schedule="online").engine == "direct"
    adam, adam_rule = _model(x, rule_name="bayes-adam")
    assert "optimiser" in unsupported_reason(adam, adam_rule.optim, adam_rule.loss)


def test_fused_engine_on_the_command_line_configuration():
    config = ExperimentConfig(
        rule="ste", schedule="online", engine="fused", hidden=[8], steps=6, burn_in=2, train_size=8
    )
    train, _ = load_data(config)
    with pytest.raises(ConfigError, match="fused"):
        build(config, train)
    config = ExperimentConfig(
        schedule="online", engine="fused", surrogate="sigmoid", hidden=[8], steps=6, burn_in=2, train_size=8
    )
    train, _ = load_data(config)
    with pytest.raises(ConfigError, match="boxcar"):
        build(config, train)


def test_fused_refuses_inputs_and_labels_it_would_misread():
    x, y = _data()
    bsnn, rule = _model(x)
    fused = FusedOnline(bsnn, rule.optim, rule.loss)
    with pytest.raises(ValueError, match="input features"):
        fused.sequence(x[..., :10], y, 0.1)
    with pytest.raises(ValueError, match="labels in"):
        fused.sequence(x, y + 2, 0.1)
