import itertools

import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import SVI, TraceGraph_ELBO
from pyro.nn import PyroModule, PyroSample
from torch.distributions import kl_divergence

from bisnn_pyro.errors import TrainingDiverged
from bisnn_pyro.inference import BayesianLearningRule, MeanFieldELBO, NaturalGradientSign, SignBernoulliGuide
from bisnn_pyro.models import SignBernoulli
from bisnn_pyro.models.distributions import sign_fisher


def test_one_step_equals_the_papers_closed_form():
    """lam <- (1 - eta rho) lam - eta (g (1 - w~^2) / (tau (1 - mu^2)) - rho lam_p)."""
    torch.manual_seed(0)
    tau, eta, rho = 0.7, 0.05, 0.3
    lam0 = torch.randn(50, dtype=torch.float64)
    lam_p = 0.2 * torch.randn(50, dtype=torch.float64)
    delta = 0.5 * torch.logit(torch.rand(50, dtype=torch.float64))
    c = torch.randn(50, dtype=torch.float64)  # loss = c . w~, so g = dloss/dw~ = c

    lam = lam0.clone().requires_grad_()
    w = torch.tanh((lam + delta) / tau)
    loss = (c * w).sum() + rho * kl_divergence(SignBernoulli(lam), SignBernoulli(lam_p)).sum()
    loss.backward()
    NaturalGradientSign([lam], lr=eta).step()

    w0 = torch.tanh((lam0 + delta) / tau)
    mu0 = torch.tanh(lam0)
    expected = (1 - eta * rho) * lam0 - eta * (c * (1 - w0**2) / (tau * (1 - mu0**2)) - rho * lam_p)
    torch.testing.assert_close(lam.detach(), expected)


def test_preconditioner_is_guarded_against_overflow():
    lam = torch.tensor([50.0, -50.0, 9.5, 0.0], requires_grad=True)
    lam.grad = torch.tensor([1e30, -1e30, 3e38, 1.0])
    optimizer = NaturalGradientSign([lam], lr=1.0, max_natural=10.0)
    for _ in range(3):
        optimizer.step()
    assert torch.isfinite(lam).all()
    assert lam.abs().max() <= 10.0


@pytest.mark.parametrize("bad", [float("inf"), float("nan")])
def test_a_gradient_that_is_not_finite_stops_the_rule_rather_than_being_stepped_on(bad):
    lam = torch.tensor([0.5, -0.5], requires_grad=True)
    lam.grad = torch.tensor([bad, 1.0])
    with pytest.raises(TrainingDiverged, match="is not finite"):
        NaturalGradientSign([lam], lr=1.0).step()
    assert torch.equal(lam.detach(), torch.tensor([0.5, -0.5]))


def test_fisher_is_accurate_where_it_is_small():
    """1 - tanh^2 computed as 4 s (1 - s), s = sigmoid(-2|lam|): within 2e-6 relative of 1 / cosh^2
    in float32 up to |lam| = 12, where 1 - tanh^2 in float32 rounds to zero."""
    lam = torch.linspace(-12.0, 12.0, 2401, dtype=torch.float64)
    exact = 1.0 / torch.cosh(lam) ** 2
    torch.testing.assert_close(sign_fisher(lam.float()).double(), exact, rtol=2e-6, atol=0)
    torch.testing.assert_close(sign_fisher(lam), 1.0 - torch.tanh(lam) ** 2)


def test_kl_part_of_the_natural_gradient_is_lam_minus_prior_in_float32():
    """The KL's gradient (1 - tanh^2 lam)(lam - lam_p) and the preconditioner use one formula for
    1 - tanh^2, so the rule's KL step is lam - lam_p even where 1 - tanh^2 is tiny."""
    lam_q = torch.linspace(-9.5, 9.5, 39).requires_grad_()
    lam_p = torch.full((39,), 0.3)
    kl_divergence(SignBernoulli(lam_q), SignBernoulli(lam_p)).sum().backward()
    before = lam_q.detach().clone()
    NaturalGradientSign([lam_q], lr=1e-3, min_fisher=0.0).step()
    torch.testing.assert_close((before - lam_q.detach()) / 1e-3, before - lam_p, rtol=1e-3, atol=1e-3)


def test_momentum_averages_natural_gradients():
    lam = torch.zeros(3, requires_grad=True)
    optimizer = NaturalGradientSign([lam], lr=1.0, momentum=0.5)
    for _ in range(2):
        lam.grad = torch.ones(3)  # Fisher is 1 at lam = 0, then < 1
        optimizer.step()
    fisher = 1 - torch.tanh(torch.tensor(-1.0)) ** 2
    torch.testing.assert_close(lam.detach(), torch.full((3,), -1.0 - (0.5 + 1 / fisher)))


def test_svi_step_with_pyro_equals_the_closed_form():
    """Through SVI + MeanFieldELBO the KL enters exactly and the rule preconditions it."""
    tau, eta, beta = 0.5, 0.01, 2.0
    lam_p = torch.tensor([0.3, -0.2, 0.0, 0.1])
    c = torch.tensor([1.0, -2.0, 0.5, 0.0])

    class Model(PyroModule):
        def __init__(self):
            super().__init__()
            self.w = PyroSample(SignBernoulli(lam_p).to_event(1))

        def forward(self):
            with poutine.scale(scale=beta):
                w = self.w
            pyro.factor("likelihood", -(c * w).sum())

    model = Model()
    guide = SignBernoulliGuide(model, temperature=tau, init_scale=0.5, seed=3).setup()
    lam0 = guide.natural()["w"].detach().clone()
    recorder = poutine.trace(lambda: guide_scaled())

    def guide_scaled():
        with poutine.scale(scale=beta):
            return guide()

    svi = SVI(model, recorder, BayesianLearningRule({"lr": eta}), MeanFieldELBO())
    svi.step()
    w0 = recorder.trace.nodes["w"]["value"].detach()
    natural_grad = c * (1 - w0**2) / (tau * (1 - torch.tanh(lam0) ** 2)) + beta * (lam0 - lam_p)
    torch.testing.assert_close(guide.natural()["w"].detach(), lam0 - eta * natural_grad)


