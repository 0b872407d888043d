"""BetaBinaryPrior: the hierarchical prior's mathematics, its default guide, and its InferenceData."""

import pyro
import pyro.optim
import pytest
import torch
from pyro import poutine
from pyro.infer import SVI

from bisnn_pyro import BayesianSNN, ReadoutCategorical, SpikingMLP
from bisnn_pyro.analysis.inference_data import to_inference_data
from bisnn_pyro.inference import BetaGuide, GuideList, MeanFieldELBO, SignBernoulliGuide
from bisnn_pyro.models import BetaBinaryPrior
from bisnn_pyro.models.distributions import log_two_cosh


def _model(per="layer", a=2.0, b=3.0, hidden=(16,)):
    x = torch.zeros(4, 3, 20)  # three steps, all burn-in: the ELBO is the KL alone
    prior = BetaBinaryPrior(a, b, per=per)
    net = SpikingMLP(20, hidden=hidden, num_classes=2)
    return BayesianSNN(net, prior, ReadoutCategorical(4, burn_in=10), SignBernoulliGuide).setup(x), x


@pytest.mark.parametrize("per", ["layer", "neuron"])
def test_default_guide_composes_a_beta_guide_for_the_hyper_latents(per):
    bsnn, _ = _model(per)
    assert isinstance(bsnn.guide, GuideList)
    sign, beta = bsnn.guide.parts
    assert isinstance(sign, SignBernoulliGuide) and isinstance(beta, BetaGuide)
    assert list(sign.sites) == ["layers.0.weight"] and list(beta.sites) == ["layers.0.weight_p"]
    assert bsnn.sites.hyper == ["layers.0.weight_p"]
    assert beta.sites["layers.0.weight_p"] == (() if per == "layer" else (16, 1))
    assert list(bsnn.guide.distributions()) == ["layers.0.weight_p", "layers.0.weight"]  # the model's order


def test_expected_log_prior_matches_the_closed_form():
    """E over q(p) = Beta(alpha, beta) of E over q(w) of log p(w | p), through the prior's own
    distribution, against sum ((1+m)/2 (psi(alpha) - psi(alpha+beta)) + (1-m)/2 (psi(beta) - psi(alpha+beta)))."""
    torch.manual_seed(0)
    prior = BetaBinaryPrior(2.0, 3.0)
    shape = torch.Size([6, 5])
    m = torch.tanh(torch.randn(shape, dtype=torch.float64))
    alpha, beta = torch.tensor(7.0, dtype=torch.float64), torch.tensor(4.0, dtype=torch.float64)
    p = torch.distributions.Beta(alpha, beta).sample((200000,))
    buffer = prior.buffer("w", torch.zeros(shape, dtype=torch.float64))
    with poutine.condition(data={"w_p": p}):
        conditional = prior.distribution("w", buffer, shape)
    assert conditional.batch_shape == (200000, 6, 5)
    natural = conditional.natural
    per_draw = (m * natural - log_two_cosh(natural)).sum((-1, -2))  # E_q(w) log p(w | p) per draw
    digamma = torch.digamma
    closed = (
        (1 + m) / 2 * (digamma(alpha) - digamma(alpha + beta)) + (1 - m) / 2 * (digamma(beta) - digamma(alpha + beta))
    ).sum()
    stderr = per_draw.std() / per_draw.numel() ** 0.5
    assert abs(per_draw.mean() - closed) < 4 * stderr


def test_a_run_recovers_a_known_p():
    """Weights decided as a draw with p = 0.8 (as data that determine them would leave them):
    SVI moves q(p) from the prior Beta(2, 3) to the conjugate optimum's mean,
    (a + sum (1 + m)/2) / (a + b + n), and concentrates it."""
    pyro.set_rng_seed(0)
    bsnn, x = _model()
    sign, beta = bsnn.guide.parts
    lam = sign.natural()["layers.0.weight"]
    with torch.no_grad():
        lam.copy_(torch.where(torch.rand(lam.shape) < 0.8, 3.0, -3.0))
    lam.requires_grad_(False)
    m = torch.tanh(lam)
    conjugate_mean = (2.0 + ((1 + m) / 2).sum()) / (5.0 + m.numel())
    svi = SVI(
        bsnn.model, bsnn.guide, pyro.optim.Adam({"lr": 0.05}), MeanFieldELBO(num_particles=8, vectorize_particles=True)
    )
    for _ in range(600):
        svi.step(x)
    q = beta.distributions()["layers.0.weight_p"]
    assert abs(q.mean.item() - conjugate_mean.item()) < 0.02
    assert abs(q.mean.item() - 0.8) < 0.06
    params = beta.site_parameters("layers.0.weight_p")
    assert (params.alpha + params.beta).item() > 50  # from 5: concentrated by the 320 weights


@pytest.mark.parametrize("per", ["layer", "neuron"])
def test_inference_data_keeps_every_site_with_its_own_dims(per):
    bsnn, x = _model(per)
    x = torch.rand(6, 12, 20).lt(0.3).float()
    idata = to_inference_data(bsnn, x, torch.zeros(6, dtype=torch.long), samples=5)
    posterior = idata.posterior
    hyper = posterior["layers_0_weight_p"]
    assert hyper.shape == ((1, 5) if per == "layer" else (1, 5, 16, 1))
    assert ((hyper > 0) & (hyper < 1)).all()
    assert posterior["w_layers_0"].shape == (1, 5, 16, 20)
    assert set(posterior["w_layers_0"].values.ravel().tolist()) <= {-1.0, 1.0}
    fractions = [name for name in posterior.data_vars if name.startswith("frac_plus")]
    assert fractions == ["frac_plus_layers_0"]  # only the +-1 site
