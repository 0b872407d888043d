"""Studies: the study file's arms and seeds, and the statistics that aggregate runs, checked on
hand-made values with known answers."""

import json
import math
import re
import textwrap

import numpy as np
import pytest

from bisnn_pyro.errors import ConfigError
from bisnn_pyro.studies import mean_interval, paired_difference, read_study, summarise

TWO_RULES = """
[[arms]]
name = "bayes"
set = { "training.rule" = "bayes" }
[[arms]]
name = "ste"
set = { "training.rule" = "ste" }
"""


def test_summary_of_known_values():
    summary = summarise([1.0, 2.0, 3.0, 4.0])
    assert summary.n == 4 and summary.mean == 2.5
    assert summary.sd == pytest.approx(math.sqrt(5 / 3))  # sample standard deviation, ddof 1
    half = 3.182446 * math.sqrt(5 / 3) / 2  # t_{0.975, 3} s / sqrt(n)
    assert (summary.low, summary.high) == (pytest.approx(2.5 - half), pytest.approx(2.5 + half))


def test_a_constant_has_a_point_interval_and_one_value_has_none():
    assert mean_interval([0.7] * 6) == (pytest.approx(0.7), pytest.approx(0.7))
    single = summarise([0.3])
    assert single.mean == 0.3 and math.isnan(single.sd) and math.isnan(single.low) and math.isnan(single.high)


def test_the_interval_by_hand():
    """Three values 1, 2, 3: mean 2, s = 1, t_{0.975, 2} = 4.302653: 2 +- 4.302653 / sqrt(3)."""
    low, high = mean_interval([1.0, 2.0, 3.0])
    assert (low, high) == (pytest.approx(2 - 4.302653 / math.sqrt(3)), pytest.approx(2 + 4.302653 / math.sqrt(3)))


@pytest.mark.parametrize("n", [3, 5, 10])
def test_the_interval_covers_the_mean_at_its_level_with_few_seeds(n):
    """Coverage over 4,000 samples of n normal values: 95 % within its Monte-Carlo error (the
    percentile bootstrap this replaced covered 76 % at n = 3)."""
    values = np.random.default_rng(n).normal(0.3, 2.0, (4000, n))
    covered = np.mean([low <= 0.3 <= high for low, high in map(mean_interval, values)])
    assert abs(covered - 0.95) < 4 * math.sqrt(0.95 * 0.05 / 4000)


def test_the_interval_covers_the_mean_of_skewed_values():
    """20 exponential values: near 95 % (the t-interval undercovers a little for skewed data)."""
    values = np.random.default_rng(5).exponential(1.0, (2000, 20))
    covered = np.mean([low <= 1.0 <= high for low, high in map(mean_interval, values)])
    assert 0.90 <= covered <= 0.97


def test_paired_differences_use_the_shared_seeds():
    bayes = {0: 0.02, 1: 0.03, 2: 0.01, 3: 0.05}
    ste = {0: 0.04, 1: 0.05, 2: 0.02, 4: 0.09}
    paired = paired_difference(bayes, ste)
    assert paired.seeds == (0, 1, 2) and paired.first_lower == 3
    assert paired.summary.mean == pytest.approx(-0.05 / 3)
    assert paired.summary.high < 0  # every shared seed favours the first arm
    with pytest.raises(ValueError, match="share no seed"):
        paired_difference({0: 1.0}, {1: 1.0})


def _study(tmp_path, text):
    path = tmp_path / "study.toml"
    path.write_text(textwrap.dedent(text))
    return read_study(path)


