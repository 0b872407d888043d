"""Run folders that are safe to share: one writer at a time, checkpoints verified on load (their
tensors' checksum, the configuration they belong to), metrics in step with the checkpoint after a
kill, no unfinished writes left behind."""

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import zipfile

import pytest
import torch

from bisnn_pyro.cli import main
from bisnn_pyro.errors import CheckpointError, RunFolderBusy
from bisnn_pyro.experiment import ExperimentConfig, create_run, open_run
from bisnn_pyro.inference.checkpoint import load_checkpoint, save_checkpoint

TINY = dict(hidden=[12], steps=20, burn_in=4, train_size=40, test_size=40, samples=3)
FLAGS = ["--hidden", "12", "--steps", "20", "--burn-in", "4", "--train-size", "40", "--test-size", "40", "--quiet"]


def trained(path, epochs=2, **options):
    run = create_run(ExperimentConfig(**{**TINY, "epochs": epochs, **options}), path)
    run.fit(progress=False)
    run.close()
    return path


def epochs_recorded(folder):
    return [json.loads(line)["epoch"] for line in (folder / "metrics.jsonl").read_text().splitlines()]


def cli(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_second_writer_is_refused_naming_the_first(tmp_path):
    run = create_run(ExperimentConfig(**TINY, epochs=1), tmp_path / "run")
    with pytest.raises(RunFolderBusy, match=f"being written by process {os.getpid()}"):
        create_run(ExperimentConfig(**TINY, epochs=1), tmp_path / "run")
    run.fit(progress=False)
    with pytest.raises(RunFolderBusy):
        open_run(tmp_path / "run", write=True)
    assert open_run(tmp_path / "run").trainer.epoch == 1  # readers never wait
    run.close()
    assert open_run(tmp_path / "run", write=True).trainer.epoch == 1


def test_two_processes_started_on_one_folder_exactly_one_trains(tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "bisnn_pyro", "train", *FLAGS, "--epochs", "3", "--out", str(out)]
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in processes]
    assert sorted(code for code, _ in results) == [0, 2], results
    refused = next(err for code, err in results if code == 2)
    assert refused.count("\n") == 1 and ("being written by process" in refused or "already holds a run" in refused)
    assert epochs_recorded(out) == [1, 2, 3]


def _flip_in_each_stored_tensor(path):
    """Flip one byte inside every tensor record of a checkpoint's zip archive, in place (the archive's
    own CRCs are left stale, as a disk error would leave them: PyTorch does not check them)."""
    with zipfile.ZipFile(path) as archive:
        records = [info for info in archive.infolist() if "/data/" in info.filename and info.file_size > 0]
    data = bytearray(path.read_bytes())
    for info in records:
        name_length = int.from_bytes(data[info.header_offset + 26 : info.header_offset + 28], "little")
        extra_length = int.from_bytes(data[info.header_offset + 28 : info.header_offset + 30], "little")
        start = info.header_offset + 30 + name_length + extra_length
        yield info.filename, bytes(data[:start]) + bytes([data[start] ^ 0x80]) + bytes(data[start + 1 :])


def test_a_flipped_bit_in_any_stored_tensor_is_refused(tmp_path, capsys):
    folder = trained(tmp_path / "run", epochs=1)
    checkpoint = folder / "checkpoint.pt"
    intact = checkpoint.read_bytes()
    flipped = list(_flip_in_each_stored_tensor(checkpoint))
    assert len(flipped) >= 5  # parameters, optimiser state, generator states
    for name, damaged in flipped:
        checkpoint.write_bytes(damaged)
        with pytest.raises(CheckpointError, match="do not match their checksum"):
            load_checkpoint(checkpoint)
        code, _, err = cli(capsys, "evaluate", folder)
        assert code == 2 and "corrupted checkpoint" in err, name
    checkpoint.write_bytes(intact)
    assert cli(capsys, "evaluate", folder)[0] == 0


def test_a_checkpoint_marked_as_version_1_keeps_its_checksum_checked(tmp_path):
    """Version 1 (0.1) carried no checksum; a checksummed file that claims version 1 is damage."""
    folder = trained(tmp_path / "run", epochs=1)
    data = (folder / "checkpoint.pt").read_bytes()
    assert data.count(b"bisnn-pyro-checkpoint-2") == 1
    (folder / "checkpoint.pt").write_bytes(data.replace(b"bisnn-pyro-checkpoint-2", b"bisnn-pyro-checkpoint-1"))
    with pytest.raises(CheckpointError, match="do not match their checksum"):
        load_checkpoint(folder / "checkpoint.pt")


