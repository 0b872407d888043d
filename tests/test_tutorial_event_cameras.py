"""The tutorial docs/tutorials/event_cameras.py, run at its small size: the hand binning of an
event stream keeps every event and equals the library's frames, digits-dvs has its documented
shapes and split, the grouped convolution equals one convolution per draw, the configuration
builds the tutorial's network, and a brief Bayes-BiSNN training beats chance in every mode."""

import re

from tutorials import run_tutorial

NUMBER = r"([-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?)"


def value(out: str, label: str) -> float:
    """The first number after ``label:`` on its line."""
    found = re.search(re.escape(label) + r":\s*" + NUMBER, out)
    assert found, f"{label!r} not printed"
    return float(found.group(1))


def test_event_cameras(tmp_path):
    out = run_tutorial("event_cameras", tmp_path, timeout=600)

    # the simulated recording: an event stream of both polarities
    events = re.search(r"events: (\d+) \(ON (\d+), OFF (\d+)\)", out)
    assert events, "event counts not printed"
    total, on, off = map(int, events.groups())
    assert total > 100 and on > 0 and off > 0 and on + off == total
    assert "fields: ('x', 'y', 't', 'p')" in out

    # binning: the counts keep every event, the binary frames are the counts clipped to one per step
    binned = re.search(r"events counted in the bins: (\d+) of (\d+)", out)
    assert binned and int(binned.group(1)) == int(binned.group(2)) == total
    spikes = value(out, "spikes in the binary frames")
    merged = value(out, "events merged by the clipping")
    assert 0 < spikes <= total and spikes + merged == total
    assert "frames shape (T, P, H, W): (20, 2, 12, 12)" in out
    assert "frames_from_counts equals the hand binning: True" in out
    assert "EventFrames equals the hand binning: True" in out  # tonic is in the [dev] extra

    # digits-dvs: the documented shapes and seeded 80/20 split, binary frames
    assert "train: x (1438, 20, 2, 12, 12), y (1438,); test: x (359, 20, 2, 12, 12)" in out
    assert value(out, "recordings in all") == 1797
    assert "frames binary: True" in out
    assert 0 < value(out, "mean spike probability per pixel and step") < 0.5
    per_digit = [int(n) for n in re.search(r"test recordings per digit: \[([\d, ]+)\]", out).group(1).split(",")]
    assert sum(per_digit) == 359 and max(per_digit) - min(per_digit) <= 2  # stratified

    # the K weight draws as one grouped convolution equal K separate convolutions
    assert "grouped convolution shape (K, B, C, H, W): (5, 8, 4, 12, 12)" in out
    assert value(out, "grouped against one by one, max difference") < 1e-5

    # the run configuration builds the tutorial's network: 5x5 binary convolutions of 2 -> 16 -> 32 channels
    assert "the same network as the configuration builds: True" in out
    assert value(out, "binary weights") == 2 * 16 * 25 + 16 * 32 * 25
    assert "from the data set: steps 20, burn-in 3" in out

    # a brief training beats chance (0.1) in every prediction mode: twice chance held with a margin
    # for seeds 0-3 at the small size (0.28-0.52 on 200 test recordings)
    accuracies = dict(re.findall(r"test accuracy \((\w+)\): " + NUMBER, out))
    assert set(accuracies) == {"map", "ensemble", "mean"}
    for mode, accuracy in accuracies.items():
        assert float(accuracy) > 0.2, (mode, accuracy)
    losses = [float(x) for x in re.search(r"loss per epoch: \[([^\]]+)\]", out).group(1).split(",")]
    assert len(losses) == 2 and losses[-1] < losses[0]
