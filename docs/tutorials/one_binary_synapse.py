# %% [markdown]
# # One binary synapse
#
# Everything Bayes-BiSNN does to a network of tens of thousands of binary weights, it does to each
# weight on its own: a mean-field posterior over $w \in \{-1, +1\}$ in a natural parameter
# $\lambda$, an ELBO with an exact KL to the prior, a relaxed ("concrete") draw that carries a
# gradient, and a natural-gradient step on $\lambda$.  This tutorial takes a model with a single
# binary synapse, where the exact posterior is two numbers you can enumerate, and checks each of
# those pieces against it, by hand and with the library.
#
# **What you will learn**
#
# * the sign-Bernoulli distribution in its natural parameter: probabilities, mean, log-density,
#   Fisher information, and the library's `SignBernoulli` and `natural_from_probs`;
# * the exact posterior of a one-weight model by enumeration (by hand and with Pyro's
#   `TraceEnum_ELBO`), and why it is again a sign-Bernoulli;
# * the closed-form KL between two sign-Bernoullis, against a Monte Carlo estimate and the library's;
# * that maximising the ELBO over $\lambda$ recovers the exact posterior, and that one
#   natural-gradient step of size 1 *is* Bayes' rule here;
# * the concrete relaxation `RelaxedSignBernoulli`: how its temperature $\tau$ trades the bias of the
#   reparameterised gradient against its variance, and what that bias does to the posterior SVI finds;
# * the natural-gradient step written by hand, next to the library's `BayesianLearningRule`.

# %%
import math
import os

import matplotlib.pyplot as plt
import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.infer import SVI, Trace_ELBO, TraceEnum_ELBO, config_enumerate
from torch.distributions import kl_divergence

from bisnn_pyro.inference import BayesianLearningRule, MeanFieldELBO, NaturalGradientSign, SignBernoulliGuide
from bisnn_pyro.models import RelaxedSignBernoulli, SignBernoulli, natural_from_probs

SMALL = os.environ.get("BISNN_TUTORIAL_SMALL") == "1"  # the test suite runs a small version
MC_SAMPLES = 20_000 if SMALL else 200_000  # Monte Carlo draws for the KL and gradient estimates
ELBO_PARTICLES = 5_000 if SMALL else 20_000  # particles of the library's ELBO estimate
SVI_STEPS = 80 if SMALL else 300  # steps of stochastic optimisation with relaxed draws
pyro.set_rng_seed(0)

# %% [markdown]
# ## 1. The sign-Bernoulli distribution
#
# A distribution over the two points $\{-1, +1\}$ has one parameter.  The library writes it in the
# exponential family's *natural parameter* $\lambda \in \mathbb{R}$ (BayesBiNN's $w_r$):
#
# $$
# p_\lambda(w) = \frac{e^{w\lambda}}{2\cosh\lambda}, \qquad
# P(w = +1) = \operatorname{sigmoid}(2\lambda), \qquad
# \mathbb{E}[w] = \tanh\lambda, \qquad
# \log p_\lambda(w) = w\lambda - \log(2\cosh\lambda).
# $$
#
# So $\lambda = \tfrac12\operatorname{logit} P(w=+1)$ (`natural_from_probs`), $\lambda = 0$ is a fair
# coin, and the mode is $\operatorname{sign}\lambda$.  The log-normaliser $A(\lambda) = \log 2\cosh\lambda$
# gives the mean, $A'(\lambda) = \tanh\lambda$, and the variance, which for an exponential family is
# also the Fisher information in $\lambda$:
#
# $$
# F(\lambda) = A''(\lambda) = \operatorname{Var}[w] = 1 - \tanh^2\lambda .
# $$
#
# The Fisher information vanishes as $|\lambda|$ grows: a weight that is nearly decided barely
# changes its distribution when $\lambda$ moves.  This is the quantity the learning rule divides by
# (section 6).  We check each formula against the library's `SignBernoulli`.

# %%
lam = torch.linspace(-4.0, 4.0, 81, dtype=torch.float64, requires_grad=True)
q = SignBernoulli(lam)
plus, minus = torch.ones_like(lam), -torch.ones_like(lam)
log_normaliser = torch.log(2 * torch.cosh(lam))  # A(lambda), by hand

