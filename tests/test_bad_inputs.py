"""A table of bad inputs through the command line: each is refused with one line and exit
status 2, never a traceback, never accepted silently; and a run folder's config.json mutated
(wrong types, missing or extra keys) reopens or is refused the same way."""

import json

import pytest

from bisnn_pyro.cli import main

SMALL = ["--hidden", "8", "--steps", "20", "--burn-in", "4", "--train-size", "20", "--test-size", "20", "--quiet"]


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "good"
    assert main(["train", *SMALL, "--epochs", "1", "--out", str(out)]) == 0
    return out


def refused(capsys, argv) -> str:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit_:  # argparse
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("bisnn-pyro: error: ") and err.count("\n") == 1, err
    return err


@pytest.mark.parametrize(
    "argv, message",
    [
        # sizes that cannot fit: refused from the shapes, before anything is allocated
        (["--hidden", "100000", "100000"], "needs at least"),
        (["--batch-size", "1000000000000"], "needs at least"),
        (["--steps", "100000000"], "needs at least"),
        # values out of range, not finite, or where training cannot learn
        (["--seed", "-1"], "training.seed must be an integer in [0, 2**63)"),
        (["--seed", str(2**64)], "training.seed must be an integer in [0, 2**63)"),
        (["--data-seed", str(2**63)], "data.data_seed must be an integer in [0, 2**63)"),
        (["--samples", "1000000000"], "predicting 20 sequences with K=1,000,000,000 weight draws needs at least"),
        (["--temperature", "inf"], "guide.temperature must be a number in [0.01, 100]"),
        (["--temperature", "1e-30"], "guide.temperature must be a number in [0.01, 100]"),
        (["--lr", "inf"], "optim.lr must be a finite number > 0"),
        (["--lr", "nan"], "optim.lr must be a finite number > 0"),
        (["--prior-p", "1e-320"], "prior.p must be a number in [1e-06, 0.999999]"),
        (["--kl-weight", "-1"], "training.kl_weight must be a finite number >= 0"),
        (["--epochs", "1.5"], "training.epochs must be an integer"),
        (["--hidden", "8", "-1"], "model.hidden must be an integer >= 1"),
        (["--device", "tpu"], "training.device: unknown device 'tpu'"),
        # options the data set does not use
        (["--step-ms", "5"], "data.step_ms: two-moons does not use it"),
        (["--downsample", "2"], "data.downsample: two-moons does not use it"),
        (["--dataset", "digits-dvs", "--train-size", "50"], "data.train_size: digits-dvs does not use it"),
    ],
)
def test_bad_training_options(tmp_path, capsys, argv, message):
    err = refused(capsys, ["train", *SMALL, "--epochs", "1", *argv, "--out", tmp_path / "run"])
    assert message in err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--dataset", "n-mnist"], "n-mnist is read from files: pass --data-dir"),
        (["--dataset", "dvs-gesture", "--data-dir", "/nonexistent"], "/nonexistent"),
        (["--dataset", "mnist-dvs", "--data-dir", "/nonexistent"], "/nonexistent"),
    ],
)
def test_data_that_is_not_there(tmp_path, capsys, argv, message):
    assert message in refused(capsys, ["train", "--hidden", "8", *argv, "--out", tmp_path / "run"])


def test_an_output_that_is_a_file_or_cannot_be_written(tmp_path, capsys):
    assert "--out needs the name of a run folder" in refused(capsys, ["train", *SMALL, "--out", ""])
    (tmp_path / "locked").mkdir()
    (tmp_path / "locked" / ".lock").mkdir()  # the lock cannot be made
    assert "cannot use" in refused(capsys, ["train", *SMALL, "--epochs", "1", "--out", tmp_path / "locked"])
    (tmp_path / "file").write_text("x")
    assert "cannot use" in refused(capsys, ["train", *SMALL, "--epochs", "1", "--out", tmp_path / "file"])
    assert "cannot use" in refused(capsys, ["train", *SMALL, "--epochs", "1", "--out", "/proc/no/such/run"])


