"""The benchmark's plain-PyTorch loop computes what the Pyro path computes, so its ratio is fair;
the old-against-new comparison loads both versions."""

import importlib.util
from pathlib import Path

import pyro
import pytest
import torch

from bisnn_pyro.experiment import ExperimentConfig, build, load_data

spec = importlib.util.spec_from_file_location("bench", Path(__file__).parents[1] / "benchmarks" / "run.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)
compare_spec = importlib.util.spec_from_file_location(
    "compare", Path(__file__).parents[1] / "benchmarks" / "compare.py"
)
compare = importlib.util.module_from_spec(compare_spec)
compare_spec.loader.exec_module(compare)


def test_plain_torch_step_matches_one_svi_step():
    config = ExperimentConfig(hidden=[12, 10], steps=15, burn_in=3, train_size=20, test_size=4, kl_weight=0.5)
    train, _ = load_data(config)
    bsnn, trainer = build(config, train)
    bsnn.train()
    x, y = train.x[:6], train.y[:6]
    lams = {name: lam.detach().clone().requires_grad_() for name, lam in bsnn.guide.natural().items()}
    prior = {name: p.base_dist.natural for name, p in bsnn.prior_distributions().items()}
    lr = trainer.optim.pt_optim_args["lr"]
    pyro.set_rng_seed(11)
    plain_loss = bench.plain_torch_step(bsnn, lams, prior, x, y, lr, config.guide["temperature"], config.kl_weight)
    pyro.set_rng_seed(11)
    pyro_loss = trainer.svi.step(x, y)
    assert abs(plain_loss - pyro_loss) <= 1e-4 * abs(pyro_loss)
    for name, lam in bsnn.guide.natural().items():
        torch.testing.assert_close(lams[name].detach(), lam.detach(), rtol=1e-5, atol=1e-6)


def test_compare_extracts_a_revision_as_a_second_importable_package(tmp_path, monkeypatch):
    """benchmarks/compare.py times old against new code in one process: the old package must load
    beside the installed one, under its own name."""
    compare.extract_baseline("HEAD", tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    baseline = importlib.import_module(f"{compare.BASELINE}.models.distributions")
    import bisnn_pyro.models.distributions as current

    assert baseline is not current and Path(baseline.__file__).is_relative_to(tmp_path)
    assert baseline.log_two_cosh(torch.tensor(0.0)) == current.log_two_cosh(torch.tensor(0.0))
    with pytest.raises(SystemExit, match="no-such-revision"):
        compare.extract_baseline("no-such-revision", tmp_path / "other")


def test_compare_builds_each_workload_with_the_named_package(tmp_path):
    """Each workload is a callable on the default run; the ensemble returns the readouts of the ten
    shared draws over the whole test set."""
    work = compare.workloads(("bisnn_pyro",), "ensemble", tmp_path)
    readouts = work["bisnn_pyro"]()
    assert readouts.shape == (10, 1000, 2, 100, 2)
    sequence = compare.workloads(("bisnn_pyro",), "sequence", tmp_path / "sequence")
    assert isinstance(sequence["bisnn_pyro"](), float)