(mean_from_a,) = torch.autograd.grad(log_normaliser.sum(), lam, create_graph=True)
(fisher_from_a,) = torch.autograd.grad(mean_from_a.sum(), lam)  # A''(lambda)

checks = {
    "P(w=+1) = sigmoid(2 lam)": (q.probs - torch.sigmoid(2 * lam)).abs().max(),
    "log p(+1) = lam - log 2cosh lam": (q.log_prob(plus) - (lam - log_normaliser)).abs().max(),
    "log p(-1) = -lam - log 2cosh lam": (q.log_prob(minus) - (-lam - log_normaliser)).abs().max(),
    "mean = tanh lam = A'(lam)": (q.mean - mean_from_a).abs().max(),
    "variance = 1 - tanh^2 lam = A''(lam)": (q.variance - fisher_from_a).abs().max(),
    "natural_from_probs(P(w=+1)) = lam": (natural_from_probs(q.probs) - lam).abs().max(),
}
for what, error in checks.items():
    print(f"max error, {what}: {error.item():.2e}")
print(f"max formula error: {max(e.item() for e in checks.values()):.2e}")

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
with torch.no_grad():
    axes[0].plot(lam, q.probs, label=r"$P(w=+1) = \mathrm{sigmoid}(2\lambda)$")
    axes[0].plot(lam, q.mean, label=r"$\mathbb{E}[w] = \tanh\lambda$")
    axes[1].plot(lam, q.variance, color="C2", label=r"$F(\lambda) = 1 - \tanh^2\lambda$")
axes[0].set(xlabel=r"natural parameter $\lambda$", ylabel="value", title="Sign-Bernoulli: probability and mean")
axes[1].set(xlabel=r"natural parameter $\lambda$", ylabel="Fisher information", title="Variance = Fisher information")
for ax in axes:
    ax.axvline(0.0, color="grey", lw=0.5)
    ax.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 2. A synapse, its prior and its data
#
# One binary synapse $w$ with a prior that leans towards inhibition, $P(w = +1) = 0.3$, i.e.
# $\lambda_p = \tfrac12\operatorname{logit} 0.3$.  We observe four noisy postsynaptic responses to
# the same presynaptic spike, $y_n \sim \mathcal{N}(w, \sigma^2)$ with $\sigma = 1.5$: data that
# point to excitation, but not decisively.
#
# With one weight the posterior is two numbers, and we can *enumerate* it:
# $p(w \mid y) \propto p(w)\prod_n \mathcal{N}(y_n; w, \sigma^2)$ for $w = \pm 1$.  On $\{-1, +1\}$,
# $w^2 = 1$, so the Gaussian log-likelihood is affine in $w$:
# $\sum_n \log\mathcal{N}(y_n; w, \sigma^2) = w\,\sum_n y_n/\sigma^2 + \text{const}$.  The posterior is
# therefore again a sign-Bernoulli, with natural parameter
#
# $$
# \lambda_{\text{post}} = \lambda_p + \frac{1}{\sigma^2}\sum_n y_n .
# $$
#
# (Any likelihood of one binary weight is affine in $w$, so this conjugacy always holds for a single
# weight: the data add to $\lambda$.)  We compute the posterior three ways: enumeration by hand, the
# closed form, and Pyro's own enumeration (`TraceEnum_ELBO.compute_marginals`, which works because
# `SignBernoulli` declares its support, `enumerate_support()`).

# %%
lam_prior = natural_from_probs(torch.tensor(0.3, dtype=torch.float64))
sigma = 1.5
y = torch.tensor([0.8, 1.9, -0.4, 1.1], dtype=torch.float64)


def model(y):
    """One binary synapse w ~ sign-Bernoulli(lam_prior); responses y_n ~ N(w, sigma^2)."""
    w = pyro.sample("w", SignBernoulli(lam_prior))
    with pyro.plate("data", len(y)):
        pyro.sample("y", dist.Normal(w, sigma), obs=y)


def log_likelihood(w):
    """sum_n log N(y_n; w, sigma^2), for a tensor of weights w (any shape)."""
    return dist.Normal(w.unsqueeze(-1), sigma).log_prob(y).sum(-1)


