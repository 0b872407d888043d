"""Tutorial 3, "Swap the parts", runs at its small size and what it prints holds up."""

import re

from tutorials import run_tutorial


def number(text: str, pattern: str) -> float:
    found = re.search(pattern, text)
    assert found, f"not printed: {pattern}"
    return float(found.group(1))


def test_swap_the_parts(tmp_path):
    out = run_tutorial("swap_the_parts", tmp_path)

    # the default parts of the bayes rule
    parts = "parts default: prior BinaryPrior, guide SignBernoulliGuide, loss MeanFieldELBO, optimiser LearningRule"
    assert parts in out
    # the Dale prior's hyper-latents get a Beta guide of their own, stepped by the companion
    assert "dale: guide GuideList of ['SignBernoulliGuide', 'BetaGuide'], hyper-latents ['layers.0.weight_p']" in out
    assert re.search(r"dale: parameter guide\.parts\.0\.params\.layers\.0\.weight\.natural \(.*\) -> learning rule",
                     out)
    assert re.search(r"dale: parameter guide\.parts\.1\.\S+\.alpha_unconstrained \(.*\) -> companion Adam", out)
    assert "trained dale: engine svi" in out  # hyper-latents: not the direct engine

    # the conjugate closed form is the stationary point of the hyper-posterior's ELBO terms ...
    assert number(out, r"max \|dF/d\(alpha, beta\)\| at the closed form = (\S+)") < 1e-6
    learned = number(out, r"F at the learned q\(p\) = (\S+)")
    closed = number(out, r"F at the closed form = (\S+)")
    assert closed > learned
    # ... and the CAVI step puts the guide there
    assert abs(number(out, r"F after the CAVI step = (\S+)") - closed) < 1e-2

    # the learned temperature is stepped by the companion (it moved), the natural parameters by the rule
    assert re.search(r"learned-tau: parameter guide\.log_temperature_unconstrained \(\) -> companion Adam", out)
    assert re.search(r"learned-tau: parameter guide\.params\.layers\.0\.weight\.natural \(.*\) -> learning rule", out)
    tau = number(out, r"temperature 0\.5 -> (\S+)")
    assert tau > 0 and abs(tau - 0.5) > 1e-3

    # every combination classifies two moons
    results = {
        name: (float(acc), float(nll), float(ece))
        for name, acc, nll, ece in re.findall(r"^result ([\w ]+): accuracy=(\S+) nll=(\S+) ece=(\S+)$", out, flags=re.M)
    }
    assert set(results) == {"default", "Dale prior", "BetaBinaryPrior", "learned tau"}
    for name, (acc, nll, ece) in results.items():
        assert acc > 0.85 and 0 < nll < 0.7 and 0 <= ece < 0.5, (name, acc, nll, ece)

    # refusals are one line naming the site and the reason
    setup = re.search(r"^refused \(setup\): (.*)$", out, flags=re.M).group(1)
    assert "layers.0.weight" in setup and "AutoNormal is continuous" in setup and "{-1, +1}" in setup
    trainer = re.search(r"^refused \(trainer\): (.*)$", out, flags=re.M).group(1)
    assert trainer.startswith("Trace_ELBO scores the exact prior of layers.0.weight") and "MeanFieldELBO" in trainer

    # the registered names resolve through a configuration, and their options are checked
    assert "registered: dale + learned-temperature + decolle + learning-rule" in out
    assert "registered: prior {'name': 'dale', 'a': 0.8} -> DalePrior(a=0.8, b=0.8)" in out
    assert "refused (config): prior.a must be a number > 0, got -1.0" in out
