import math

import pytest
import torch
from torch.distributions import Bernoulli, RelaxedBernoulli, kl_divergence

from bisnn_pyro.models.distributions import RelaxedSignBernoulli, SignBernoulli, natural_from_probs

LAMBDAS = torch.tensor([-3.0, -0.7, 0.0, 0.2, 1.5, 4.0], dtype=torch.float64)


def to_bit(w):
    return (w + 1) / 2


def test_log_prob_normalises_and_matches_torch_bernoulli():
    d = SignBernoulli(LAMBDAS)
    support = d.enumerate_support()
    assert support.shape == (2, len(LAMBDAS))
    total = d.log_prob(support).exp().sum(0)
    torch.testing.assert_close(total, torch.ones_like(LAMBDAS))
    reference = Bernoulli(logits=2 * LAMBDAS)
    for w in (-1.0, 1.0):
        value = torch.full_like(LAMBDAS, w)
        torch.testing.assert_close(d.log_prob(value), reference.log_prob(to_bit(value)))


def test_moments_and_entropy():
    d = SignBernoulli(LAMBDAS)
    torch.testing.assert_close(d.probs, torch.sigmoid(2 * LAMBDAS))
    torch.testing.assert_close(d.mean, torch.tanh(LAMBDAS))
    torch.testing.assert_close(d.variance, 4 * Bernoulli(logits=2 * LAMBDAS).variance)  # w = 2 bit - 1
    torch.testing.assert_close(d.entropy(), Bernoulli(logits=2 * LAMBDAS).entropy())
    assert torch.equal(d.mode, torch.tensor([-1.0, -1.0, 1.0, 1.0, 1.0, 1.0], dtype=torch.float64))


def test_samples_have_the_right_mean():
    d = SignBernoulli(LAMBDAS)
    draws = d.sample((40000,))
    assert set(draws.unique().tolist()) <= {-1.0, 1.0}
    stderr = (d.variance / 40000).sqrt()
    assert ((draws.mean(0) - d.mean).abs() <= 5 * stderr + 1e-9).all()


def test_kl_matches_torch_and_enumeration():
    lam_p = torch.tensor([0.3, -1.0, 0.0, 2.0, -0.5, 0.1], dtype=torch.float64)
    q, p = SignBernoulli(LAMBDAS), SignBernoulli(lam_p)
    kl = kl_divergence(q, p)
    torch.testing.assert_close(kl, kl_divergence(Bernoulli(logits=2 * LAMBDAS), Bernoulli(logits=2 * lam_p)))
    support = q.enumerate_support()
    enumerated = (q.log_prob(support).exp() * (q.log_prob(support) - p.log_prob(support))).sum(0)
    torch.testing.assert_close(kl, enumerated)
    # the relaxed guide is charged the exact KL of its signs
    torch.testing.assert_close(kl_divergence(RelaxedSignBernoulli(LAMBDAS, 0.5), p), kl)
    # and Independent wrappers sum it, as Pyro's to_event needs
    summed = kl_divergence(RelaxedSignBernoulli(LAMBDAS, 0.5).to_event(1), p.to_event(1))
    torch.testing.assert_close(summed, kl.sum())


def test_natural_from_probs_roundtrip():
    p = torch.tensor([0.01, 0.3, 0.5, 0.9], dtype=torch.float64)
    torch.testing.assert_close(SignBernoulli(natural_from_probs(p)).probs, p)
    assert natural_from_probs(0.5).item() == 0.0


def test_sign_of_relaxed_sample_has_the_exact_law():
    d = RelaxedSignBernoulli(LAMBDAS, temperature=0.7)
    draws = d.rsample((40000,))
    assert ((draws >= -1) & (draws <= 1)).all()
    frequency = (draws > 0).double().mean(0)
    p = torch.sigmoid(2 * LAMBDAS)
    assert ((frequency - p).abs() <= 5 * (p * (1 - p) / 40000).sqrt() + 1e-9).all()


def test_learned_temperature_draws_the_same_sample_and_gets_a_gradient():
    fixed = RelaxedSignBernoulli(LAMBDAS, temperature=0.7)
    tau = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    learned = RelaxedSignBernoulli(LAMBDAS, temperature=tau)
    torch.manual_seed(3)
    expected = fixed.rsample((50,))
    torch.manual_seed(3)
    draws = learned.rsample((50,))
    torch.testing.assert_close(draws, expected, rtol=0, atol=1e-12)
    draws.sum().backward()
    # dw/dtau = -(1 - w^2) * atanh(w) / tau for w = tanh(z / tau)
    reference = (-(1 - expected**2) * torch.atanh(expected) / 0.7).sum()
    torch.testing.assert_close(tau.grad, reference, rtol=1e-6, atol=1e-9)