prior = SignBernoulli(lam_prior)
support = prior.enumerate_support()  # tensor([-1., 1.])
log_joint = prior.log_prob(support) + log_likelihood(support)
log_evidence = torch.logsumexp(log_joint, 0)  # log p(y), exactly
posterior_by_enumeration = (log_joint - log_evidence).exp()  # p(w = -1 | y), p(w = +1 | y)

lam_post = lam_prior + y.sum() / sigma**2
marginal = TraceEnum_ELBO(max_plate_nesting=1).compute_marginals(config_enumerate(model), lambda y: None, y)["w"]

print(f"prior P(w=+1): {prior.probs.item():.6f}")
print(f"enumerated posterior P(w=+1): {posterior_by_enumeration[1].item():.6f}")
print(f"closed-form posterior P(w=+1): {SignBernoulli(lam_post).probs.item():.6f}")
print(f"pyro TraceEnum posterior P(w=+1): {marginal.probs.item():.6f}")
print(f"posterior natural parameter lam_post: {lam_post.item():.6f}")
print(f"log evidence log p(y): {log_evidence.item():.6f}")

# %% [markdown]
# ## 3. The mean-field ELBO and its exact KL
#
# Variational inference picks $q_\lambda(w)$ from the sign-Bernoulli family by maximising
#
# $$
# \mathcal{L}(\lambda) = \mathbb{E}_{q_\lambda}[\log p(y \mid w)] - \mathrm{KL}(q_\lambda \,\|\, p_{\lambda_p})
# = \log p(y) - \mathrm{KL}(q_\lambda \,\|\, p(w \mid y)) \le \log p(y).
# $$
#
# The KL between two sign-Bernoullis has a closed form.  With $\mu = \tanh\lambda$,
#
# $$
# \mathrm{KL}(q_\lambda \,\|\, p_{\lambda_p})
# = \mathbb{E}_q[w(\lambda - \lambda_p)] - \log\cosh\lambda + \log\cosh\lambda_p
# = \mu\,(\lambda - \lambda_p) - \log\cosh\lambda + \log\cosh\lambda_p .
# $$
#
# The library registers it with `torch.distributions.kl_divergence` (that is what its ELBO uses), and
# it must equal PyTorch's Bernoulli KL with logits $2\lambda$ and $2\lambda_p$.  A Monte Carlo estimate,
# $\frac1S\sum_s [\log q(w_s) - \log p(w_s)]$ with $w_s \sim q$, should agree within its standard error.

# %%
lam_q = torch.tensor(0.7, dtype=torch.float64)
q, p = SignBernoulli(lam_q), SignBernoulli(lam_prior)
kl_hand = torch.tanh(lam_q) * (lam_q - lam_prior) - torch.log(torch.cosh(lam_q)) + torch.log(torch.cosh(lam_prior))
kl_library = kl_divergence(q, p)
kl_torch = kl_divergence(dist.Bernoulli(logits=2 * lam_q), dist.Bernoulli(logits=2 * lam_prior))
draws = q.sample((MC_SAMPLES,))
log_ratio = q.log_prob(draws) - p.log_prob(draws)
kl_mc, kl_mc_se = log_ratio.mean(), log_ratio.std() / math.sqrt(MC_SAMPLES)

print(f"exact KL (closed form, by hand): {kl_hand.item():.6f}")
print(f"library KL (kl_divergence of SignBernoulli): {kl_library.item():.6f}")
print(f"torch Bernoulli KL (logits 2 lam): {kl_torch.item():.6f}")
print(f"Monte Carlo KL ({MC_SAMPLES} draws): {kl_mc.item():.6f} +- {kl_mc_se.item():.6f}")

# %% [markdown]
# Now the ELBO itself.  Enumeration gives it exactly, for every $\lambda$:
# $\mathcal{L}(\lambda) = \sum_{w=\pm1} q_\lambda(w)\log p(y \mid w) - \mathrm{KL}$.  The library's guide
# for a $\pm1$ site is `SignBernoulliGuide`; in evaluation mode (`guide.eval()`) it draws exact $\pm1$
# weights, and Pyro's `Trace_ELBO` then gives an unbiased Monte Carlo estimate of the same number.
# In training mode it draws *relaxed* weights (section 5), and the library's training loss
# `MeanFieldELBO` (Pyro's mean-field ELBO with the exact KL) scores the likelihood at those relaxed
# values: that is a *surrogate*, not the ELBO, and its value differs.  Pyro reports the loss, the
# negative ELBO.


