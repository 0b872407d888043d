import json
import math
import warnings

import arviz as az
import pytest
import torch

from bisnn_pyro.analysis.curves import anytime_curve, anytime_probs, ensemble_size_curve
from bisnn_pyro.analysis.inference_data import to_inference_data
from bisnn_pyro.analysis.metrics import accuracy
from bisnn_pyro.analysis.posterior import layer_diagnostics, posterior_diagnostics
from bisnn_pyro.cli import main
from bisnn_pyro.experiment import ExperimentConfig, create_run
from bisnn_pyro.models import SignBernoulli

SMALL = dict(hidden=[24, 16], steps=30, burn_in=5, test_size=120, train_size=100, epochs=2)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    made = {}
    for rule in ("bayes", "ste", "fp"):
        run = create_run(ExperimentConfig(rule=rule, **SMALL), root / rule)
        run.fit(progress=False)
        made[rule] = run
    return made


def test_inference_data_groups_dims_and_netcdf_roundtrip(runs, tmp_path):
    run = runs["bayes"]
    idata = to_inference_data(run.bsnn, run.test.x, run.test.y, samples=6, attrs={"config": run.config.to_dict()})
    assert set(idata.groups()) >= {
        "posterior",
        "posterior_predictive",
        "log_likelihood",
        "observed_data",
        "variational_parameters",
    }
    post = idata.posterior
    assert post["w_layers_0"].dims == ("chain", "draw", "w_layers_0_out", "w_layers_0_in")
    assert post["w_layers_1"].shape == (1, 6, 16, 24)
    assert set(torch.as_tensor(post["w_layers_1"].values).unique().tolist()) == {-1.0, 1.0}
    assert post["frac_plus_layers_0"].shape == (1, 6)
    assert idata.posterior_predictive["probs"].shape == (1, 6, 120, 2)
    assert idata.log_likelihood["y"].shape == (1, 6, 120)
    assert idata.observed_data["y"].shape == (120,)
    p_plus = torch.as_tensor(idata.variational_parameters["p_plus_layers_0"].values)
    lam = run.bsnn.guide.natural()["layers.0.weight"].detach().double()
    torch.testing.assert_close(p_plus, torch.sigmoid(2 * lam))
    # log-likelihood is the log of the probability given to the observed label
    probs = torch.as_tensor(idata.posterior_predictive["probs"].values[0])
    picked = probs.gather(-1, run.test.y.view(1, -1, 1).expand(6, -1, 1)).squeeze(-1)
    torch.testing.assert_close(torch.as_tensor(idata.log_likelihood["y"].values[0]), picked.log())
    path = tmp_path / "idata.nc"
    idata.to_netcdf(str(path))
    again = az.from_netcdf(str(path))
    assert json.loads(again.posterior.attrs["config"])["training"]["rule"] == "bayes"
    assert (again.posterior["w_layers_1"].values == post["w_layers_1"].values).all()
    assert "frac_plus_layers_0" in az.summary(again, var_names=["frac_plus_layers_0"]).index


def test_var_names_select_layers(runs):
    run = runs["bayes"]
    idata = to_inference_data(run.bsnn, run.test.x[:20], run.test.y[:20], samples=3, var_names=["w_layers_1"])
    assert "w_layers_0" not in idata.posterior and "w_layers_1" in idata.posterior
    assert "frac_plus_layers_0" in idata.posterior


def test_loo_and_compare_rank_rules(runs):
    idatas = {rule: to_inference_data(r.bsnn, r.test.x, r.test.y, samples=5) for rule, r in runs.items()}
    with warnings.catch_warnings():  # few draws: ArviZ warns about Pareto k
        warnings.simplefilter("ignore")
        loo = az.loo(idatas["bayes"])
        compared = az.compare(idatas)
    assert loo.n_data_points == 120
    assert set(compared.index) == {"bayes", "ste", "fp"}
    assert compared["rank"].tolist() == sorted(compared["rank"].tolist())


