"""The tutorial docs/tutorials/learning_rule.py, run at its small size: the library's learning-rule
step equals the formula by hand, both rules learn two moons, and the KL weight and the temperature
move the posterior the way the mathematics says; the study figures it quotes are on the page."""

import re
from pathlib import Path

from tutorials import run_tutorial

NUMBER = r"([-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?)"
STUDIES = Path(__file__).resolve().parents[1] / "docs" / "studies.md"


def value(out: str, label: str) -> float:
    """The first number after ``label`` (followed by a colon or a space) in the output."""
    found = re.search(re.escape(label) + r":?\s*" + NUMBER, out)
    assert found, f"{label!r} not printed"
    return float(found.group(1))


def fields(line: str) -> dict[str, float]:
    """``ensemble accuracy 0.970, ECE 0.148; MAP accuracy ...`` -> {"ensemble accuracy": 0.97, ...}."""
    return {name.strip(): float(x) for name, x in re.findall(r"([A-Za-z][A-Za-z ]*?) " + NUMBER, line)}


def scores_line(out: str, rule: str) -> dict[str, float]:
    line = re.search(rf"^{re.escape(rule)}: (ensemble accuracy .*)$", out, re.MULTILINE)
    assert line, f"no scores printed for {rule}"
    return fields(line.group(1))


def sweep_row(out: str, setting: str, v: str) -> dict[str, float]:
    line = re.search(rf"^{setting} = {re.escape(v)}: (.*)$", out, re.MULTILINE)
    assert line, f"no sweep row for {setting} = {v}"
    return fields(line.group(1))


def test_learning_rule(tmp_path):
    out = run_tutorial("learning_rule", tmp_path)

    # section 1: the preconditioned KL gradient is lam - lam_p
    assert value(out, "max |natural gradient of the KL - (lam - lam_p)|") < 1e-5

    # section 3: one library step of the rule on the spiking network is the formula by hand
    assert value(out, "largest |step| of lam") > 1e-2  # the step moved something
    assert value(out, "library step vs lam - eta grad / (1 - tanh^2 lam), max difference") < 1e-5
    assert value(out, "library step vs the formula with w~ and dloss/dw~, max difference") < 1e-5
    # section 4: Adam's first step moves every lam by its step size against the gradient's sign
    assert value(out, "Adam's first step vs lam - alpha sign(grad), max difference") < 1e-3

    # section 5: both rules learn two moons in two epochs, ensemble and MAP alike, and the loss falls
    for rule in ("bayes", "bayes-adam"):
        losses = re.search(rf"^{rule}: first epoch loss {NUMBER}, last epoch loss {NUMBER}$", out, re.MULTILINE)
        assert losses, f"no losses printed for {rule}"
        assert float(losses.group(2)) < 0.8 * float(losses.group(1))
        scores = scores_line(out, rule)
        assert scores["ensemble accuracy"] > 0.85 and scores["MAP accuracy"] > 0.85
        assert scores["mean confidence"] < 1.0 and 0 < scores["ECE"] < 0.4
        assert 0.3 < scores["q entropy"] < 0.6932  # q has left the prior (log 2 nats per weight), undecided

    # section 6: a large KL weight holds q near the prior and blunts the ensemble; so, more gently, does
    # a high temperature (more entropy in q)
    base, heavy_kl = sweep_row(out, "beta", "1"), sweep_row(out, "beta", "100")
    assert heavy_kl["q entropy"] > base["q entropy"] + 0.005
    assert heavy_kl["mean confidence"] < base["mean confidence"]
    hot = sweep_row(out, "tau", "2")
    assert hot["q entropy"] > sweep_row(out, "tau", "0.5")["q entropy"]

    # section 7 quotes docs/studies.md: the figures must be on the page
    page = STUDIES.read_text()
    for quoted in (
        "| bayes-tau0.25 ensemble − bayes ensemble | +0.0006 [-0.0003, +0.0015] (4/10 lower) | "
        "-0.0033 [-0.0048, -0.0017] (9/10 lower) | -0.0029 [-0.0050, -0.0009] (8/10 lower) |",
        "| bayes-tau1 ensemble − bayes ensemble | -0.0011 [-0.0023, +0.0001] (7/10 lower) | "
        "+0.0033 [+0.0010, +0.0056] (1/10 lower) | +0.0023 [-0.0003, +0.0049] (4/10 lower) |",
        "| bayes-kl0.1 ensemble − bayes ensemble | -0.0001 [-0.0008, +0.0006] (7/10 lower) | "
        "-0.0049 [-0.0065, -0.0033] (10/10 lower) | -0.0049 [-0.0069, -0.0028] (10/10 lower) |",
        "| bayes-adam ensemble − bayes ensemble | +0.0001 [-0.0018, +0.0020] (6/10 lower) | "
        "-0.0095 [-0.0121, -0.0068] (10/10 lower) | -0.0090 [-0.0116, -0.0065] (10/10 lower) |",
        "A smaller temperature and a smaller KL weight sharpen the ensemble and lower its",
        "Adam on λ (`bayes-adam`) calibrates better than the natural-gradient rule at equal accuracy",
        "Adam on λ beats the natural-gradient rule on digits-dvs by 5.3 points of ensemble accuracy",
        "[3.4, 7.2] and 0.089 of ECE (5 of 5 seeds)",
    ):
        assert quoted in " ".join(page.split()), f"docs/studies.md no longer says: {quoted}"