# %%
def exact_elbo(lam):
    """L(lam) by enumerating w in {-1, +1} (lam: a tensor of any shape)."""
    q = SignBernoulli(lam)
    one = torch.ones_like(lam)
    expected_log_lik = (1 - q.probs) * log_likelihood(-one) + q.probs * log_likelihood(one)
    return expected_log_lik - kl_divergence(q, SignBernoulli(lam_prior))


guide = SignBernoulliGuide(model, temperature=0.5, init_scale=0.0, seed=0).setup(y)
with torch.no_grad():
    guide.site_parameters("w").natural.fill_(lam_q.item())

# the standard deviation under q of one particle, log p(y | w) + log p(w) - log q(w), by enumeration,
# for the estimate's standard error
p_plus = SignBernoulli(lam_q).probs
particle_minus, particle_plus = log_likelihood(support) + p.log_prob(support) - q.log_prob(support)
elbo_sd = (particle_plus - particle_minus).abs() * torch.sqrt(p_plus * (1 - p_plus))
guide.eval()  # exact +-1 draws
particles = dict(num_particles=ELBO_PARTICLES, vectorize_particles=True, max_plate_nesting=1)
elbo_mc = -Trace_ELBO(**particles).loss(model, guide, y)
guide.train()  # relaxed draws at tau = 0.5
surrogate = -MeanFieldELBO(**particles).loss(model, guide, y)
elbo_se = elbo_sd.item() / math.sqrt(ELBO_PARTICLES)

print(f"exact ELBO at lam = {lam_q.item():.2f} (enumeration): {exact_elbo(lam_q).item():.6f}")
print(f"Trace_ELBO estimate, library guide, exact draws ({ELBO_PARTICLES} particles): {elbo_mc:.6f} +- {elbo_se:.6f}")
print(f"relaxed surrogate ELBO (MeanFieldELBO, tau = 0.5): {surrogate:.6f}")

# %% [markdown]
# ## 4. Maximising the ELBO recovers the exact posterior
#
# The sign-Bernoulli family contains the exact posterior of one weight, so the bound is tight at
# $\lambda = \lambda_{\text{post}}$: there $\mathrm{KL}(q \,\|\, p(w \mid y)) = 0$ and
# $\mathcal{L} = \log p(y)$.
#
# The *natural* gradient shows it in one line.  Write the expected log-likelihood as
# $\mathbb{E}_q[\log p(y\mid w)] = \mu\,c + \text{const}$ with $c = \sum_n y_n/\sigma^2$.  Then
# $\partial\mathcal{L}/\partial\lambda = (1 - \mu^2)\,c - (1-\mu^2)(\lambda - \lambda_p)$, and dividing by the
# Fisher information $1 - \mu^2$,
#
# $$
# \tilde\nabla_\lambda(-\mathcal{L}) = \lambda - \lambda_p - c = \lambda - \lambda_{\text{post}} .
# $$
#
# A natural-gradient step of size $\eta$ moves $\lambda$ a fraction $\eta$ of the way to the posterior,
# and with $\eta = 1$ it lands on it: one step of the Bayesian learning rule *is* Bayes' rule
# (Khan & Rue's observation for conjugate models).  The library's optimiser `NaturalGradientSign`
# (what `BayesianLearningRule` runs on natural parameters) does this on the exact negative ELBO.

# %%
for lr, steps in [(1.0, 1), (0.3, 40)]:
    lam_fit = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimiser = NaturalGradientSign([lam_fit], lr=lr)
    for _ in range(steps):
        optimiser.zero_grad()
        (-exact_elbo(lam_fit)).backward()
        optimiser.step()
    print(f"natural gradient, lr = {lr}, {steps} step(s), lam: {lam_fit.item():.6f}")
