"""Tutorial 2, "Your first Bayes-BiSNN", runs at its small size and what it prints holds up."""

import re

from tutorials import run_tutorial


def number(text: str, pattern: str) -> float:
    found = re.search(pattern, text)
    assert found, f"not printed: {pattern}"
    return float(found.group(1))


def pairs(line: str) -> dict[str, float]:
    return {key: float(value) for key, value in re.findall(r"(\w+)=([-0-9.e+]+)", line)}


def test_first_bayes_bisnn(tmp_path):
    out = run_tutorial("first_bayes_bisnn", tmp_path)

    # the library's LIF step is the recurrence of DESIGN section 2, written by hand in float64
    assert number(out, r"max \|dU\| = (\S+)") < 1e-4
    assert number(out, r"spikes that differ = (\d+)") == 0
    first, second = map(int, re.search(r"LIF neuron: (\d+) spikes in steps 0-49, (\d+) in steps 50-99", out).groups())
    assert first > second  # tripled inhibition silences the neuron

    # each surrogate's forward is the exact step and its derivative has the area of its closed form
    for name in ("boxcar", "sigmoid", "fast_sigmoid"):
        area, closed, step = re.search(
            rf"surrogate {name}: area (\S+) closed form (\S+) forward is the step: (\w+)", out
        ).groups()
        assert abs(float(area) - float(closed)) < 5e-3, name
        assert step == "True", name
    assert number(out, r"surrogate fast_sigmoid: area (\S+)") < 0.25  # about 2 / slope, not 1

    # DECOLLE: under local learning layer 2's loss sends no gradient to layer 1; end to end it does
    local = re.search(r"local_learning=True: \|d loss_2 / d W_1\| = (\S+), \|d loss_2 / d W_2\| = (\S+)", out)
    assert float(local.group(1)) == 0.0 and float(local.group(2)) > 0.0
    assert number(out, r"local_learning=False: \|d loss_2 / d W_1\| = (\S+),") > 0.0

    # trained Bayes-BiSNN: every prediction mode classifies two moons
    scores = {mode: pairs(rest) for mode, rest in re.findall(r"^mode=(\w+) (.*)$", out, flags=re.M)}
    assert set(scores) == {"map", "ensemble", "mean"}
    for mode, score in scores.items():
        assert score["accuracy"] > 0.85, (mode, score)
        assert 0.0 <= score["ece"] <= score["mce"] <= 1.0
    # averaging K networks that disagree lowers the confidence below the single MAP network's
    assert scores["ensemble"]["confidence"] < scores["map"]["confidence"]
    # Jensen: the ensemble's NLL is at most the mean NLL of its members
    draws = re.search(r"single draws: accuracy mean=\S+ sd=\S+ nll mean=(\S+); ensemble of \d+: accuracy=\S+ nll=(\S+)",
                      out)
    assert float(draws.group(2)) <= float(draws.group(1)) + 1e-4

    # the library's mutual information is the mean KL of the draws from their average
    assert number(out, r"max \|MI - mean_k KL\(p_k \|\| p_mean\)\| = (\S+)") < 1e-6
    # epistemic uncertainty is higher off the data than on it, and a point estimate has none
    near = number(out, r"mean MI near the data = (\S+)")
    far = number(out, r"far from the data = (\S+)")
    assert far > near > 0.0
    assert number(out, r"MI of the MAP network \(one draw\) = (\S+)") == 0.0
