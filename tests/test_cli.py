import json
import subprocess
import sys

import pytest

from bisnn_pyro.cli import main

TINY = ["--epochs", "1", "--hidden", "16", "--quiet"]


def run_cli(capsys, *argv):
    try:
        code = main(list(argv))
    except SystemExit as exit_:
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "bayes"
    assert main(["train", "--out", str(out), *TINY]) == 0
    return out


def test_train_writes_a_run_folder_and_a_summary(trained_run):
    assert {p.name for p in trained_run.iterdir()} >= {"config.json", "checkpoint.pt", "metrics.jsonl"}
    lines = (trained_run / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["epoch"] == 1
    assert json.loads((trained_run / "config.json").read_text())["training"]["rule"] == "bayes"


def test_evaluate_json(trained_run, capsys):
    code, out, _ = run_cli(capsys, "evaluate", str(trained_run), "--json", "--samples", "3")
    assert code == 0
    scores = json.loads(out)
    assert {"accuracy", "nll", "brier", "ece", "mode", "samples", "n"} <= scores.keys()
    assert scores["mode"] == "ensemble" and scores["samples"] == 3 and scores["n"] == 1000
    assert scores["engine"] == "packed"  # what "auto" chose: a Bayes-BiSNN run on the CPU
    assert 0 <= scores["accuracy"] <= 1 and scores["nll"] > 0
    code, out, _ = run_cli(capsys, "evaluate", str(trained_run), "--mode", "map", "--json")
    assert json.loads(out)["samples"] == 1


def test_prediction_draws_fills_in_the_runs_defaults_and_refuses_what_it_cannot_mean(trained_run):
    from bisnn_pyro.config.options import ConfigError
    from bisnn_pyro.experiment import open_run

    run = open_run(trained_run)
    assert run.prediction_draws() == ("ensemble", 10) == run.prediction_draws("ensemble")
    assert run.prediction_draws(samples=3) == ("ensemble", 3)
    assert run.prediction_draws("map") == ("map", 1) and run.prediction_draws("mean") == ("mean", 1)
    for mode, samples, message in [("mean", 2, "samples=2 counts an ensemble's draws, but mode 'mean'"),
                                   ("median", None, "unknown prediction mode 'median'"),
                                   ("ensemble", 0, "K must be >= 1, got 0")]:
        with pytest.raises(ConfigError, match=message):
            run.prediction_draws(mode, samples)


def test_evaluate_scores_the_runs_own_predictor_by_default(trained_run, tmp_path, capsys):
    """A Bayesian run's default is its ensemble of the run's K; a point-estimate guide's (ST-BiSNN,
    full precision) is its MAP, and an ensemble of it (K copies of one network) is refused in
    evaluate, cost and export alike; --samples alone asks for an ensemble."""
    scores = json.loads(run_cli(capsys, "evaluate", str(trained_run), "--json")[1])
    assert (scores["mode"], scores["samples"]) == ("ensemble", 10)
    ste = tmp_path / "ste"
    assert main(["train", "--out", str(ste), "--rule", "ste", "--train-size", "100", "--test-size", "40", *TINY]) == 0
    capsys.readouterr()
    _, out, err = run_cli(capsys, "evaluate", str(ste), "--json")
    scores = json.loads(out)
    assert (scores["mode"], scores["samples"]) == ("map", 1)
    at_chance = abs(scores["accuracy"] - 0.5) <= 2 * (0.25 / scores["n"]) ** 0.5 or scores["accuracy"] < 0.5
    assert ("warning: map accuracy" in err and "no better than chance" in err) == at_chance, (scores, err)
    point_estimate = "the straight-through guide is a point estimate, so its draws are all one network"
    for argv in (["evaluate", "--mode", "ensemble"], ["evaluate", "--samples", "3"], ["cost", "--samples", "3"],
                 ["export", "--samples", "3", "--out", str(tmp_path / "p.npz")],
                 ["export", "--mode", "ensemble", "--out", str(tmp_path / "p.npz")]):
        code, out, err = run_cli(capsys, argv[0], str(ste), *argv[1:])
        assert code == 2 and out == "" and point_estimate in err and err.count("\n") == 1, argv
    assert not (tmp_path / "p.npz").exists()


def test_existing_run_is_not_overwritten(trained_run, capsys):
    before = (trained_run / "checkpoint.pt").read_bytes()
    code, _, err = run_cli(capsys, "train", "--out", str(trained_run), *TINY)
    assert code == 2 and "--resume" in err
    assert (trained_run / "checkpoint.pt").read_bytes() == before


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--temperature", "0"], "guide.temperature must be a number in [0.01, 100]"),
        (["train", "--temperature", "-1"], "guide.temperature must be a number in [0.01, 100]"),
        (["train", "--prior-p", "1.0"], "prior.p must be a number in [1e-06, 0.999999]"),
        (["train", "--prior-p", "0"], "prior.p must be a number in [1e-06, 0.999999]"),
        (["train", "--samples", "0"], "training.samples must be an integer >= 1"),
        (["train", "--epochs", "0"], "training.epochs must be an integer >= 1"),
        (["train", "--lr", "-0.1"], "optim.lr must be a finite number > 0"),
        (["train", "--particles", "0"], "training.particles must be an integer >= 1"),
        (["train", "--engine", "direct", "--rule", "fp"], "training.engine 'direct': the direct engine cannot"),
        (["train", "--device", "tpu"], "unknown device"),
        (["train", "--dense", "64"], "an mlp takes model.hidden"),
        (["train", "--kernel-size", "5"], "an mlp takes model.hidden"),
        (
            ["train", "--model", "conv", "--dataset", "digits-dvs", "--kernel-size", "4"],
            "model.kernel_size must be an odd integer >= 1",
        ),
        (
            ["train", "--model", "conv", "--dataset", "digits-dvs", "--dense", "0"],
            "model.dense must be an integer >= 1",
        ),
        # options a rule does not use, and parts that cannot train together
        (
            ["train", "--rule", "ste", "--temperature", "0.7"],
            "guide.temperature: guide 'straight-through' has no option",
        ),
        (["train", "--rule", "fp", "--prior-p", "0.3"], "prior.p: prior 'gaussian' has no option 'p'"),
        (["train", "--rule", "bayes-adam", "--momentum", "0.9"], "optim.momentum: optim 'adam' has no option"),
        (["train", "--rule", "bayes", "--prior-scale", "2"], "prior.scale: prior 'binary' has no option"),
        (["train", "--likelihood", "last-readout"], "under local learning (DECOLLE) the other layers would learn"),
        (
            ["train", "--likelihood", "last-readout", "--learning", "end-to-end", "--schedule", "online"],
            "scores whole sequences; use the sequence schedule",
        ),
        (["train", "--engine", "direct", "--rule", "bayes-sf"], "no form of TraceGraph_ELBO"),
        (["train", "--engine", "fused", "--rule", "ste", "--schedule", "online"], "training.engine 'fused': the fused"),
    ],
)
def test_bad_values_give_one_line_and_status_2(tmp_path, capsys, argv, message):
    code, _, err = run_cli(capsys, *argv, "--out", str(tmp_path / "run"))
    assert code == 2
    assert err.strip().count("\n") == 0 and message in err
    assert not (tmp_path / "run").exists()