lam_opt = lam_fit.detach()
print(f"ELBO optimum lam: {lam_opt.item():.6f}")
print(f"ELBO optimum P(w=+1): {SignBernoulli(lam_opt).probs.item():.6f}")
print(f"max ELBO: {exact_elbo(lam_opt).item():.6f}")
print(f"log evidence minus max ELBO: {(log_evidence - exact_elbo(lam_opt)).item():.2e}")

# %%
grid = torch.linspace(-2.0, 3.0, 201, dtype=torch.float64)
with torch.no_grad():
    plt.figure(figsize=(6, 3.8))
    plt.plot(grid, exact_elbo(grid), label=r"ELBO $\mathcal{L}(\lambda)$ (enumeration)")
    plt.axhline(log_evidence.item(), color="k", ls="--", lw=1, label=r"$\log p(y)$")
    plt.axvline(lam_post.item(), color="C3", ls=":", label=r"$\lambda_{\mathrm{post}}$")
    plt.axvline(lam_prior.item(), color="grey", ls=":", label=r"$\lambda_p$ (prior)")
    plt.xlabel(r"natural parameter $\lambda$")
    plt.ylabel("nats")
    plt.title("The ELBO of one binary synapse touches log p(y) at the posterior")
    plt.legend()
    plt.show()

# %% [markdown]
# ## 5. The concrete relaxation and its temperature
#
# In a network the expected log-likelihood is a sum over $2^{\text{weights}}$ sign patterns, so nobody
# enumerates it; Bayes-BiSNN estimates its gradient from a *relaxed* draw.  With
# $u \sim \mathcal{U}(0, 1)$, logistic noise $\delta = \tfrac12\operatorname{logit} u$ and a temperature $\tau > 0$,
#
# $$
# \tilde w = \tanh\!\left(\frac{\lambda + \delta}{\tau}\right) \in (-1, 1), \qquad
# \operatorname{sign}\tilde w \sim q_\lambda \text{ exactly}, \qquad
# \frac{\partial \tilde w}{\partial\lambda} = \frac{1 - \tilde w^2}{\tau}.
# $$
#
# (`RelaxedSignBernoulli(lam, tau).rsample()`; the guide draws it in training mode.)  The
# reparameterised estimate of $\partial_\lambda \mathbb{E}_q[\log p(y\mid w)]$ is
# $\hat g = \partial_{\tilde w}\log p(y \mid \tilde w)\,(1-\tilde w^2)/\tau$.  It evaluates the likelihood at
# values *between* $-1$ and $+1$, which a binary weight never takes (there the Gaussian
# log-likelihood is no longer affine in $w$, and $\mathbb{E}[\tilde w] \ne \tanh\lambda$), so it is biased; as
# $\tau \to 0$, $\tilde w \to \pm1$ and the bias vanishes, but $(1-\tilde w^2)/\tau$ becomes a spike of
# height $1/\tau$ on the rare draws near $0$, so the variance grows like $1/\tau$.
#
# First, the sign of a relaxed draw has exactly the law $q_\lambda$ at every temperature:

# %%
lam0 = torch.tensor(0.3, dtype=torch.float64)
for tau in (0.1, 1.0, 5.0):
    w_relaxed = RelaxedSignBernoulli(lam0, tau).rsample((MC_SAMPLES,))
    share = (w_relaxed > 0).double().mean().item()
    print(f"tau = {tau}: share of relaxed draws > 0: {share:.4f} (q: {SignBernoulli(lam0).probs.item():.4f}),"
          f" mean |w~| = {w_relaxed.abs().mean().item():.3f}")

# %% [markdown]
# Now the gradient estimate at $\lambda = 0.3$, against the exact gradient by enumeration
# (autograd through $\sum_{w=\pm1} q_\lambda(w)\log p(y\mid w)$, which equals $(1-\tanh^2\lambda)\,c$).  Each
# of the $S$ relaxed draws gets its own copy of $\lambda$, so one backward pass gives all $S$
# per-draw gradients.  For reference, the score-function (REINFORCE) estimator with exact draws,
# $\log p(y\mid w)\,\partial_\lambda\log q_\lambda(w)$, the one `bayes-sf` uses, is unbiased at any
# temperature, and its variance is the dashed line.

