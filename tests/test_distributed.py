"""Data-parallel training: two processes under torchrun (gloo on CPU) take the steps one process
takes on the whole minibatch (docs/studies.md states it; :mod:`bisnn_pyro.inference.distributed`
derives it), rank 0 alone writes the run folder, and a distributed run resumes."""

import json
import os
import signal
import subprocess
import sys

import pytest
import torch

from bisnn_pyro.cli import main
from bisnn_pyro.config.run import ExperimentConfig
from bisnn_pyro.errors import ConfigError
from bisnn_pyro.experiment import build, load_data
from bisnn_pyro.inference.distributed import DataParallel

# 70 examples in minibatches of 15: the two processes' shards are uneven (8 and 7; the last 5 and 5)
SMALL = ["--hidden", "16", "--steps", "30", "--burn-in", "5", "--train-size", "70", "--test-size", "60",
         "--samples", "3", "--batch-size", "15", "--quiet"]


def torchrun(*argv: str) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc-per-node 2 -m bisnn_pyro ARGV``; on a hang, its whole
    process group is killed (the training processes too, not only torchrun)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "bisnn_pyro", *argv]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                               start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        raise
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def model_state(folder):
    return torch.load(folder / "checkpoint.pt", weights_only=True)["model"]


def losses(folder):
    return [json.loads(line)["loss"] for line in (folder / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize(
    "setting",
    [
        pytest.param(["--rule", "bayes"], id="bayes-natural-gradient-direct"),
        pytest.param(["--rule", "fp"], id="fp-adam-svi"),
        # one process would take the fused engine (its own uniforms), which cannot train data-parallel
        pytest.param(["--rule", "bayes", "--schedule", "online", "--engine", "direct"], id="bayes-online-direct"),
    ],
)
def test_two_processes_take_the_steps_of_one_and_resume(tmp_path, capsys, setting):
    """Two processes for two epochs, then resumed by two processes to three, against one process
    for three: the same parameters and losses up to the order of float sums."""
    online = "--schedule" in setting
    first, total = ("1", "1") if online else ("2", "3")
    two, one = tmp_path / "two", tmp_path / "one"
    started = torchrun("train", *SMALL, *setting, "--epochs", first, "--out", str(two), "--distributed")
    assert started.returncode == 0, started.stderr[-2000:]
    if not online:
        resumed = torchrun("train", "--resume", "--epochs", total, "--out", str(two), "--distributed", "--quiet")
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        assert resumed.stdout.count(f"-> {two}:") == 1  # rank 0 alone summarises
    assert main(["train", *SMALL, *setting, "--epochs", total, "--out", str(one)]) == 0
    capsys.readouterr()

    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())
    assert losses(two) == pytest.approx(losses(one), rel=1e-6) and len(losses(two)) == int(total)
    single, parallel = model_state(one), model_state(two)
    assert single.keys() == parallel.keys()
    for name, value in single.items():
        torch.testing.assert_close(parallel[name], value, atol=1e-5, rtol=1e-5, msg=name)


def test_outside_torchrun_distributed_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    assert main(["train", *SMALL, "--epochs", "1", "--out", str(tmp_path / "r"), "--distributed"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--distributed runs under torchrun" in err and "--nproc-per-node" in err


def _config(**options):
    base = dict(hidden=[8], steps=20, burn_in=4, train_size=42, test_size=20, batch_size=20, epochs=1)
    return ExperimentConfig({**base, **options})


def test_a_minibatch_smaller_than_the_processes_is_refused():
    config = _config(train_size=41)  # the last minibatch holds one example
    with pytest.raises(
        ConfigError, match="needs minibatches of >= 2 examples, but 41 examples in batches of 20 make a minibatch of 1"
    ):
        build(config, load_data(config)[0], DataParallel(rank=0, world=2))


def test_the_fused_engine_is_refused_data_parallel():
    config = _config(schedule="online", engine="fused")
    with pytest.raises(ConfigError, match="fused engine .* cannot train data-parallel"):
        build(config, load_data(config)[0], DataParallel(rank=1, world=2))
    _, trainer = build(_config(schedule="online"), load_data(config)[0], DataParallel(rank=1, world=2))
    assert trainer.engine == "direct"  # auto takes the direct engine instead


def test_the_shards_of_a_minibatch_partition_it_in_one_order():
    """Tensors and a Dataset alike: the processes' shards of each minibatch together are the
    minibatch one process reads, and each knows the whole minibatch's size."""
    config = _config()
    train = load_data(config)[0]

    class Pairs(torch.utils.data.Dataset):
        def __len__(self):
            return len(train.y)

        def __getitem__(self, i):
            return train.x[i], train.y[i]

    for data in [(train.x, train.y), (Pairs(), None)]:
        batches = {}
        for parallel in (None, DataParallel(0, 2), DataParallel(1, 2)):
            trainer = build(config, train, parallel)[1]
            trainer.x, trainer.y = data
            batches[parallel and parallel.rank] = list(trainer._batches())
        whole = batches[None]
        assert [size for *_, size in whole] == [20, 20, 2]
        for i, (x, y, size) in enumerate(whole):
            shards = [batches[rank][i] for rank in (0, 1)]
            assert [s[2] for s in shards] == [size, size]
            torch.testing.assert_close(torch.cat([shards[0][1], shards[1][1]]).sort().values, y.sort().values)
            torch.testing.assert_close(shards[0][0], x[0::2])
            torch.testing.assert_close(shards[1][0], x[1::2])


def test_one_process_failing_to_start_stops_the_others(tmp_path):
    """Rank 0 cannot take the folder (this test holds its writer lock); rank 1, which built its
    run, stops too instead of waiting for rank 0 forever."""
    from bisnn_pyro.run_lock import RunLock

    (tmp_path / "r").mkdir()
    lock = RunLock(tmp_path / "r")
    try:
        result = torchrun("train", *SMALL, "--epochs", "1", "--out", str(tmp_path / "r"), "--distributed")
    finally:
        lock.release()
    assert result.returncode != 0
    assert result.stderr.count("bisnn-pyro: error:") == 1 and "is being written by process" in result.stderr


def test_an_explicit_gpu_is_refused_data_parallel(monkeypatch):
    for key, value in {"RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "localhost", "MASTER_PORT": "1"}.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError, match="each process its own GPU .* use --device cuda, not cuda:1"):
        DataParallel.from_environment("cuda:1")


def test_an_error_every_process_meets_is_said_once(tmp_path):
    result = torchrun(
        "train", *SMALL, "--batch-size", "1", "--epochs", "1", "--out", str(tmp_path / "r"), "--distributed"
    )
    assert result.returncode != 0 and result.stderr.count("bisnn-pyro: error:") == 1
    assert "needs minibatches of >= 2 examples" in result.stderr


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="lists the threads in /proc/self/task")
def test_closing_stops_the_process_groups_threads():
    """After ``close`` no gloo thread runs, though the optimiser was built (importing
    ``torch.distributed.nn``) after the group was joined: a group still alive at the interpreter's
    exit takes its threads into the exit, which now and then aborts the process (SIGABRT,
    "terminate called without an active exception") after a run that trained correctly."""
    script = (
        "import pathlib, torch\n"
        "from bisnn_pyro.inference.distributed import DataParallel\n"
        "parallel = DataParallel.from_environment()\n"
        "torch.optim.Adam([torch.nn.Parameter(torch.ones(2))])\n"
        "def threads():\n"
        "    return [p.read_text().strip() for p in pathlib.Path('/proc/self/task').glob('*/comm')]\n"
        "assert any('gloo' in name for name in threads()), threads()\n"
        "parallel.close()\n"
        "print(sorted(threads()))\n"
    )
    env = {**os.environ, "RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()),
           "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "gloo" not in done.stdout, done.stdout


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
