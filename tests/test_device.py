"""Everything runs on the configured device: cpu here, a GPU where BISNN_TEST_DEVICE=cuda
(``benchmarks/gpu_check.sh`` sets it)."""

import os

import pytest
import torch

from bisnn_pyro.experiment import ConfigError, ExperimentConfig, create_run, open_run

DEVICE = os.environ.get("BISNN_TEST_DEVICE", "cpu")
SMALL = {"hidden": [32], "steps": 30, "burn_in": 5, "train_size": 80, "test_size": 100, "samples": 4, "epochs": 2}


@pytest.mark.parametrize("schedule", ["sequence", "online"])
def test_training_and_prediction_on_the_device(tmp_path, schedule):
    run = create_run(ExperimentConfig(schedule=schedule, device=DEVICE, **SMALL), tmp_path / "run")
    run.fit(progress=False)
    assert all(p.device.type == torch.device(DEVICE).type for p in run.bsnn.parameters())
    scores = run.evaluate("ensemble")
    assert 0 <= scores["accuracy"] <= 1 and scores["n"] == 100
    probs = run.bsnn.predict(run.test.x, "map")
    assert probs.device == run.test.x.device  # results come back beside the data
    reopened = open_run(tmp_path / "run", device="cpu")  # a GPU-trained run opens on a CPU machine
    assert reopened.evaluate("map")["accuracy"] == pytest.approx(run.evaluate("map")["accuracy"], abs=0.02)


def test_resume_on_the_device_continues_exactly(tmp_path):
    """Two epochs straight equal one epoch, a reopened run and one more (on a GPU the weight draws
    come from its generator, whose state the checkpoint keeps)."""
    config = {**SMALL, "device": DEVICE}
    straight = create_run(ExperimentConfig(**config), tmp_path / "straight")
    straight.fit(progress=False)
    half = create_run(ExperimentConfig(**{**config, "epochs": 1}), tmp_path / "half")
    half.fit(progress=False)
    half.close()
    resumed = open_run(tmp_path / "half", device=DEVICE, write=True)
    resumed.fit(2, progress=False)
    for (name, a), (_, b) in zip(straight.bsnn.state_dict().items(), resumed.bsnn.state_dict().items()):
        assert torch.equal(a, b), name


def test_unusable_devices_are_one_line_errors():
    with pytest.raises(ConfigError, match="unknown device"):
        ExperimentConfig(device="gpu0").validate()
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA device"):
            ExperimentConfig(device="cuda").validate()