def test_arms_grid_zip_and_seeds_expand_to_runs(tmp_path):
    (tmp_path / "run.toml").write_text("[model]\nhidden = [8]\n[training]\nepochs = 2\n")
    study = _study(tmp_path, """
        seeds = 3
        base = "run.toml"
        [base_config.data]
        train_size = 40
        """ + TWO_RULES + """
        [grid]
        "training.kl_weight" = [0.5, 1.0]
        [zip]
        "data.steps" = [20, 40]
        "data.burn_in" = [2, 4]
    """)
    runs = study.runs()
    assert len(runs) == 2 * 2 * 2 * 3
    names = sorted({run.arm for run in runs})
    assert names[0] == "bayes-kl_weight=0.5-steps=20-burn_in=2" and len(names) == 8
    first = next(r for r in runs if r.arm == "ste-kl_weight=1.0-steps=40-burn_in=4" and r.seed == 2)
    config = first.config
    assert (config.label, config.kl_weight, config.steps, config.burn_in, config.seed) == ("ste", 1.0, 40, 4, 2)
    assert (config.hidden, config.epochs, config.train_size, config.data_seed) == ([8], 2, 40, 0)
    assert first.folder == "ste-kl_weight=1.0-steps=40-burn_in=4/seed-2"


def test_without_arms_a_study_is_its_base_over_the_seeds(tmp_path):
    runs = _study(tmp_path, "seeds = [3, 7]\n[base_config.model]\nhidden = [8]\n").runs()
    assert [(r.arm, r.seed, r.folder) for r in runs] == [("base", 3, "base/seed-3"), ("base", 7, "base/seed-7")]


@pytest.mark.parametrize(
    "text, message",
    [
        ("seeds = 0", "seeds must be a count >= 1 or a list of integers"),
        ("seeds = [1, 1]", "seeds repeat"),
        ("sedes = 3", "unknown key 'sedes'"),
        ("[[arms]]\nset = {}", "each [[arms]] needs a name"),
        ('[[arms]]\nname = "a"\n[[arms]]\nname = "a"', "arm names repeat"),
        ('[grid]\n"training.epochs" = 3', "grid.training.epochs must be a non-empty list"),
        ('[zip]\n"data.steps" = [1, 2]\n"data.burn_in" = [0]', "zip takes non-empty lists of one length"),
        (
            '[[arms]]\nname = "x"\nset = { "training.rule" = "nope" }',
            "arm 'x', seed 0: training.rule: unknown value 'nope'",
        ),
        ('[grid]\n"epochs" = [1, 2]', "expected SECTION.OPTION"),
        ('[[arms]]\nname = "a b"\n[[arms]]\nname = "a_b"', "arms 'a b' and 'a_b' would share the folder 'a_b'"),
        ('[grid]\n"training.kl_weight" = [0.5, 0.5]', "arm 'kl_weight=0.5' appears twice"),
        ('[[arms]]\nname = "tau"\nset = { "training.rule" = "ste", "guide.temperature" = 0.5 }',
         "arm 'tau', seed 0: guide.temperature: guide 'straight-through' has no option 'temperature'"),
    ],
)
def test_bad_study_files_give_one_line(tmp_path, text, message):
    with pytest.raises(ConfigError, match=None) as error:
        _study(tmp_path, text).runs()
    assert message in str(error.value) and "\n" not in str(error.value)


STUDY = """
seeds = 2
[base_config.model]
hidden = [8]
[base_config.data]
steps = 20
burn_in = 4
train_size = 40
test_size = 40
[base_config.training]
epochs = 2
samples = 3
""" + TWO_RULES