# %%
TAUS = [0.05, 0.1, 0.25, 0.5, 1.0, 2.0]
lam0 = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
q0 = SignBernoulli(lam0)
expected_log_lik = (q0.log_prob(support).exp() * log_likelihood(support)).sum()
(exact_gradient,) = torch.autograd.grad(expected_log_lik, lam0)
lam0 = lam0.detach()
print(f"exact gradient by enumeration: {exact_gradient.item():.6f}")
print(f"closed form (1 - tanh^2 lam) c: {((1 - torch.tanh(lam0) ** 2) * y.sum() / sigma**2).item():.6f}")

torch.manual_seed(1)
bias, bias_se, variance = [], [], []
for tau in TAUS:
    lam_copies = lam0.expand(MC_SAMPLES).clone().requires_grad_()
    w_relaxed = RelaxedSignBernoulli(lam_copies, tau).rsample()
    log_likelihood(w_relaxed).sum().backward()
    g = lam_copies.grad  # one gradient estimate per draw
    bias.append((g.mean() - exact_gradient).item())
    bias_se.append((g.std() / math.sqrt(MC_SAMPLES)).item())
    variance.append(g.var().item())
    print(f"tau = {tau}: gradient bias {bias[-1]:+.4f} +- {bias_se[-1]:.4f}, variance {variance[-1]:.4f}")

w_exact = SignBernoulli(lam0).sample((MC_SAMPLES,))
score = w_exact - torch.tanh(lam0)  # d/dlam log q(w) = w - tanh(lam)
score_function = log_likelihood(w_exact) * score
print(f"score-function estimator: bias {score_function.mean().item() - exact_gradient.item():+.4f}"
      f" +- {score_function.std().item() / math.sqrt(MC_SAMPLES):.4f}, variance {score_function.var().item():.4f}")

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
axes[0].errorbar(TAUS, bias, yerr=[2 * s for s in bias_se], marker="o", capsize=3, label="relaxed (reparameterised)")
axes[0].axhline(0.0, color="k", lw=0.8, label="unbiased (score function)")
axes[0].set(xscale="log", xlabel=r"temperature $\tau$", ylabel="bias of the gradient estimate",
            title="Bias (error bars: 2 standard errors)")
axes[1].plot(TAUS, variance, marker="o", label="relaxed (reparameterised)")
axes[1].axhline(score_function.var().item(), color="C1", ls="--", label="score function, exact draws")
axes[1].set(xscale="log", yscale="log", xlabel=r"temperature $\tau$", ylabel="variance per draw",
            title="Variance")
for ax in axes:
    ax.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# The bias is not only a curiosity: a stochastic optimiser follows the *biased* gradient, so it
# converges where the biased gradient vanishes, not at $\lambda_{\text{post}}$.  Here the relaxed
# gradient underestimates the pull of the data, so the posterior SVI finds sits between the prior and
# the exact posterior, and the lower $\tau$, the closer it gets.  We train the library's guide with
# Pyro's `SVI`, the library's `MeanFieldELBO` and `BayesianLearningRule` (32 relaxed draws a step),
# and average $\lambda$ over the second half of the run.  (In a network, this shrinkage towards the
# prior is one reason a relaxed posterior can be *under*-confident; docs/studies.md measures a lower
# temperature sharpening the two-moons ensemble.)