@pytest.mark.parametrize("other", [{"rule": "ste"}, {"hidden": [12], "seed": 1}, {"prior_p": 0.3}])
def test_a_checkpoint_from_another_run_is_refused(tmp_path, capsys, other):
    """Another rule (other parameters), or the same parameters trained otherwise (same shapes)."""
    folder = trained(tmp_path / "run", epochs=1)
    foreign = trained(tmp_path / "other", epochs=1, **other)
    (folder / "checkpoint.pt").write_bytes((foreign / "checkpoint.pt").read_bytes())
    code, _, err = cli(capsys, "evaluate", folder)
    assert code == 2 and "belongs to another configuration" in err and err.count("\n") == 1


def test_an_unsafe_pickle_is_not_loaded_and_no_unsafe_advice_is_given(tmp_path):
    path = tmp_path / "checkpoint.pt"
    torch.save({"format": "bisnn-pyro-checkpoint-2", "payload": argparse.Namespace(x=1)}, path)
    with pytest.raises(CheckpointError, match="could run code") as caught:
        load_checkpoint(path)
    assert "weights_only" not in str(caught.value)


def test_resume_settles_the_metrics_with_the_checkpoint_and_clears_unfinished_writes(tmp_path, capsys):
    folder = trained(tmp_path / "run", epochs=2)
    metrics = folder / "metrics.jsonl"
    lines = metrics.read_text().splitlines()
    stale = folder / ".checkpoint.pt.dead.tmp"
    stale.write_bytes(b"half a checkpoint")
    # a kill after the checkpoint of epoch 2, before its metrics line; and a half-written line
    metrics.write_bytes((lines[0] + "\n").encode() + b"\xff\xfe" + lines[1][:10].encode())
    code, _, err = cli(capsys, "train", "--resume", "--epochs", "3", "--out", folder, "--quiet")
    assert code == 0, err
    assert epochs_recorded(folder) == [1, 2, 3] and not stale.exists()
    # a run of an earlier version killed after its metrics line but before its checkpoint
    metrics.write_text(metrics.read_text() + json.dumps({"epoch": 4, "loss": 1.0}) + "\n")
    assert cli(capsys, "train", "--resume", "--epochs", "4", "--out", folder, "--quiet")[0] == 0
    assert epochs_recorded(folder) == [1, 2, 3, 4]
    assert json.loads(metrics.read_text().splitlines()[-1])["loss"] != 1.0


def test_a_run_killed_while_writing_resumes_with_each_epoch_once(tmp_path):
    """SIGKILL at moments spread over the training (checkpoint writes among them), then resume."""
    out = tmp_path / "run"
    command = [sys.executable, "-m", "bisnn_pyro", "train", *FLAGS, "--epochs", "40", "--out", str(out)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (out / "checkpoint.pt").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)
    process.send_signal(signal.SIGKILL)
    process.wait()
    resumed = subprocess.run([*command[:3], "train", "--resume", "--epochs", "40", "--out", str(out), "--quiet"],
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert epochs_recorded(out) == list(range(1, 41))
    assert not list(out.glob(".*.tmp"))


@pytest.mark.parametrize(
    "edit",
    [lambda s: s.update(epoch="two"), lambda s: s.update(torch_rng=torch.zeros(7, dtype=torch.uint8)),
     lambda s: s["model"].popitem()],
    ids=["epoch", "generator", "parameter"],
)
def test_a_checkpoint_with_a_valid_checksum_but_contents_not_the_runs_is_refused(tmp_path, capsys, edit):
    """Written by save_checkpoint (so the checksum holds) with contents the run cannot take."""
    folder = trained(tmp_path / "run", epochs=1)
    state = load_checkpoint(folder / "checkpoint.pt")
    state.pop("format")
    edit(state)
    save_checkpoint(folder / "checkpoint.pt", state)
    code, _, err = cli(capsys, "evaluate", folder)
    assert code == 2 and "does not match config.json" in err and err.count("\n") == 1, err