@pytest.mark.parametrize(
    "argv, message",
    [
        (["evaluate", "{run}", "--samples", "0"], "argument --samples: expected a whole number >= 1, got 0"),
        (["evaluate", "{run}", "--samples", "10000000"], "needs at least"),
        (["evaluate", "{run}", "--samples", "three"], "argument --samples: expected a whole number >= 1, got 'three'"),
        (["evaluate", "{run}", "--mode", "map", "--samples", "3"], "mode 'map' predicts with one network"),
        (["cost", "/no/such/run", "--mode", "map", "--samples", "3"], "mode 'map' predicts"),  # before reading it
        (["evaluate", "{run}/config.json"], "is a file; expected a run folder"),
        (["export", "{run}", "--samples", "0", "--out", "{tmp}/p.npz"], "argument --samples: expected a whole number"),
        (["study", "run", "{tmp}/s.toml", "--out", "{tmp}/o", "--workers", "0"], "argument --workers: expected"),
        (["evaluate", "{run}", "--mode", "median"], "invalid choice"),
        (["evaluate", "{run}", "--device", "cuda:7"], "device 'cuda:7'"),
        (["evaluate", "/no/such/run"], "no checkpoint at /no/such/run"),
        (["report", "{run}", "--samples", "1"], "K >= 2"),
        (["report", "{run}", "--samples", "10000000", "--out", "{tmp}/r"], "needs at least"),
        (["report", "{run}", "--grid", "100000", "--out", "{tmp}/r"], "needs at least"),
        (["train", "--resume", "--epochs", "-7", "--out", "{run}"], "training.epochs must be an integer >= 1"),
        (["train", "--resume", "--epochs", "0", "--out", "{run}"], "training.epochs must be an integer >= 1"),
        (["train", *SMALL, "--epochs", "1", "--out", "{run}"], "already holds a run"),
    ],
)
def test_bad_uses_of_a_run_folder(tmp_path, capsys, run_folder, argv, message):
    argv = [a.format(run=run_folder, tmp=tmp_path) for a in argv]
    assert message in refused(capsys, argv)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda c: c["training"].update(batch_size="40"), "training.batch_size must be an integer, got '40'"),
        (lambda c: c["training"].update(batch_size=40.5), "training.batch_size must be an integer, got 40.5"),
        (lambda c: c["model"].update(hidden="8"), "model.hidden must be a list of int"),
        (lambda c: c["training"].update(rule=None), "training.rule needs a value"),
        (lambda c: c["training"].update(extra=1), "training.extra: unknown option"),
        (lambda c: c.update(surplus={}), "unknown section 'surplus'"),
        (lambda c: c.update(prior=[]), "[prior] must be a table"),
        (lambda c: c["prior"].update(name="nope"), "prior.name: unknown prior 'nope'"),
        (lambda c: c["data"].update(steps=10**9), "needs at least"),
        (lambda c: c.clear(), "not a bisnn-pyro run folder"),
    ],
)
def test_a_mutated_config_json_is_refused_in_one_line(tmp_path, capsys, run_folder, mutate, message):
    folder = tmp_path / "copy"
    folder.mkdir()
    (folder / "checkpoint.pt").write_bytes((run_folder / "checkpoint.pt").read_bytes())
    config = json.loads((run_folder / "config.json").read_text())
    mutate(config)
    if config:
        (folder / "config.json").write_text(json.dumps(config))
    assert message in refused(capsys, ["evaluate", folder])


def test_missing_keys_of_a_config_json_take_their_defaults_and_a_different_run_is_refused(tmp_path, capsys, run_folder):
    """An option left out reads as its default: the same run where that is what it was, else the
    checkpoint is told to belong to another configuration."""
    folder = tmp_path / "copy"
    folder.mkdir()
    (folder / "checkpoint.pt").write_bytes((run_folder / "checkpoint.pt").read_bytes())
    config = json.loads((run_folder / "config.json").read_text())
    del config["training"]["kl_weight"]  # 1.0, the default
    (folder / "config.json").write_text(json.dumps(config))
    assert main(["evaluate", str(folder)]) == 0
    del config["data"]["train_size"]  # 20, not the default 200
    (folder / "config.json").write_text(json.dumps(config))
    capsys.readouterr()
    assert "belongs to another configuration" in refused(capsys, ["evaluate", folder])