def test_zero_temperature_limit_gives_exact_signs():
    d = RelaxedSignBernoulli(LAMBDAS, temperature=1e-9)
    draws = d.rsample((5000,))
    assert set(draws.unique().tolist()) == {-1.0, 1.0}


def test_relaxed_sample_is_differentiable():
    lam = LAMBDAS.clone().requires_grad_()
    RelaxedSignBernoulli(lam, 1.0).rsample((100,)).sum().backward()
    assert lam.grad is not None and (lam.grad > 0).all()


@pytest.mark.parametrize("tau", [0.3, 1.0, 2.5])
def test_relaxed_log_prob_matches_torch_relaxed_bernoulli(tau):
    w = torch.linspace(-0.995, 0.995, 41, dtype=torch.float64).unsqueeze(-1)
    ours = RelaxedSignBernoulli(LAMBDAS, tau).log_prob(w)
    reference = RelaxedBernoulli(torch.tensor(tau, dtype=torch.float64), logits=2 * LAMBDAS).log_prob(to_bit(w))
    torch.testing.assert_close(ours, reference - math.log(2.0))


def test_relaxed_log_prob_is_finite_at_the_boundary():
    d = RelaxedSignBernoulli(torch.tensor([0.0, 3.0, -3.0]), 0.2)
    for value in (-1.0, 1.0):
        assert torch.isfinite(d.log_prob(torch.full((3,), value))).all()


def test_supports_tell_the_truth():
    exact, relaxed = SignBernoulli(torch.zeros(3)), RelaxedSignBernoulli(torch.zeros(3), 0.5)
    assert exact.support.is_discrete and not relaxed.support.is_discrete
    assert exact.support.check(torch.tensor([-1.0, 1.0, 0.0])).tolist() == [True, True, False]
    assert relaxed.support.check(torch.tensor([-1.0, 0.3, 1.5])).tolist() == [True, True, False]
    # the exact distribution does not pretend to score a relaxed value
    with pytest.raises(ValueError, match="support"):
        SignBernoulli(torch.zeros(3), validate_args=True).log_prob(torch.tensor([-0.3, 0.0, 0.9]))


def test_bad_temperature_is_rejected():
    with pytest.raises(ValueError, match="temperature"):
        RelaxedSignBernoulli(torch.zeros(2), 0.0)


def test_expand_keeps_parameters():
    d = RelaxedSignBernoulli(torch.tensor(0.4), 0.5).expand((3, 2))
    assert d.batch_shape == (3, 2) and d.temperature == 0.5
    assert SignBernoulli(torch.tensor(0.4)).expand((2,)).log_prob(torch.ones(2)).shape == (2,)


def test_fused_relaxed_draw_and_kl_match_their_formulas_and_finite_differences():
    from bisnn_pyro.models.distributions import _RelaxedSign, _SignKL, log_two_cosh

    torch.manual_seed(0)
    lam = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    u = torch.rand(5, 4, dtype=torch.float64).clamp(1e-6, 1 - 1e-6)
    reference = torch.tanh((lam + 0.5 * (torch.log(u) - torch.log1p(-u))) / 0.7)
    torch.testing.assert_close(_RelaxedSign.apply(lam, u, 0.7), reference)
    assert torch.autograd.gradcheck(lambda x: _RelaxedSign.apply(x, u, 0.7), (lam,))
    # float32, at the extremes of u and of lam (the sigmoid form must not lose the sign or the range)
    finfo = torch.finfo(torch.float32)
    u32 = torch.tensor([finfo.tiny, 1e-6, 0.3, 0.5, 0.9, 1.0 - finfo.eps]).repeat_interleave(6)
    lam32 = torch.tensor([-20.0, -10.0, -0.1, 0.0, 3.0, 20.0]).repeat(6)
    exact = torch.tanh((lam32.double() + 0.5 * torch.logit(u32.double())) / 0.5)
    torch.testing.assert_close(_RelaxedSign.apply(lam32, u32, 0.5).double(), exact, rtol=0, atol=3e-7)

    prior = torch.randn(1, 4, dtype=torch.float64, requires_grad=True)  # broadcast against lam
    formula = torch.tanh(lam) * (lam - prior) - log_two_cosh(lam) + log_two_cosh(prior)
    torch.testing.assert_close(_SignKL.apply(lam, prior), formula)
    assert torch.autograd.gradcheck(_SignKL.apply, (lam, prior))
    # the uniform prior (lp = 0) skips the cross term; a prior may have more dimensions than q
    zero = torch.zeros(1, 4, dtype=torch.float64)
    assert SignBernoulli(zero).uniform and not SignBernoulli(prior.detach()).uniform
    torch.testing.assert_close(_SignKL.apply(lam, zero, None, True), _SignKL.apply(lam, zero))
    assert torch.autograd.gradcheck(lambda x: _SignKL.apply(x, zero, None, True), (lam,))
    wide = torch.randn(3, 5, 4, dtype=torch.float64, requires_grad=True)
    formula = torch.tanh(lam) * (lam - wide) - log_two_cosh(lam) + log_two_cosh(wide)
    torch.testing.assert_close(_SignKL.apply(lam, wide), formula)
    assert torch.autograd.gradcheck(_SignKL.apply, (lam, wide))