def test_posterior_diagnostics(runs):
    diagnostics = posterior_diagnostics(runs["bayes"].bsnn)
    assert set(diagnostics) == {"layers.0.weight", "layers.1.weight"}
    layer = diagnostics["layers.1.weight"]
    assert layer["weights"] == 16 * 24 and sum(layer["p_plus_hist"]) == 16 * 24
    assert 0 <= layer["decided"] <= 1 and layer["kl_to_prior"] >= 0
    ste = posterior_diagnostics(runs["ste"].bsnn)["layers.0.weight"]
    assert ste["decided"] == 1.0 and ste["kl_to_prior"] == pytest.approx(
        24 * 20 * torch.log(torch.tensor(2.0)).item(), rel=1e-4
    )
    assert posterior_diagnostics(runs["fp"].bsnn) == {}
    record = json.loads((runs["bayes"].directory / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["posterior"]["layers.0.weight"]["weights"] == 24 * 20


def test_layer_diagnostics_known_values():
    q = SignBernoulli(torch.tensor([0.0, 10.0, -10.0, 0.0]))
    stats = layer_diagnostics(q, SignBernoulli(torch.zeros(4)), bins=4)
    assert stats["decided"] == 0.5 and stats["mean_p_plus"] == pytest.approx(0.5)
    assert stats["kl_to_prior"] == pytest.approx(2 * torch.log(torch.tensor(2.0)).item(), rel=1e-4)
    assert stats["p_plus_hist"] == [1, 0, 2, 1]  # 0.5 falls in the upper half


def test_curves_end_at_the_full_prediction(runs):
    run = runs["bayes"]
    readouts = run.bsnn.predictive_readouts(run.test.x, "ensemble", 4)
    probs = run.bsnn.likelihood.probs(readouts)
    per_step = anytime_probs(readouts, run.bsnn.likelihood.burn_in)
    assert per_step.shape == (30 - 5, 4, 120, 2)
    torch.testing.assert_close(per_step[-1], probs)
    curve = anytime_curve(readouts, run.test.y, run.bsnn.likelihood.burn_in)
    assert curve["step"][-1] == 30 and curve["accuracy"][-1] == accuracy(probs.mean(0), run.test.y)
    sizes = ensemble_size_curve(probs, run.test.y)
    assert sizes["samples"] == [1, 2, 3, 4]
    assert sizes["accuracy"][0] == accuracy(probs[0], run.test.y)


def test_report_command(runs, tmp_path, capsys):
    out = tmp_path / "report"
    dirs = [str(runs[r].directory) for r in ("bayes", "ste", "fp")]
    assert main(["report", *dirs, "--out", str(out), "--samples", "4", "--grid", "12", "--quiet"]) == 0
    text = (out / "report.md").read_text()
    for rule in ("bayes", "ste", "fp"):
        assert f"| {rule} | {rule} | map |" in text
        assert (out / rule / "inference_data.nc").exists() and (out / rule / "reliability.png").exists()
    assert "| bayes | bayes | ensemble |" in text and "## Held-out elpd, paired on the test points" in text
    in_sample = text.split("## PSIS-LOO and WAIC on the training points")[1]
    assert "| bayes |" in in_sample and "| ste |" not in in_sample and "| fp |" not in in_sample  # posteriors only
    for figure in ("uncertainty", "ensemble_size", "anytime", "posterior"):
        assert (out / "bayes" / f"{figure}.png").exists()
    assert not (out / "ste" / "posterior.png").exists() and not (out / "fp" / "posterior.png").exists()
    assert (out / "comparison.png").read_bytes()[:4] == b"\x89PNG"
    facts = json.loads((out / "report.json").read_text())["facts"]["bayes"]
    assert facts["mi_near_data"] >= 0 and 0 <= facts["ood_auroc_mi"] <= 1
    criteria = facts["in_sample"]
    assert criteria["k_good"] + criteria["k_bad"] + criteria["k_very_bad"] == len(runs["bayes"].train.y)
    code = main(["report", dirs[0], "--samples", "1", "--out", str(out)])
    assert code == 2 and "K >= 2" in capsys.readouterr().err


def test_held_out_elpd_and_its_standard_error_by_hand():
    """log p(y_i) is the log of the label's probability averaged over draws; the standard error of
    the sum is sqrt(n) times the standard deviation of the pointwise values."""
    from bisnn_pyro.analysis.metrics import pointwise_lpd, standard_error_of_sum

    draws = torch.tensor([[[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]], [[0.7, 0.3], [0.4, 0.6], [0.5, 0.5]]])
    labels = torch.tensor([0, 1, 0])
    expected = torch.log(torch.tensor([0.8, 0.7, 0.5], dtype=torch.float64))
    torch.testing.assert_close(pointwise_lpd(draws, labels), expected)
    assert standard_error_of_sum(expected) == pytest.approx(math.sqrt(3) * float(expected.std()))


def test_the_ensemble_size_band_over_draw_orders():
    """At k = K every order gives the whole ensemble (the band closes on it); at k = 1 the band
    spans the single draws' accuracies."""
    generator = torch.Generator().manual_seed(1)
    probs = torch.softmax(torch.randn(8, 200, 3, generator=generator) * 2, -1)
    labels = torch.randint(3, (200,), generator=generator)
    curve = ensemble_size_curve(probs, labels, orders=40, seed=3)
    assert curve["accuracy_low"][-1] == pytest.approx(curve["accuracy"][-1])
    assert curve["accuracy_high"][-1] == pytest.approx(curve["accuracy"][-1])
    singles = sorted(accuracy(p, labels) for p in probs)
    assert singles[0] <= curve["accuracy_low"][0] <= curve["accuracy_high"][0] <= singles[-1]
    assert curve["accuracy_low"][0] < curve["accuracy_high"][0]
    assert all(low <= high for low, high in zip(curve["ece_low"], curve["ece_high"]))
    assert ensemble_size_curve(probs, labels, orders=40, seed=3) == curve  # its own seeded generator


def test_repeated_run_folder_names_are_told_apart_by_their_parent(tmp_path):
    from bisnn_pyro.report import run_names

    folders = [tmp_path / "bayes" / "seed-0", tmp_path / "ste" / "seed-0", tmp_path / "fp"]
    assert run_names(folders) == ["bayes-seed-0", "ste-seed-0", "fp"]
    assert run_names([tmp_path / "a", tmp_path / "a"]) == [f"{tmp_path.name}-a-0", f"{tmp_path.name}-a-1"]


def test_standard_errors_over_the_test_points():
    from bisnn_pyro.analysis.metrics import prediction_scores
    from bisnn_pyro.report import standard_errors

    generator = torch.Generator().manual_seed(2)
    draws = torch.softmax(torch.randn(5, 400, 2, generator=generator), -1)
    labels = torch.randint(2, (400,), generator=generator)
    scores = prediction_scores(draws, labels)
    errors = standard_errors(draws.mean(0), labels, scores)
    assert errors["accuracy_se"] == pytest.approx(math.sqrt(scores["accuracy"] * (1 - scores["accuracy"]) / 400))
    nll_points = -torch.log(draws.mean(0).double().gather(1, labels.view(-1, 1)).squeeze(1))
    assert errors["nll_se"] == pytest.approx(nll_points.std().item() / math.sqrt(400))
    assert 0 < errors["ece_se"] < 0.1


def test_in_sample_waic_and_loo_against_their_definitions():
    """WAIC by hand: elpd_waic = sum_i log mean_k p_ik - sum_i var_k log p_ik (ArviZ takes the
    variance over draws with ddof 0); p_loo is lppd - elpd_loo."""
    from bisnn_pyro.report import in_sample_criteria

    generator = torch.Generator().manual_seed(4)
    draws = torch.softmax(torch.randn(30, 80, 2, generator=generator), -1)
    labels = torch.randint(2, (80,), generator=generator)
    log_p = torch.log(draws.double().gather(-1, labels.view(1, -1, 1).expand(30, -1, 1)).squeeze(-1))
    lppd = torch.logsumexp(log_p, 0).sub(math.log(30)).sum().item()
    p_waic = log_p.var(0, correction=0).sum().item()
    with pytest.warns(UserWarning):  # 30 random draws: ArviZ warns of its k-hat and WAIC, and it reaches us
        criteria = in_sample_criteria(draws, labels)
    assert criteria["elpd_waic"] == pytest.approx(lppd - p_waic) and criteria["p_waic"] == pytest.approx(p_waic)
    assert criteria["p_loo"] == pytest.approx(lppd - criteria["elpd_loo"]) and criteria["waic_warning"]
    assert criteria["k_good"] + criteria["k_bad"] + criteria["k_very_bad"] == 80