# %%
svi_lambda = {}
for tau in (0.25, 1.0):
    pyro.set_rng_seed(0)
    guide = SignBernoulliGuide(model, temperature=tau, init_scale=0.0, seed=0).setup(y)
    loss = MeanFieldELBO(num_particles=32, vectorize_particles=True, max_plate_nesting=1)
    svi = SVI(model, guide, BayesianLearningRule({"lr": 0.1}), loss)
    path = []
    for _ in range(SVI_STEPS):
        svi.step(y)
        path.append(guide.natural()["w"].item())
    svi_lambda[tau] = sum(path[SVI_STEPS // 2 :]) / (SVI_STEPS - SVI_STEPS // 2)
    print(f"SVI with relaxed draws, tau = {tau}, lam: {svi_lambda[tau]:.4f}"
          f" (P(w=+1) = {SignBernoulli(torch.tensor(svi_lambda[tau])).probs.item():.4f})")
print(f"exact posterior, lam: {lam_post.item():.4f} (P(w=+1) = {SignBernoulli(lam_post).probs.item():.4f})")

# %% [markdown]
# ## 6. The natural-gradient step, by hand and by the library
#
# One step of the Bayesian learning rule on a relaxed draw $\tilde w$ (DESIGN.md §3): the Euclidean
# gradient of the loss $-\mathcal{L}$ in $\lambda$, divided by the Fisher information $1 - \mu^2$, is
#
# $$
# \tilde\nabla_\lambda
# = \frac{\partial_{\tilde w}[-\log p(y\mid\tilde w)]\,(1-\tilde w^2)}{\tau\,(1-\mu^2)} + (\lambda - \lambda_p),
# \qquad \lambda \leftarrow \lambda - \eta\,\tilde\nabla_\lambda .
# $$
#
# The KL part is exactly $\lambda - \lambda_p$: the prior enters the rule only through that
# difference.  Here $\partial_{\tilde w}[-\log p(y\mid\tilde w)] = -\sum_n (y_n - \tilde w)/\sigma^2$.
# We take one `SVI` step with `BayesianLearningRule`, record the relaxed draw the guide made
# (`poutine.trace`), and compute the same step by hand from that draw.

# %%
tau, eta = 0.5, 0.05
pyro.set_rng_seed(3)
guide = SignBernoulliGuide(model, temperature=tau, init_scale=0.0, seed=0).setup(y)
with torch.no_grad():
    guide.site_parameters("w").natural.fill_(0.4)
lam_before = guide.natural()["w"].detach().clone()
recorded = poutine.trace(guide)
svi = SVI(model, recorded, BayesianLearningRule({"lr": eta}), MeanFieldELBO())
svi.step(y)
lam_library = guide.natural()["w"].detach()

w_tilde = recorded.trace.nodes["w"]["value"].detach()
d_loss_d_w = -((y - w_tilde) / sigma**2).sum()
mu = torch.tanh(lam_before)
natural_gradient = d_loss_d_w * (1 - w_tilde**2) / (tau * (1 - mu**2)) + (lam_before - lam_prior)
lam_hand = lam_before - eta * natural_gradient

print(f"relaxed draw w~: {w_tilde.item():.6f}")
print(f"lam before the step: {lam_before.item():.6f}")
print(f"hand step, lam after: {lam_hand.item():.6f}")
print(f"library step, lam after: {lam_library.item():.6f}")
print(f"hand step minus library step: {(lam_hand - lam_library).abs().item():.2e}")

# %% [markdown]
# What to take to a network: every binary weight is this synapse, with a likelihood term that
# depends on all the others.  The rule, the exact KL and the relaxation are applied to each weight
# separately; only the gradient $\partial_{\tilde w}[-\log p]$ comes from back-propagating through
# the spiking network (with surrogate gradients for the spikes).  The tutorial
# [The learning rule](../learning_rule/) follows the rule into a network.
#
# ## Exercises
#
# 1. Set the prior to $P(w=+1) = 0.5$ and predict $\lambda_{\text{post}}$ from the formula in
#    section 2 before running.  Then double every $y_n$: by how much does $\lambda_{\text{post}}$ move?
# 2. Replace the Gaussian likelihood by a Bernoulli one, $y_n \sim \mathrm{Bernoulli}(\operatorname{sigmoid}(a w))$.
#    Is the posterior still a sign-Bernoulli?  Find its natural parameter by hand and check it with
#    the enumeration of section 2.
# 3. In section 4, run the natural-gradient loop with $\eta = 1.5$ and with $\eta = 2.5$.  Predict from
#    $\lambda_{t+1} - \lambda_{\text{post}} = (1-\eta)(\lambda_t - \lambda_{\text{post}})$ which converges,
#    which oscillates, which diverges.
# 4. Extend `TAUS` to $0.01$ and $5$.  Where does the mean squared error (bias² + variance / 32 for a
#    32-draw step) have its minimum?  Does the SVI result of section 5 at that $\tau$ come closer to
#    $\lambda_{\text{post}}$ than at $\tau = 0.25$?
# 5. In section 6, replace `BayesianLearningRule({"lr": eta})` by `pyro.optim.Adam({"lr": eta})` and
#    compare the step with the hand formula: which part of the formula does Adam not apply?