def test_config_records_only_the_options_that_took_effect(tmp_path, capsys):
    out = tmp_path / "ste"
    assert run_cli(capsys, "train", "--rule", "ste", "--prior-p", "0.7", "--out", str(out), *TINY)[0] == 0
    config = json.loads((out / "config.json").read_text())
    assert config["prior"] == {"name": "binary", "p": 0.7}
    assert config["guide"] == {"name": "straight-through", "init_scale": 0.1}  # no temperature
    assert config["optim"] == {"name": "adam", "lr": 1e-3} and config["likelihood"]["name"] == "decolle"


def test_last_readout_likelihood_trains_end_to_end(tmp_path, capsys):
    out = tmp_path / "last"
    argv = ["train", "--likelihood", "last-readout", "--learning", "end-to-end", "--out", str(out), *TINY]
    code, printed, _ = run_cli(capsys, *argv)
    assert code == 0 and "accuracy" in printed
    assert json.loads((out / "config.json").read_text())["likelihood"] == {"name": "last-readout"}


@pytest.mark.parametrize("flag, value", [("--rule", "bogus"), ("--dataset", "imagenet")])
def test_unknown_choices_are_rejected(tmp_path, capsys, flag, value):
    code, _, err = run_cli(capsys, "train", flag, value, "--out", str(tmp_path))
    assert code == 2 and "unknown value" in err and value in err and err.count("\n") == 1


def test_evaluate_without_checkpoint(tmp_path, capsys):
    code, _, err = run_cli(capsys, "evaluate", str(tmp_path))
    assert code == 2 and "no checkpoint" in err and err.strip().count("\n") == 0


def test_evaluate_bad_samples(trained_run, capsys):
    code, _, err = run_cli(capsys, "evaluate", str(trained_run), "--samples", "0")
    assert code == 2 and "argument --samples: expected a whole number >= 1, got 0" in err


def test_corrupted_checkpoint(trained_run, tmp_path, capsys):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((trained_run / "config.json").read_text())
    data = (trained_run / "checkpoint.pt").read_bytes()
    (broken / "checkpoint.pt").write_bytes(data[: len(data) // 2])
    code, _, err = run_cli(capsys, "evaluate", str(broken))
    assert code == 2 and "corrupted checkpoint" in err and err.strip().count("\n") == 0
    (broken / "checkpoint.pt").write_bytes(b"not a checkpoint at all")
    code, _, err = run_cli(capsys, "evaluate", str(broken))
    assert code == 2 and "checkpoint" in err


def test_module_entry_point():
    result = subprocess.run([sys.executable, "-m", "bisnn_pyro", "train", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "--kl-weight" in result.stdout


def test_a_reader_that_stops_early_gets_no_error():
    """`bisnn-pyro parts | head -1`: a closed pipe ends the command quietly, with SIGPIPE's status
    (here the reader has gone before the first line, so every write meets the closed pipe)."""
    import os
    import subprocess
    import sys

    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "bisnn_pyro", "parts"], stdout=write_end, stderr=subprocess.PIPE, timeout=120
        )
    finally:
        os.close(write_end)
    assert done.returncode == 141
    assert done.stderr == b""


def test_a_broken_pipe_elsewhere_is_an_error(monkeypatch, capsys):
    """A pipe that is not the output's (a worker's, a socket) breaking is said in one line."""
    from bisnn_pyro import cli

    def broken(args, extra):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(cli, "_run", broken)
    assert cli.main(["parts"]) == 2
    assert capsys.readouterr().err == "bisnn-pyro: error: cannot use: Broken pipe\n"
