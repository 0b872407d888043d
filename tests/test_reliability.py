"""No silent failure and no surprises: gradients that are not finite stop training naming the
parameter, divergence is explained from the values at hand, a run that did not learn is warned
about, and the library leaves the caller's generators as they were."""

import random
import subprocess
import sys

import numpy as np
import pytest
import torch

from bisnn_pyro.analysis.health import chance_warnings, loss_warnings
from bisnn_pyro.cli import main
from bisnn_pyro.errors import TrainingDiverged
from bisnn_pyro.experiment import ExperimentConfig, build, create_run, load_data, open_run
from bisnn_pyro.inference.optim import BayesianLearningRule, bind_optimizer
from bisnn_pyro.inference.random_stream import RandomStream

TINY = dict(hidden=[12], steps=20, burn_in=4, train_size=40, test_size=40, samples=3)


def cli(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_the_learning_rule_stops_on_a_gradient_that_is_not_finite_naming_it():
    config = ExperimentConfig(**TINY)
    bsnn, trainer = build(config, load_data(config)[0])
    name = "guide.params.layers.0.weight.natural"
    param = dict(bsnn.named_parameters())[name]
    param.grad = torch.zeros_like(param)
    param.grad[0, 0] = float("nan")
    optim = BayesianLearningRule({"lr": 1e-3})
    bind_optimizer(optim, bsnn)
    with pytest.raises(TrainingDiverged, match=f"the gradient of {name} is not finite"):
        optim([param])


def test_the_fused_engine_stops_where_a_gradient_would_not_be_finite(monkeypatch):
    """Its kernels' gradients are non-finite only through a non-finite likelihood or KL coefficient,
    which stop training naming the layer or the coefficient."""
    config = ExperimentConfig(**TINY, schedule="online", engine="fused")
    bsnn, trainer = build(config, load_data(config)[0])
    bsnn.kl_weight = 1e40  # divided among the 16 steps: still past float32's range
    with pytest.raises(TrainingDiverged, match="the KL coefficient .* overflows float32"):
        trainer.run_epoch()
    bsnn.kl_weight = 1.0
    kernels = trainer.fused.kernels
    monkeypatch.setattr(trainer.fused, "kernels", type("Kernels", (), {
        name: staticmethod(getattr(kernels, name)) for name in dir(kernels) if not name.startswith("__")
    }))
    trainer.fused.kernels.readout_loss = staticmethod(lambda *args: float("nan"))
    with pytest.raises(TrainingDiverged, match="natural parameters of layers.0.weight is not finite at step 4"):
        trainer.run_epoch()


@pytest.mark.parametrize(
    "argv, cause",
    [
        (["--kl-weight", "1e39"], "at the initial parameters: the KL weight 1e+39 scales the KL past float32's range"),
        (["--kl-weight", "1e39", "--rule", "bayes-adam"], "the KL weight 1e+39"),
        (["--rule", "fp", "--lr", "1e30", "--epochs", "3"], "stepped to non-finite values; lower the learning rate"),
    ],
)
def test_divergence_names_its_likely_cause(tmp_path, capsys, argv, cause):
    flags = ["--hidden", "8", "--train-size", "20", "--test-size", "20", "--epochs", "1", "--quiet"]
    code, _, err = cli(capsys, "train", *flags, *argv, "--out", tmp_path / "run")
    assert code == 2 and cause in err and err.count("\n") == 1, err


def test_loss_and_chance_warnings():
    assert loss_warnings([5.0, 4.0, 6.0]) and "rose from 5 (epoch 1) to 6" in loss_warnings([5.0, 4.0, 6.0])[0]
    assert "rose in each of the last 3 epochs" in loss_warnings([9.0, 1.0, 2.0, 3.0, 4.0])[0]
    assert loss_warnings([9.0, 5.0, 4.0, 4.5]) == [] and loss_warnings([1.0, 2.0]) == []
    # the default two-moons run's last epochs: three rises within the epoch-to-epoch noise say nothing
    noisy = [3005, 2846, 2771, 2931, 3231, 2579, 2669, 2901, 2739, 2694, 2436, 2679, 2570, 2483, 2671, 2461, 2563,
             2634, 2678, 2715]
    assert loss_warnings(noisy) == []
    assert "rose in each" in loss_warnings(noisy[:-3] + [2650.0, 2850.0, 2990.0])[0]
    assert chance_warnings(0.55, 2, 100)  # within two standard errors (0.1) of 0.5
    assert chance_warnings(0.1, 2, 100)  # below chance is no better
    assert chance_warnings(0.75, 2, 100) == [] and chance_warnings(0.25, 10, 1000) == []


def test_a_run_that_did_not_learn_is_warned_about_in_its_summary(tmp_path, capsys):
    flags = ["--hidden", "8", "--train-size", "40", "--test-size", "200", "--epochs", "3", "--quiet"]
    code, out, err = cli(capsys, "train", *flags, "--kl-weight", "1e6", "--out", tmp_path / "run")
    assert code == 0 and "bisnn-pyro: warning:" in err and "no better than chance" in err


def _global_states():
    return torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy()


def test_building_training_evaluating_and_reopening_leave_the_callers_generators_alone(tmp_path):
    torch.manual_seed(1234)
    random.seed(1234)
    np.random.seed(1234)
    before = _global_states()
    run = create_run(ExperimentConfig(**TINY, epochs=1), tmp_path / "run")
    run.fit(progress=False)
    first = run.evaluate("ensemble")
    run.close()
    again = open_run(tmp_path / "run")
    after = _global_states()
    assert torch.equal(before[0], after[0]) and before[1] == after[1] and np.array_equal(before[2], after[2])
    assert again.evaluate("ensemble") == first  # the checkpoint's stream: the same draws


def test_a_stream_runs_on_its_own_state_and_a_fork_leaves_it_in_place():
    stream = RandomStream(7)
    torch.manual_seed(0)
    with stream:
        a = torch.rand(3)
    outside = torch.rand(3)
    torch.manual_seed(0)
    assert torch.equal(outside, torch.rand(3))  # the caller's generator did not move
    with stream.forked():
        b = torch.rand(3)
    with stream:
        c = torch.rand(3)
    assert torch.equal(b, c) and not torch.equal(a, c)
    torch.manual_seed(7)
    assert torch.equal(a, torch.rand(3))


def runs_in_a_fresh_process(*lines: str) -> None:
    """The script ``lines`` runs in a new interpreter and ends by printing ok."""
    script = "\n".join([*lines, "print('ok')"])
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr


def test_the_fused_kernels_import_and_run_where_numba_cannot_write_its_cache():
    """A read-only installation: numba finds no place for its cache; the kernels compile in memory."""
    runs_in_a_fresh_process(
        "import numba.core.caching as caching",
        "caching.CacheImpl._locator_classes = []",
        "from bisnn_pyro.inference import fused_kernels as k",
        "import numpy as np",
        "assert 0.0 <= k.uniform32(np.uint64(1), np.uint64(2)) < 1.0",
    )


def test_importing_the_library_changes_no_pyro_setting_and_no_generator():
    runs_in_a_fresh_process(
        "import pyro, torch, random, numpy as np",
        "settings = {name: pyro.settings.get(name) for name in ('module_local_params', 'validate_poutine')}",
        "states = (torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy())",
        "import bisnn_pyro, bisnn_pyro.cli, bisnn_pyro.experiment",
        "assert settings == {name: pyro.settings.get(name) for name in settings}, 'a setting changed'",
        "assert torch.equal(states[0], torch.get_rng_state()) and states[1] == random.getstate()",
        "assert (states[2] == np.random.get_state()[1]).all()",
    )


def test_a_model_keeps_its_parameters_while_the_users_other_pyro_code_uses_the_global_store(tmp_path):
    """Pyro's default (global parameters) stays in force for the user's own code; the library's
    parameters stay in its modules."""
    import pyro

    assert not pyro.settings.get("module_local_params")
    run = create_run(ExperimentConfig(**TINY, epochs=1), tmp_path / "run")
    run.fit(progress=False)
    assert len(pyro.get_param_store()) == 0  # nothing of the model's leaked into the global store
    mine = pyro.param("my_scale", torch.tensor(2.0))
    assert pyro.get_param_store()["my_scale"] is mine.unconstrained() or float(pyro.param("my_scale")) == 2.0
    assert not pyro.settings.get("module_local_params")
    pyro.clear_param_store()
    run.close()
