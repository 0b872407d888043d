"""The tutorial docs/tutorials/one_binary_synapse.py, run at its small size: what it prints must
hold up (closed forms against enumeration and Monte Carlo, the library against the hand formulas)."""

import re

from tutorials import run_tutorial

NUMBER = r"([-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?)"


def value(out: str, label: str) -> float:
    """The first number after ``label:`` on its line."""
    found = re.search(re.escape(label) + r":\s*" + NUMBER, out)
    assert found, f"{label!r} not printed"
    return float(found.group(1))


def value_and_error(out: str, label: str) -> tuple[float, float]:
    """``label: X +- E`` -> (X, E)."""
    found = re.search(re.escape(label) + r":\s*" + NUMBER + r"\s*\+-\s*" + NUMBER, out)
    assert found, f"{label!r} not printed with its standard error"
    return float(found.group(1)), float(found.group(2))


def test_one_binary_synapse(tmp_path):
    out = run_tutorial("one_binary_synapse", tmp_path)

    # section 1: the library's sign-Bernoulli is the exponential family written in DESIGN.md
    assert value(out, "max formula error") < 1e-10

    # section 2: enumeration, the conjugate closed form and Pyro's TraceEnum agree, and the data moved q
    enumerated = value(out, "enumerated posterior P(w=+1)")
    assert abs(value(out, "closed-form posterior P(w=+1)") - enumerated) < 1e-6
    assert abs(value(out, "pyro TraceEnum posterior P(w=+1)") - enumerated) < 1e-5
    assert enumerated > value(out, "prior P(w=+1)") + 0.3

    # section 3: the exact KL, three ways, and Monte Carlo within 4 standard errors
    kl = value(out, "exact KL (closed form, by hand)")
    assert kl > 0.1
    assert abs(value(out, "library KL (kl_divergence of SignBernoulli)") - kl) < 1e-9
    assert abs(value(out, "torch Bernoulli KL (logits 2 lam)") - kl) < 1e-9
    kl_mc, kl_se = value_and_error(out, "Monte Carlo KL (20000 draws)")
    assert 0 < kl_se < 0.02 and abs(kl_mc - kl) < 4 * kl_se

    # the library's guide with exact draws estimates the enumerated ELBO; the ELBO is below log p(y)
    exact_elbo = value(out, "exact ELBO at lam = 0.70 (enumeration)")
    elbo_mc, elbo_se = value_and_error(out, "Trace_ELBO estimate, library guide, exact draws (5000 particles)")
    assert 0 < elbo_se < 0.05 and abs(elbo_mc - exact_elbo) < 4 * elbo_se
    log_evidence = value(out, "log evidence log p(y)")
    assert exact_elbo < log_evidence
    assert abs(value(out, "relaxed surrogate ELBO (MeanFieldELBO, tau = 0.5)") - exact_elbo) > 0.05  # not the ELBO

    # section 4: the ELBO optimum is the exact posterior; one natural-gradient step of size 1 reaches it
    lam_post = value(out, "posterior natural parameter lam_post")
    assert abs(value(out, "natural gradient, lr = 1.0, 1 step(s), lam") - lam_post) < 1e-9
    assert abs(value(out, "ELBO optimum lam") - lam_post) < 1e-4
    assert abs(value(out, "ELBO optimum P(w=+1)") - enumerated) < 1e-5
    assert 0 <= value(out, "log evidence minus max ELBO") < 1e-8

    # section 5: relaxed draws have the exact sign law; bias shrinks and variance grows as tau falls
    exact_gradient = value(out, "exact gradient by enumeration")
    assert abs(value(out, "closed form (1 - tanh^2 lam) c") - exact_gradient) < 1e-9
    rows = {
        float(tau): (float(bias), float(se), float(var))
        for tau, bias, se, var in re.findall(
            r"tau = ([\d.]+): gradient bias " + NUMBER + r" \+- " + NUMBER + r", variance " + NUMBER, out
        )
    }
    taus = sorted(rows)
    assert taus == [0.05, 0.1, 0.25, 0.5, 1.0, 2.0]
    variances = [rows[t][2] for t in taus]
    assert all(variances[i] > variances[i + 1] for i in range(len(variances) - 1))  # falls as tau rises
    assert abs(rows[0.05][0]) < 4 * rows[0.05][1] + 0.05  # nearly unbiased at a low temperature
    assert rows[2.0][0] < -0.5 * exact_gradient  # far off at a high one
    assert abs(rows[2.0][0]) > abs(rows[0.25][0]) > abs(rows[0.05][0])
    for tau, share, q in re.findall(r"tau = ([\d.]+): share of relaxed draws > 0: ([\d.]+) \(q: ([\d.]+)\)", out):
        assert abs(float(share) - float(q)) < 0.015, tau  # 20000 draws: 4 standard errors

    # the biased gradient pulls SVI's posterior towards the prior, less so at the lower temperature
    svi_low = value(out, "SVI with relaxed draws, tau = 0.25, lam")
    svi_high = value(out, "SVI with relaxed draws, tau = 1.0, lam")
    lam_prior_side = 0.0  # the prior's lam is -0.42, the posterior's 1.09
    assert lam_prior_side < svi_high < svi_low < lam_post + 0.1

    # section 6: the library's learning-rule step is the hand formula
    assert value(out, "hand step minus library step") < 1e-6
    assert abs(value(out, "library step, lam after") - value(out, "lam before the step")) > 1e-3  # it moved