def _tiny_regression():
    torch.manual_seed(4)
    features = torch.randn(12, 3)
    truth = torch.tensor([1.0, -1.0, 1.0])
    labels = torch.bernoulli(torch.sigmoid(0.6 * features @ truth))
    return features, labels


def _log_joint(w, features, labels, lam_p):
    logits = 0.6 * features @ w
    lik = torch.distributions.Bernoulli(logits=logits).log_prob(labels).sum()
    return lik + SignBernoulli(lam_p).log_prob(w).sum()


def _mean_field_optimum_by_enumeration(features, labels, lam_p, sweeps=200):
    """Coordinate ascent (CAVI) on the enumerated joint: the independent reference."""
    patterns = torch.tensor(list(itertools.product([-1.0, 1.0], repeat=3)))
    log_joint = torch.stack([_log_joint(w, features, labels, lam_p) for w in patterns])
    lam = torch.zeros(3)
    for _ in range(sweeps):
        for j in range(3):
            q = SignBernoulli(lam).log_prob(patterns).exp()  # (8, 3)
            others = torch.cat([q[:, :j], q[:, j + 1 :]], 1).prod(1)
            expected = [
                (log_joint * others * (patterns[:, j] == s)).sum() / (others * (patterns[:, j] == s)).sum()
                for s in (1.0, -1.0)
            ]
            lam[j] = 0.5 * (expected[0] - expected[1])
    return lam


def test_natural_gradient_reaches_the_mean_field_optimum_by_enumeration():
    """Exact ELBO by enumerating all 2^3 sign patterns; the rule must land on the CAVI fixed point."""
    features, labels = _tiny_regression()
    lam_p = torch.tensor([0.2, 0.0, -0.1])
    patterns = torch.tensor(list(itertools.product([-1.0, 1.0], repeat=3)))
    log_lik = torch.stack([_log_joint(w, features, labels, lam_p) for w in patterns]) - SignBernoulli(lam_p).log_prob(
        patterns
    ).sum(-1)
    lam = torch.zeros(3, requires_grad=True)
    optimizer = NaturalGradientSign([lam], lr=0.3)
    for _ in range(300):
        optimizer.zero_grad()
        q_patterns = SignBernoulli(lam).log_prob(patterns).sum(-1).exp()
        loss = -(q_patterns * log_lik).sum() + kl_divergence(SignBernoulli(lam), SignBernoulli(lam_p)).sum()
        loss.backward()
        optimizer.step()
    reference = _mean_field_optimum_by_enumeration(features, labels, lam_p)
    torch.testing.assert_close(lam.detach(), reference, atol=2e-3, rtol=0)
    assert reference.abs().min() > 0.05  # the data decided something


def test_score_function_gradient_is_unbiased():
    """TraceGraph_ELBO with exact +-1 samples (bayes-sf) estimates the exact ELBO gradient."""
    features, labels = _tiny_regression()
    lam_p = torch.tensor([0.2, 0.0, -0.1])

    def model():
        w = pyro.sample("w", SignBernoulli(lam_p).to_event(1))
        with pyro.plate("data", len(labels)):
            logits = 0.6 * (w.reshape(-1, 3) @ features.T).squeeze(0)  # (particles, N) or (N,)
            pyro.sample("y", torch.distributions.Bernoulli(logits=logits), obs=labels)

    guide = SignBernoulliGuide(model, temperature=None, init_scale=0.5, seed=2).setup()
    elbo = TraceGraph_ELBO(num_particles=20000, vectorize_particles=True, max_plate_nesting=1)
    elbo.loss_and_grads(model, guide)
    lam_param = guide.site_parameters("w").natural
    estimate = lam_param.grad.clone()

    lam = lam_param.detach().clone().requires_grad_()
    patterns = torch.tensor(list(itertools.product([-1.0, 1.0], repeat=3)))
    log_joint = torch.stack([_log_joint(w, features, labels, lam_p) for w in patterns])
    log_q = SignBernoulli(lam).log_prob(patterns).sum(-1)
    exact_loss = -(log_q.exp() * (log_joint - log_q)).sum()
    (exact,) = torch.autograd.grad(exact_loss, lam)
    torch.testing.assert_close(estimate, exact, atol=0.15 + 0.05 * exact.abs().max().item(), rtol=0)
    assert exact.abs().max() > 0.5  # a gradient worth estimating


def test_guide_modes():
    model = lambda: pyro.sample("w", SignBernoulli(torch.zeros(5)).to_event(1))  # noqa: E731
    guide = SignBernoulliGuide(model, temperature=0.5, init_scale=1.0, seed=1).setup()
    lam = guide.natural()["w"].detach()
    assert torch.equal(guide.median()["w"], torch.where(lam >= 0, 1.0, -1.0))
    torch.testing.assert_close(guide.mean()["w"], torch.tanh(lam))
    relaxed = guide()["w"]
    assert not set(relaxed.unique().tolist()) <= {-1.0, 1.0}
    guide.eval()
    assert set(guide()["w"].unique().tolist()) <= {-1.0, 1.0}


def test_guide_requires_setup():
    guide = SignBernoulliGuide(lambda: None)
    with pytest.raises(RuntimeError, match="setup"):
        guide()