def test_kl_in_float32_keeps_its_accuracy_at_large_natural_parameters():
    """tanh, log 2cosh and 1 - tanh^2 taken from one sigmoid stay within float32 rounding of the float64 KL."""
    from bisnn_pyro.models.distributions import _SignKL, log_two_cosh

    lam_q = torch.linspace(-15.0, 15.0, 301, dtype=torch.float64)
    lam_p = torch.tensor([-2.0, 0.0, 0.7], dtype=torch.float64).unsqueeze(-1)
    exact = torch.tanh(lam_q) * (lam_q - lam_p) - log_two_cosh(lam_q) + log_two_cosh(lam_p)
    fast = _SignKL.apply(lam_q.float(), lam_p.float()).double()
    torch.testing.assert_close(fast, exact, rtol=2e-6, atol=2e-6)
    cached = _SignKL.apply(lam_q.float(), lam_p.float(), SignBernoulli(lam_p.float()).log_normalizer)
    torch.testing.assert_close(cached, fast.float(), rtol=0, atol=0)
    uniform = _SignKL.apply(lam_q.float(), torch.zeros(1), None, True).double()
    torch.testing.assert_close(uniform, exact[1], rtol=2e-6, atol=2e-6)


def test_log_normalizer_is_computed_once_per_distribution():
    p = SignBernoulli(torch.tensor([0.0, 1.0, -30.0]))
    torch.testing.assert_close(p.log_normalizer, torch.tensor([math.log(2.0), math.log(2 * math.cosh(1.0)), 30.0]))
    assert p.log_normalizer is p.log_normalizer


def test_enumeration_gives_the_exact_posterior_of_sign_weights():
    """The discrete support lets Pyro enumerate +-1 sites: TraceEnum_ELBO's marginal likelihood and
    posterior marginals of three weights against brute-force enumeration of the 2^3 patterns."""
    import itertools

    import pyro
    import pyro.distributions
    from pyro.infer import TraceEnum_ELBO, config_enumerate

    torch.manual_seed(1)
    features, lam_p = torch.randn(8, 3), torch.tensor([0.3, -0.2, 0.0])
    labels = torch.bernoulli(torch.sigmoid(features @ torch.tensor([1.0, -1.0, 1.0])))

    @config_enumerate
    def model():
        w = [pyro.sample(f"w{j}", SignBernoulli(lam_p[j])) for j in range(3)]
        logits = sum(features[:, j] * w[j] for j in range(3))  # enumerated w[j] broadcasts left of the plate
        with pyro.plate("data", 8):
            pyro.sample("y", pyro.distributions.Bernoulli(logits=logits), obs=labels)

    patterns = torch.tensor(list(itertools.product([-1.0, 1.0], repeat=3)))
    log_joint = SignBernoulli(lam_p).log_prob(patterns).sum(-1) + torch.stack(
        [torch.distributions.Bernoulli(logits=features @ w).log_prob(labels).sum() for w in patterns]
    )
    evidence = torch.logsumexp(log_joint, 0)
    loss = TraceEnum_ELBO(max_plate_nesting=1).loss(model, lambda: None)
    assert loss == pytest.approx(-evidence.item(), rel=1e-5)
    posterior_plus = (log_joint - evidence).exp() @ (patterns > 0).float()
    marginals = TraceEnum_ELBO(max_plate_nesting=1).compute_marginals(model, lambda: None)
    for j in range(3):
        enumerated = marginals[f"w{j}"]
        support = enumerated.enumerate_support()
        assert set(support.reshape(-1).tolist()) == {-1.0, 1.0}
        p_plus = enumerated.log_prob(torch.ones(())).exp()
        assert p_plus.item() == pytest.approx(posterior_plus[j].item(), abs=1e-5)