def test_a_study_runs_on_a_pool_resumes_and_reports(tmp_path, capsys):
    import csv
    import json

    from bisnn_pyro.cli import main

    (tmp_path / "study.toml").write_text(STUDY)
    out = tmp_path / "out"
    assert main(["study", "run", str(tmp_path / "study.toml"), "--out", str(out), "--workers", "2", "--quiet"]) == 0
    assert "4 run(s) trained" in capsys.readouterr().out
    finished = (out / "bayes" / "seed-1" / "scores.json").stat().st_mtime_ns
    # a run interrupted after its first epoch (its scores gone, its checkpoint at epoch 1) is resumed
    interrupted = out / "ste" / "seed-0"
    (interrupted / "scores.json").unlink()
    assert main(["study", "run", str(tmp_path / "study.toml"), "--out", str(out), "--workers", "1", "--quiet"]) == 0
    assert "0 run(s) trained, 1 scored again, 3 finished before, 0 failed" in capsys.readouterr().out
    assert (out / "bayes" / "seed-1" / "scores.json").stat().st_mtime_ns == finished  # not run again
    assert [json.loads(line)["epoch"] for line in (interrupted / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    assert main(["study", "report", str(out)]) == 0
    rows = list(csv.DictReader(open(out / "report" / "runs.csv")))
    assert sorted((r["arm"], r["seed"], r["mode"]) for r in rows) == [
        ("bayes", "0", "ensemble"), ("bayes", "0", "map"), ("bayes", "1", "ensemble"), ("bayes", "1", "map"),
        ("ste", "0", "map"), ("ste", "1", "map"),
    ]
    scores = json.loads((out / "ste" / "seed-1" / "scores.json").read_text())["modes"]["map"]
    row = next(r for r in rows if (r["arm"], r["seed"]) == ("ste", "1"))
    assert float(row["ece"]) == scores["ece"] and row["training.rule"] == "ste"
    assert {"metrics.png", "reliability.png"} <= {p.name for p in (out / "report").iterdir()}
    paired = list(csv.DictReader(open(out / "report" / "paired.csv")))
    assert {(p["first"], p["second"]) for p in paired} == {  # one arm's two modes; two arms' like modes and headlines
        ("bayes ensemble", "bayes map"), ("bayes ensemble", "ste map"), ("bayes map", "ste map")}


def test_a_failed_run_is_recorded_and_does_not_stop_the_others(tmp_path, capsys):
    from bisnn_pyro.cli import main

    (tmp_path / "study.toml").write_text(STUDY.replace('name = "ste"\nset = { "training.rule" = "ste" }',
                                                       'name = "huge"\nset = { "training.kl_weight" = 1e39 }'))
    code = main(
        ["study", "run", str(tmp_path / "study.toml"), "--out", str(tmp_path / "out"), "--workers", "2", "--quiet"]
    )
    captured = capsys.readouterr()
    assert code == 2 and "2 run(s) trained, 0 scored again, 0 finished before, 2 failed" in captured.out
    assert captured.err.count("the KL weight 1e+39") == 2 and "2 of 4 runs failed" in captured.err
    assert (tmp_path / "out" / "bayes" / "seed-0" / "scores.json").is_file()


def _write_scores(folder, modes):
    folder.mkdir(parents=True)
    scores = {"format": 2, "epochs": 1, "ensemble_sizes": [], "modes": modes}
    (folder / "scores.json").write_text(json.dumps(scores) + "\n")


def _scores(accuracy, ece, samples=1):
    keys = ("nll", "brier", "mce", "entropy", "mi", "elpd_test", "elpd_test_se")
    bins = {"count": [0.0, 10.0], "confidence_sum": [0.0, 9.0], "correct_sum": [0.0, 10 * accuracy]}
    return {"accuracy": accuracy, "ece": ece, **{key: 0.0 for key in keys}, "samples": samples, "reliability": bins}


def test_aggregation_of_hand_made_scores(tmp_path):
    """A study folder written by hand: arms a and b on one data set, c on another, three seeds."""
    import csv

    from bisnn_pyro.studies.report import write_study_report

    ece = {"a": [0.02, 0.04, 0.06], "b": [0.05, 0.05, 0.09], "c": [0.5, 0.5, 0.5]}
    listing = []
    for arm, values in ece.items():
        for seed, value in enumerate(values):
            folder = f"{arm}/seed-{seed}"
            data = {"dataset": "two-moons", "train_size": 40 if arm == "c" else 200}
            guide = {"temperature": {"a": 0.5, "b": 1.0}.get(arm)}
            config = {"data": data, "guide": guide, "training": {"seed": seed}}
            listing.append({"arm": arm, "seed": seed, "folder": folder, "config": config})
            modes = {"map": _scores(0.9, value + 0.01)}
            if arm == "a":
                modes["ensemble"] = _scores(0.8 + 0.01 * seed, value, samples=10)
            _write_scores(tmp_path / folder, modes)
    (tmp_path / "study.json").write_text(json.dumps({"ensemble_sizes": [], "runs": listing}))
    out = write_study_report(tmp_path, tmp_path / "report")

    summary = {(r["arm"], r["mode"], r["metric"]): r for r in csv.DictReader(open(out / "summary.csv"))}
    a = summary[("a", "ensemble", "ece")]
    assert float(a["mean"]) == pytest.approx(0.04) and float(a["sd"]) == pytest.approx(0.02) and a["n"] == "3"
    half = 4.302653 * 0.02 / math.sqrt(3)  # t_{0.975, 2} s / sqrt(n); below 0, cut to the ECE's range
    assert (float(a["low"]), float(a["high"])) == (0.0, pytest.approx(0.04 + half))
    assert float(summary[("a", "ensemble", "accuracy")]["mean"]) == pytest.approx(0.81)

    paired = {(r["first"], r["second"], r["metric"]): r for r in csv.DictReader(open(out / "paired.csv"))}
    # a's ensemble against b's MAP: both arms' headline predictors; per seed -0.04, -0.02, -0.04
    headline = paired[("a ensemble", "b map", "ece")]
    assert float(headline["mean_difference"]) == pytest.approx(-0.1 / 3) and headline["first_lower_in"] == "3"
    assert float(headline["high"]) < 0
    same_mode = paired[("a map", "b map", "ece")]
    assert float(same_mode["mean_difference"]) == pytest.approx(-0.07 / 3)  # -0.03, -0.01, -0.03
    within_arm = paired[("a ensemble", "a map", "ece")]
    assert float(within_arm["mean_difference"]) == pytest.approx(-0.01) and within_arm["first_lower_in"] == "3"
    assert not any("c " in first or "c " in second for first, second, _ in paired)  # c's data differ: no pairs
    assert "a ensemble | b map | 3 |" in (out / "paired.md").read_text()
    assert "| a | ensemble | 3 | 0.810 [" in (out / "summary.md").read_text()
    figures = {str(path.relative_to(out)) for path in out.rglob("*.png")}  # a and b differ in temperature alone
    assert figures == {
        "two-moons-1/metrics.png", "two-moons-1/reliability.png", "two-moons-1/against_guide.temperature.png",
        "two-moons-2/metrics.png", "two-moons-2/reliability.png",  # c's data differ: figures of their own
    }


TINY_STUDY = STUDY.replace("seeds = 2", "seeds = 2\nensemble_sizes = [1, 5]")


def test_ensemble_sizes_are_nested_draws_of_one_set(tmp_path):
    from bisnn_pyro.studies.runner import run_study

    (tmp_path / "study.toml").write_text(TINY_STUDY)
    spec = read_study(tmp_path / "study.toml")
    spec = type(spec)(spec.base, spec.arms[:1], (0,), spec.ensemble_sizes)
    assert run_study(spec, tmp_path / "out", workers=1, progress=False) == {"bayes/seed-0": "done"}
    scores = json.loads((tmp_path / "out" / "bayes" / "seed-0" / "scores.json").read_text())["modes"]
    assert sorted(scores) == ["ensemble", "ensemble-K1", "ensemble-K5", "map"]
    assert [scores[m]["samples"] for m in ("ensemble-K1", "ensemble", "ensemble-K5")] == [1, 3, 5]
    assert scores["ensemble-K1"]["mi"] == 0.0 < scores["ensemble"]["mi"]  # one draw has no disagreement


def test_a_study_on_a_local_ray_cluster_matches_the_local_pool(tmp_path):
    ray = pytest.importorskip("ray", reason="Ray is not installed: pip install '.[cluster]'")
    from bisnn_pyro.studies.report import write_study_report
    from bisnn_pyro.studies.runner import run_study

    (tmp_path / "study.toml").write_text(STUDY)
    spec = read_study(tmp_path / "study.toml")
    pool = run_study(spec, tmp_path / "pool", workers=2, progress=False)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        on_ray = run_study(spec, tmp_path / "ray", ray="auto", progress=False)
    finally:
        ray.shutdown()
    assert pool == on_ray == {f"{arm}/seed-{seed}": "done" for arm in ("bayes", "ste") for seed in (0, 1)}
    tables = [(write_study_report(tmp_path / name, tmp_path / f"{name}-report") / "runs.csv").read_text()
              for name in ("pool", "ray")]
    assert tables[0] == tables[1] and tables[0].count("\n") == 1 + 6  # the same metrics, seed by seed


def test_without_ray_the_ray_option_is_one_line(tmp_path, capsys, monkeypatch):
    import sys

    from bisnn_pyro.cli import main

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails as if it were not installed
    (tmp_path / "study.toml").write_text(STUDY)
    assert main(["study", "run", str(tmp_path / "study.toml"), "--out", str(tmp_path / "out"), "--ray", "auto"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--ray needs Ray, which is not installed" in err and "[cluster]" in err


def test_killing_a_study_and_restarting_it_finishes_without_rerunning(tmp_path, capsys):
    """SIGKILL to the whole process group (the study and its pool) once a run has finished and
    another has a checkpoint; the restart reruns nothing finished and resumes the interrupted."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from bisnn_pyro.cli import main

    (tmp_path / "study.toml").write_text(STUDY.replace("epochs = 2", "epochs = 40"))
    out = tmp_path / "out"
    command = [sys.executable, "-m", "bisnn_pyro", "study", "run", str(tmp_path / "study.toml"), "--out", str(out),
               "--workers", "1", "--quiet"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        finished = list(out.glob("*/seed-*/scores.json"))
        started = list(out.glob("*/seed-*/checkpoint.pt"))
        if finished and len(started) > len(finished):
            break
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    finished = {path.parent: path.stat().st_mtime_ns for path in out.glob("*/seed-*/scores.json")}
    assert 1 <= len(finished) < 4, "the study was not caught between runs"

    assert main(["study", "run", str(tmp_path / "study.toml"), "--out", str(out), "--workers", "1", "--quiet"]) == 0
    trained, scored, before, failed = map(
        int, re.findall(r"(\d+) (?:run\(s\) trained|scored again|finished before|failed)", capsys.readouterr().out)
    )
    assert (trained + scored, before, failed) == (4 - len(finished), len(finished), 0) and trained >= 1
    assert {folder: (folder / "scores.json").stat().st_mtime_ns for folder in finished} == finished
    for folder in out.glob("*/seed-*"):
        epochs = [json.loads(line)["epoch"] for line in (folder / "metrics.jsonl").read_text().splitlines()]
        assert epochs == list(range(1, 41)), folder  # the interrupted run resumed, no epoch lost or repeated


def test_an_arm_whose_parts_cannot_train_together_is_refused_before_any_run(tmp_path, capsys):
    from bisnn_pyro.cli import main

    (tmp_path / "study.toml").write_text(STUDY.replace('set = { "training.rule" = "ste" }',
                                                       'set = { "likelihood.name" = "last-readout" }'))
    assert main(["study", "run", str(tmp_path / "study.toml"), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "arm 'ste': LastReadoutCategorical scores only the last layer's readout" in err
    assert not (tmp_path / "out").exists()


def test_an_edited_study_rescores_continues_or_refuses(tmp_path, capsys):
    """After a study has run: a new ensemble size rescores without training; more epochs continue
    the runs; an arm whose options changed under its folders is refused in one line per run."""
    from bisnn_pyro.cli import main

    study = tmp_path / "study.toml"
    study.write_text(STUDY.replace("seeds = 2", "seeds = 1"))
    out = tmp_path / "out"
    command = ["study", "run", str(study), "--out", str(out), "--workers", "1", "--quiet"]
    assert main(command) == 0
    capsys.readouterr()
    bayes = out / "bayes" / "seed-0"
    trained = {folder: (folder / "checkpoint.pt").stat().st_mtime_ns for folder in out.glob("*/seed-0")}

    study.write_text(STUDY.replace("seeds = 2", "seeds = 1\nensemble_sizes = [2]"))
    assert main(command) == 0 and "0 run(s) trained, 2 scored again, 0 finished before" in capsys.readouterr().out
    assert "ensemble-K2" in json.loads((bayes / "scores.json").read_text())["modes"]
    # scored, not trained
    assert {folder: (folder / "checkpoint.pt").stat().st_mtime_ns for folder in trained} == trained

    study.write_text(STUDY.replace("seeds = 2", "seeds = 1").replace("epochs = 2", "epochs = 3"))
    assert main(command) == 0
    assert [json.loads(line)["epoch"] for line in (bayes / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]

    study.write_text(STUDY.replace("seeds = 2", "seeds = 1").replace("epochs = 2", "epochs = 3")
                     .replace('set = { "training.rule" = "ste" }',
                              'set = { "training.rule" = "ste", "optim.lr" = 0.5 }'))
    assert main(command) == 2
    err = capsys.readouterr().err
    assert "ste/seed-0: " in err and "holds a run of another configuration (was the study file edited?)" in err
    assert (out / "ste" / "seed-0" / "scores.json").is_file()  # the run's own scores stay


def test_a_ray_address_nothing_answers_at_is_one_line(tmp_path, capsys):
    pytest.importorskip("ray", reason="Ray is not installed: pip install '.[cluster]'")
    import socket

    from bisnn_pyro.cli import main

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (tmp_path / "study.toml").write_text(STUDY)
    out = tmp_path / "out"
    assert main(["study", "run", str(tmp_path / "study.toml"), "--out", str(out), "--ray", f"127.0.0.1:{port}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--ray 127.0.0.1:{port}: no Ray cluster answers there" in err
    assert not out.exists()


def test_a_study_is_refused_in_a_run_folder(tmp_path, capsys):
    from bisnn_pyro.cli import main

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text("{}")
    (tmp_path / "study.toml").write_text(STUDY)
    assert main(["study", "run", str(tmp_path / "study.toml"), "--out", str(tmp_path / "run")]) == 2
    assert "is a run folder; a study writes a folder of its own" in capsys.readouterr().err


def test_ctrl_c_stops_a_study_at_once_without_tracebacks(tmp_path):
    """SIGINT to the process group, as a terminal sends it, while the workers start: exit 130 with
    one line, no worker traceback, no worker left running."""
    import os
    import signal
    import subprocess
    import sys
    import time

    (tmp_path / "study.toml").write_text(STUDY.replace("epochs = 2", "epochs = 400"))
    command = [sys.executable, "-m", "bisnn_pyro", "study", "run", str(tmp_path / "study.toml"), "--out",
               str(tmp_path / "out"), "--workers", "2", "--quiet"]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    deadline = time.monotonic() + 120
    while not list((tmp_path / "out").glob("*/seed-*/config.json")) and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGINT)
    try:
        _, err = process.communicate(timeout=60)
    finally:
        os.killpg(process.pid, signal.SIGKILL) if process.poll() is None else None
    assert process.returncode == 130 and "Traceback" not in err and err.strip().count("\n") == 0, err
    deadline = time.monotonic() + 20  # multiprocessing's resource tracker leaves a moment after the study
    while subprocess.run(["pgrep", "-s", str(process.pid)], capture_output=True).stdout and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not subprocess.run(["pgrep", "-s", str(process.pid)], capture_output=True).stdout, "workers left running"
