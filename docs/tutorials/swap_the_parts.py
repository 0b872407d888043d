# %% [markdown]
# # Swap the parts
#
# A Bayes-BiSNN in this library is four parts over one network, in the manner of TyXe:
# `BayesianSNN(net, prior, likelihood, guide)`, trained with a loss (an ELBO) and an optimiser.
# Each part can be the library's or your own.  This tutorial writes two of your own: a
# **hierarchical prior** that gives every presynaptic neuron a Beta-distributed tendency to excite
# or inhibit (a soft Dale's principle), and a **guide** that learns its own relaxation temperature.
# It trains each on two moons beside the library's default parts and compares them, looks inside
# the hyper-posterior with the conjugate closed form, shows what the library refuses to combine and
# why, and registers the prior by name so that a configuration file or the command line can use it.
#
# **What you will learn**
#
# * what the four parts are and what `make_rule("bayes")` fills them with;
# * how to write a `Prior` with a hyper-latent per presynaptic neuron, and how the library composes
#   its guide by itself (`GuideList` of the weights' guide and a `BetaGuide`);
# * the conjugate optimum of the Beta hyper-posterior in closed form, checked against what
#   stochastic optimisation found, and a coordinate-ascent (CAVI) step that jumps to it;
# * the library's own hierarchical prior, `BetaBinaryPrior`;
# * how to write a guide by subclassing `SignBernoulliGuide`, and which optimiser steps which of its
#   parameters;
# * how the parts compare on accuracy, NLL and calibration (ECE), with standard errors;
# * which combinations are refused (`CompositionError`), in one line, and why;
# * how to register a part by name (`bisnn_pyro.config.register`) for `--plugin` and `--prior`.

# %%
import math
import os
import time

import matplotlib.pyplot as plt
import numpy as np
import pyro
import torch
from pyro.distributions import Beta
from pyro.infer import Trace_ELBO
from pyro.infer.autoguide import AutoNormal
from pyro.nn import PyroParam
from torch.distributions import kl_divergence

from bisnn_pyro import BayesianSNN, ReadoutCategorical, SpikingMLP, Trainer, make_rule
from bisnn_pyro.analysis import ece, summary
from bisnn_pyro.config import REGISTRY, ConfigError, Option, register
from bisnn_pyro.data import two_moons
from bisnn_pyro.experiment import ExperimentConfig
from bisnn_pyro.inference import CompositionError, SignBernoulliGuide
from bisnn_pyro.models import BetaBinaryPrior, Prior, RelaxedSignBernoulli, SignBernoulli, natural_from_probs
from bisnn_pyro.runtime import keep_freed_memory

SMALL = os.environ.get("BISNN_TUTORIAL_SMALL") == "1"  # the test suite runs a small version
HIDDEN = (16,) if SMALL else (64,)  # one hidden layer: 20 inputs -> HIDDEN[0] neurons
EPOCHS = 5 if SMALL else 20  # passes over the 200 training points, for every model
TEST_SIZE = 200 if SMALL else 1000  # held-out points
SAMPLES = 6 if SMALL else 10  # ensemble size K
BOOTSTRAP = 100 if SMALL else 400  # resamples of the test set for the standard error of the ECE
N_TRAIN = 200
pyro.set_rng_seed(0)
keep_freed_memory()  # a process setting that makes training epochs faster (the command line does it too)

train, test = two_moons(N_TRAIN, seed=0), two_moons(TEST_SIZE, seed=1)

# %% [markdown]
# ## 1. The parts, and the library's defaults
#
# | part | what it decides | `make_rule("bayes")` gives |
# | --- | --- | --- |
# | prior | which parameters are random, and $p(w)$ | `BinaryPrior(0.5)`: each weight $\pm1$, $p(w=+1)=\tfrac12$ |
# | guide | the variational family $q$ | `SignBernoulliGuide(temperature=0.5)`: one $\lambda$ per weight |
# | likelihood | how readouts score labels | `ReadoutCategorical`: every layer's readout, every step |
# | loss | the ELBO estimator | `MeanFieldELBO`: relaxed draws in the likelihood, the exact KL |
# | optimiser | who steps what | `BayesianLearningRule` → `LearningRule`: natural gradient on $\lambda$, Adam on rest |
#
# Every model below is built and trained by the same few lines, with only the prior or the guide
# replaced; each gets a fresh rule (so a fresh optimiser state) and the same seeds.  We score the
# posterior-predictive ensemble of $K$ exact $\pm 1$ draws on held-out points: accuracy (with its
# binomial standard error), NLL (with the standard error of a mean over test points) and ECE (with
# a bootstrap standard error over test points).

# %%
def build(prior=None, guide=None):
    """A BayesianSNN with the default parts, or the prior and guide builder given."""
    rule = make_rule("bayes", temperature=0.5, seed=0)
    net = SpikingMLP(20, hidden=HIDDEN, num_classes=2)
    model = BayesianSNN(net, prior or rule.prior, ReadoutCategorical(num_data=N_TRAIN, burn_in=10), guide or rule.guide)
    return model.setup(train.x), rule


def fit(model, rule):
    pyro.set_rng_seed(0)
    trainer = Trainer(model, rule.optim, rule.loss, train.x, train.y, batch_size=40, seed=0)
    start = time.perf_counter()
    trainer.fit(EPOCHS, progress=False)
    return trainer.engine, time.perf_counter() - start


def score(model, bootstrap=BOOTSTRAP):
    """Ensemble accuracy, NLL and ECE on the test set, each with a standard error."""
    pyro.set_rng_seed(1)
    probs = model.predict(test.x, mode="ensemble", samples=SAMPLES)
    scores = summary(probs, test.y)
    n = len(test.y)
    point_nll = -torch.log(probs.gather(1, test.y[:, None]).clamp_min(1e-12)).squeeze(1)
    resample = torch.Generator().manual_seed(0)
    resamples = (torch.randint(0, n, (n,), generator=resample) for _ in range(bootstrap))
    ece_draws = [ece(probs[i], test.y[i]) for i in resamples]
    scores["accuracy_se"] = math.sqrt(scores["accuracy"] * (1 - scores["accuracy"]) / n)
    scores["nll_se"] = point_nll.std().item() / math.sqrt(n)
    scores["ece_se"] = float(np.std(ece_draws, ddof=1))
    return scores


results = {}
default_model, default_rule = build()
engine, seconds = fit(default_model, default_rule)
results["default"] = score(default_model)
print(f"parts default: prior {type(default_model.prior).__name__}, guide {type(default_model.guide).__name__}, "
      f"loss {type(default_rule.loss).__name__}, optimiser {type(default_rule.optim).__name__}")
print(f"trained default: engine {engine}, {seconds:.1f} s, ensemble accuracy {results['default']['accuracy']:.4f}")

# %% [markdown]
# ## 2. A hierarchical prior: each input neuron excites or inhibits
#
# Dale's principle says a biological neuron is either excitatory or inhibitory: all its outgoing
# synapses share a sign.  A soft, Bayesian version for binary weights gives each presynaptic
# neuron $j$ its own probability $p_j$ that a synapse it makes is $+1$, and a prior on $p_j$:
#
# $$
# p_j \sim \mathrm{Beta}(a, b), \qquad w_{ij} \mid p_j \sim \text{sign-Bernoulli with } P(w_{ij} = +1) = p_j,
# \quad\text{i.e. natural parameter } \lambda_{p,j} = \tfrac12 \log\frac{p_j}{1 - p_j}.
# $$
#
# With $a = b = \tfrac12$ the Beta density is U-shaped: it prefers each neuron to be mostly
# excitatory ($p_j$ near 1) or mostly inhibitory ($p_j$ near 0) without saying which.  The
# synapses of one input neuron are no longer independent a priori: they share $p_j$.
#
# A `Prior` writes two methods.  `buffer(name, weight)` makes the tensor the site's prior reads (here
# $(a, b)$ for each of the `weight.shape[1]` input neurons); the library registers it beside the
# parameter, so it is saved in the state dict and moves with the network.  `distribution(name,
# buffer, shape)` returns $p(w)$ with batch shape `shape` (the weight's, (out, in)), and may first
# draw hyper-latents with `pyro.sample`: here one Beta site per layer, `<name>_p`, with one value per
# input neuron.  (A leading sample dimension of the draws is kept: `p.shape[:-1]`.)

# %%
class DalePrior(Prior):
    """Each presynaptic neuron j excites or inhibits: its synapses share P(w = +1) = p_j ~ Beta(a, b)."""

    def __init__(self, a=0.5, b=0.5):
        super().__init__()
        self.a, self.b = a, b

    def buffer(self, name, weight):  # (a, b) per input neuron, saved and moved with the network
        ab = torch.tensor([[self.a], [self.b]], dtype=weight.dtype, device=weight.device)
        return ab.expand(2, weight.shape[1]).clone()

    def distribution(self, name, buffer, shape):
        p = pyro.sample(f"{name}_p", Beta(buffer[0], buffer[1]).to_event(1))  # a hyper-latent per input
        return SignBernoulli(natural_from_probs(p).unsqueeze(-2)).expand(p.shape[:-1] + shape)


dale_model, dale_rule = build(prior=DalePrior(0.5, 0.5))
weights_guide, hyper_guide = dale_model.guide.parts
print(f"dale: guide {type(dale_model.guide).__name__} of {[type(part).__name__ for part in dale_model.guide.parts]}, "
      f"hyper-latents {dale_model.sites.hyper}")
for name, param in dale_model.named_parameters():
    print(f"dale: parameter {name} {tuple(param.shape)} -> "
          f"{'learning rule' if dale_rule.optim.is_natural(param) else 'companion Adam'}")
engine, seconds = fit(dale_model, dale_rule)
results["Dale prior"] = score(dale_model)
print(f"trained dale: engine {engine}, {seconds:.1f} s, ensemble accuracy {results['Dale prior']['accuracy']:.4f}")

# %% [markdown]
# We gave no guide for the sites $p_j$: `setup` found a latent site that the sign-Bernoulli guide
# does not cover, saw that it is Beta-distributed, and composed
# `GuideList(model, [SignBernoulliGuide, BetaGuide])` by itself, so each $p_j$ has a posterior
# $q(p_j) = \mathrm{Beta}(\alpha_j, \beta_j)$, initialised at the prior.  The learning rule steps only
# the natural parameters $\lambda$; $\alpha$ and $\beta$ (stored as unconstrained logarithms) go to
# its companion, Adam.  The trainer used Pyro's `SVI` here: the faster direct engine takes only
# priors without hyper-latents.
#
# ## 3. Inside the hyper-posterior: the conjugate closed form
#
# Beta is conjugate to the Bernoulli, and the mean-field ELBO inherits that.  With $m_{ij} = \tanh\lambda_{ij}$
# the mean of $q(w_{ij})$, the terms of the ELBO that involve $q(p_j) = \mathrm{Beta}(\alpha_j, \beta_j)$ are
#
# $$
# F_j(\alpha_j, \beta_j) = S^+_j\,\bigl(\psi(\alpha_j) - \psi(\alpha_j + \beta_j)\bigr)
# + S^-_j\,\bigl(\psi(\beta_j) - \psi(\alpha_j + \beta_j)\bigr)
# - \mathrm{KL}\bigl(\mathrm{Beta}(\alpha_j, \beta_j) \,\|\, \mathrm{Beta}(a, b)\bigr),
# \qquad S^\pm_j = \sum_i \frac{1 \pm m_{ij}}{2},
# $$
#
# ($\psi$ the digamma function; $S^+_j$ is the expected number of $+1$ synapses of neuron $j$), and
# for fixed $q(w)$ it is maximised by
#
# $$
# \alpha_j^\star = a + S^+_j, \qquad \beta_j^\star = b + S^-_j ,
# $$
#
# the Beta posterior of a coin after $S^+_j$ heads and $S^-_j$ tails.  We compute $F$ by hand, check
# that its gradient vanishes at the closed form, and compare with what SVI learned.

# %%
site = "layers.0.weight"
m = torch.tanh(weights_guide.natural()[site].detach().double())  # (out, in): mean of each weight
s_plus, s_minus = ((1 + m) / 2).sum(0), ((1 - m) / 2).sum(0)  # per input neuron j
a0 = torch.full_like(s_plus, 0.5)


def hyper_elbo(alpha, beta):
    """sum_j F_j(alpha_j, beta_j): the ELBO's terms in q(p) for the present q(w)."""
    both = torch.digamma(alpha + beta)
    expected_log_prior = s_plus * (torch.digamma(alpha) - both) + s_minus * (torch.digamma(beta) - both)
    return (expected_log_prior - kl_divergence(Beta(alpha, beta), Beta(a0, a0))).sum()


hyper = hyper_guide.site_parameters(f"{site}_p")
learned_alpha, learned_beta = hyper.alpha.detach().double(), hyper.beta.detach().double()
best_alpha = (a0 + s_plus).requires_grad_(True)
best_beta = (a0 + s_minus).requires_grad_(True)
best = hyper_elbo(best_alpha, best_beta)
gradient = torch.cat(torch.autograd.grad(best, (best_alpha, best_beta)))
best_alpha, best_beta = best_alpha.detach(), best_beta.detach()
print(f"hyper-posterior: F at the learned q(p) = {hyper_elbo(learned_alpha, learned_beta).item():.3f}")
print(f"hyper-posterior: F at the closed form = {best.item():.3f}")
print(f"hyper-posterior: max |dF/d(alpha, beta)| at the closed form = {gradient.abs().max().item():.2e}")
print(f"hyper-posterior: learned alpha+beta mean {(learned_alpha + learned_beta).mean().item():.2f}, "
      f"closed form {(best_alpha + best_beta).mean().item():.2f}")
mean_gap = learned_alpha / (learned_alpha + learned_beta) - best_alpha / (best_alpha + best_beta)
print(f"hyper-posterior: largest |E q(p) learned - closed form| = {mean_gap.abs().max().item():.4f}")

# %% [markdown]
# The learned $q(p_j)$ is far from the optimum: its concentration $\alpha_j + \beta_j$ has barely left
# the prior's value 1, while the closed form has about one unit per synapse.  Nothing is wrong with
# the ELBO; the optimiser is slow on this coordinate.  Adam moves each $\log\alpha_j$ by about its
# learning rate ($10^{-2}$) per step at most, and `EPOCHS` epochs of 5 minibatches are 100 steps at
# the full size, while $\log(\alpha_j^\star/a)$ is 3 to 4; the gradient through a reparameterised
# Beta draw is noisy besides.  A **CAVI step** (coordinate ascent) sets $q(p)$ to
# the closed form directly; assigning a tensor to a `PyroParam` attribute stores it (through the
# constraint) in place:

# %%
hyper.alpha = best_alpha.float()
hyper.beta = best_beta.float()
after = hyper_elbo(hyper.alpha.detach().double(), hyper.beta.detach().double()).item()
print(f"hyper-posterior: F after the CAVI step = {after:.3f}")

default_plus = (default_model.guide.natural()[site] > 0).float().mean(0)
dale_plus = (weights_guide.natural()[site] > 0).float().mean(0)
print(f"fraction of +1 MAP weights per input neuron: sd over neurons default = {default_plus.std().item():.3f}, "
      f"Dale = {dale_plus.std().item():.3f}")

inputs = np.arange(len(dale_plus))
fig, (left, right) = plt.subplots(1, 2, figsize=(12, 3.6))
left.bar(inputs - 0.2, default_plus.numpy(), width=0.4, label="default prior: fraction of +1 (MAP)")
left.bar(inputs + 0.2, dale_plus.numpy(), width=0.4, label="Dale prior: fraction of +1 (MAP)")
closed = Beta(best_alpha, best_beta)
left.errorbar(inputs + 0.2, closed.mean.numpy(), yerr=closed.stddev.numpy(), fmt="k.", capsize=2,
              label="closed-form q(p_j): mean +- sd")
left.axhline(0.5, color="0.5", lw=0.8)
left.set(xlabel="input neuron j (0-9: x1, 10-19: x2)", ylabel="P(w = +1)", ylim=(0, 1.25), xticks=inputs[::2],
         title="Outgoing synapses of each input neuron")
left.legend(fontsize=7, loc="upper center", ncol=2)
grid = torch.linspace(0.005, 0.995, 199)
right.plot(grid, Beta(0.5, 0.5).log_prob(grid).exp(), "k--", label="prior Beta(1/2, 1/2)")
for j, colour in ((int(dale_plus.argmax()), "C1"), (int(dale_plus.argmin()), "C0")):
    right.plot(grid, Beta(float(learned_alpha[j]), float(learned_beta[j])).log_prob(grid).exp(), color=colour, ls=":",
               label=f"neuron {j}: learned by SVI")
    right.plot(grid, Beta(float(best_alpha[j]), float(best_beta[j])).log_prob(grid).exp(), color=colour,
               label=f"neuron {j}: closed form")
right.set(xlabel="p_j", ylabel="density", title="q(p_j): SVI after training (dotted) vs conjugate optimum", ylim=(0, 8))
right.legend(fontsize=7)
plt.tight_layout()
plt.show()

# %% [markdown]
# In the right panel the posteriors SVI learned (dotted) still lie on the prior's U-shaped curve,
# while the conjugate optimum is a narrow bump around each neuron's fraction of $+1$ synapses.  With
# 20 input neurons each making `HIDDEN[0]` synapses, the likelihood decides most weights and a
# prior this weak changes little: the fractions of $+1$ weights look much alike under both priors.
# Exercises 1 and 2 ask what a stronger hyper-prior, or a CAVI step after every epoch, does.
#
# ## 4. The library's hierarchical prior
#
# `BetaBinaryPrior(a, b, per="layer")` is the same construction with one $p$ per layer
# (`per="neuron"`: one per *output* neuron); the default guide is again composed with a
# `BetaGuide`.  Trained the same way:

# %%
beta_model, beta_rule = build(prior=BetaBinaryPrior(2.0, 2.0, per="layer"))
engine, seconds = fit(beta_model, beta_rule)
results["BetaBinaryPrior"] = score(beta_model)
q_layer = beta_model.guide.parts[1].site_parameters(f"{site}_p")
print(f"trained beta-binary: engine {engine}, {seconds:.1f} s, hyper-latents {beta_model.sites.hyper}, "
      f"E q(p) = {(q_layer.alpha / (q_layer.alpha + q_layer.beta)).item():.4f}")

# %% [markdown]
# ## 5. A guide of your own: learning the temperature
#
# The relaxed draw $\tilde w = \tanh\bigl((\lambda + \delta)/\tau\bigr)$ has a temperature $\tau$ that
# trades bias against variance (tutorials 1 and 5).  Rather than fixing it, let the guide learn
# $\log\tau$ with the rest.  `SignBernoulliGuide` computes each site's $q$ in
# `site_distribution(name, params)`; a subclass overrides it, and creates its own parameter as a
# `PyroParam`.  In evaluation mode (prediction) it returns the exact sign-Bernoulli, as the
# library's guide does.

# %%
class LearnedTemperatureGuide(SignBernoulliGuide):
    """The mean-field sign-Bernoulli guide with its relaxation temperature learned too."""

    def __init__(self, model, **options):
        super().__init__(model, **options)
        self.log_temperature = PyroParam(torch.tensor(math.log(self.temperature)))

    def site_distribution(self, name, params):
        natural = self.natural_parameter(name, params)
        if not self.training:
            return SignBernoulli(natural)
        return RelaxedSignBernoulli(natural, self.log_temperature.exp())


tau_model, tau_rule = build(guide=lambda model: LearnedTemperatureGuide(model, temperature=0.5, seed=0))
for name, param in tau_model.named_parameters():
    print(f"learned-tau: parameter {name} {tuple(param.shape)} -> "
          f"{'learning rule' if tau_rule.optim.is_natural(param) else 'companion Adam'}")
engine, seconds = fit(tau_model, tau_rule)
results["learned tau"] = score(tau_model)
print(f"trained learned-tau: engine {engine}, {seconds:.1f} s, temperature 0.5 -> "
      f"{tau_model.guide.log_temperature.exp().item():.4f}")

# %% [markdown]
# The learning rule knows its parameters by *role*, not by name: $\lambda$ is a `NaturalParameter`
# because `SignBernoulliGuide.init_site` made it one, so it takes natural-gradient steps, while
# $\log\tau$ is an ordinary parameter and goes to the companion, Adam (preconditioning it by
# $1 - \tanh^2$ would be meaningless).  Note what $\tau$ is learned *for*: the relaxed objective,
# in which a larger $\tau$ shrinks every draw towards zero.  That objective is not the ELBO of the
# binary network, and its optimum in $\tau$ need not be the temperature whose gradients are best.
#
# ## 6. Comparison
#
# All four models, same data, same seeds, same number of epochs, scored by the ensemble of $K$ draws:

# %%
print(f"{'parts':<16} {'accuracy':>16} {'nll':>16} {'ece':>16}")
for name, s in results.items():
    print(f"{name:<16} " + " ".join(f"{s[k]:>8.4f} +- {s[k + '_se']:.4f}" for k in ("accuracy", "nll", "ece")))
for name, s in results.items():
    print(f"result {name}: accuracy={s['accuracy']:.4f} nll={s['nll']:.4f} ece={s['ece']:.4f}")

fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
names = list(results)
for axis, metric in zip(axes, ("accuracy", "nll", "ece"), strict=True):
    axis.bar(range(len(names)), [results[n][metric] for n in names], yerr=[results[n][f"{metric}_se"] for n in names],
             capsize=4, color=[f"C{i}" for i in range(len(names))])
    axis.set_xticks(range(len(names)), names, rotation=20)
    axis.set(title=f"ensemble (K = {SAMPLES}) {metric}, +- 1 s.e.", ylabel=metric)
axes[0].set_ylim(min(results[n]["accuracy"] for n in names) - 0.05, 1.0)
plt.tight_layout()
plt.show()

# %% [markdown]
# On this easy task the parts barely move accuracy; the differences, if any, are in NLL and ECE,
# and a few standard errors at most.  These standard errors are over test points, for one training
# seed: they say nothing of how much another seed would move each model.  One seed is no evidence:
# tutorial 4 (and `bisnn-pyro study run`) compares parts over seeds with paired intervals.
#
# ## 7. What the library refuses
#
# Not every prior fits every guide.  The supports decide: the exact sign-Bernoulli lives on the
# two points $\{-1, +1\}$, its relaxation on $(-1, 1)$, a Beta on $(0, 1)$, a Gaussian on the real
# line, and a guide's site must have its prior's support.  The one declared exception is the relaxed
# guide standing for the exact prior, which is charged the *exact* KL and never scored by the
# exact prior's density, so it needs the loss that does that.  A combination that breaks the rules
# is refused when it is put together, with a one-line `CompositionError` (a `ValueError`) that
# names the site and says what would work.  Two examples with the parts of this tutorial:
#
# * Pyro's `AutoNormal` (a Gaussian over real numbers) as the guide under the Dale prior: a
#   continuous density has no meaning against a prior on $\{-1, +1\}$, and the KL between them is
#   undefined;
# * Pyro's `Trace_ELBO` as the loss of the learned-temperature guide: it would evaluate the exact
#   prior's log-density at a relaxed draw $\tilde w \in (-1, 1)$, which lies outside its support.

# %%
try:
    BayesianSNN(SpikingMLP(20, hidden=(8,)), DalePrior(), ReadoutCategorical(N_TRAIN), AutoNormal).setup(train.x)
except CompositionError as error:
    print(f"refused (setup): {error}")

try:
    Trainer(tau_model, tau_rule.optim, Trace_ELBO(), train.x, train.y)
except CompositionError as error:
    print(f"refused (trainer): {error}")

# %% [markdown]
# From the command line the same refusals are one line on standard error and exit status 2.  The
# whole table of what combines with what is in the guide [Swapping parts](../../composition/).
#
# ## 8. Registering the prior by name
#
# Configuration files and the command line name parts (`--prior binary`, `[prior] name =
# "beta-binary"`).  A part of your own joins them through `bisnn_pyro.config.register`, on a build
# function that takes the part's options by name.  Each `Option` has a type, a default, a help
# line and a check, so a bad value is refused in one line like the library's own options:

# %%
@register("prior", "dale", Option("a", float, 0.5, "Beta a = b of each input neuron", check=lambda v: v > 0,
                                  expect="> 0"))
def dale(a):
    """Each input neuron excites or inhibits: a Beta(a, a) hyper-latent per presynaptic neuron."""
    return DalePrior(a, a)


@register("guide", "learned-temperature", Option("temperature", float, 0.5, "initial relaxation temperature",
                                                 check=lambda v: v > 0, expect="> 0"))
def learned_temperature(temperature, seed=None):
    """The sign-Bernoulli guide with a learned temperature."""
    return lambda model: LearnedTemperatureGuide(model, temperature=temperature, seed=seed)


config = ExperimentConfig({"prior": {"name": "dale", "a": 0.8}, "guide": {"name": "learned-temperature"}})
spec = config.parts["prior"]
prior = REGISTRY.get("prior", spec["name"], "prior").create({k: v for k, v in spec.items() if k != "name"})
print(f"registered: {config.label}")
print(f"registered: prior {spec} -> {type(prior).__name__}(a={prior.a}, b={prior.b})")
try:
    ExperimentConfig({"prior": {"name": "dale", "a": -1.0}})
except ConfigError as error:
    print(f"refused (config): {error}")

# %% [markdown]
# `config.label` reads the resolved parts the way `bisnn-pyro train` prints them.  For the command
# line, which runs in a process of its own, the registration lives in an importable module, say
# `my_parts.py` on your `PYTHONPATH`, holding the two classes of this tutorial and the two
# registered build functions above:
#
# ```python
# # my_parts.py
# import math
#
# import pyro
# import torch
# ...  # the imports of DalePrior and LearnedTemperatureGuide, as above
# from bisnn_pyro.config import Option, register
#
#
# class DalePrior(Prior):
#     ...  # as in section 2
#
#
# @register("prior", "dale", Option("a", float, 0.5, "Beta a = b of each input neuron", check=lambda v: v > 0,
#                                   expect="> 0"))
# def dale(a):
#     """Each input neuron excites or inhibits: a Beta(a, a) hyper-latent per presynaptic neuron."""
#     return DalePrior(a, a)
# ```
#
# and the run names the module and the part:
#
#     bisnn-pyro parts --plugin my_parts                  # lists dale with its option a
#     bisnn-pyro train --plugin my_parts --prior dale --prior.a 0.8 --guide learned-temperature --out runs/dale
#
# `config.json` records the module (`"plugins": ["my_parts"]`), so `evaluate`, `report` and
# `--resume` import it again; a package can instead declare an entry point in the
# `bisnn_pyro.components` group ([Configuration](../../configuration/)).  Register in a module, not
# in a notebook: a part registered in `__main__` cannot be found by another process.
#
# ## Exercises
#
# 1. **A stronger Dale prior.** Train the Dale prior with $a = b = 0.05$ and with $a = b = 5$.
#    Predict first how the spread over input neurons of the fraction of $+1$ weights (section 3)
#    changes, then check.  What does $a = b = 5$ say about neurons, compared with the default prior?
# 2. **CAVI every epoch.** Train the Dale model one epoch at a time (`trainer.fit(epoch)` continues
#    to that epoch) and apply the CAVI step of section 3 after each.  The expected prior natural
#    parameter is then $\mathbb{E}_q[\lambda_{p,j}] = \tfrac12(\psi(\alpha_j) - \psi(\beta_j))$: does it
#    pull the weights of each neuron towards a common sign?
# 3. **A faster companion.** Give the Dale model
#    `BayesianLearningRule({"lr": 5e-4}, companion=pyro.optim.Adam({"lr": 0.1}))` as its optimiser.
#    How close does $q(p)$ get to the closed form after the same number of epochs?
# 4. **Where does $\tau$ go?** Start the learned-temperature guide at $\tau = 0.1$ and at $\tau = 2$.
#    Do both runs end at the same temperature, and what happens to the ensemble's ECE?
# 5. **A low-rank posterior.** Write a guide whose natural parameters are $\lambda = U V^\top$ (override
#    `init_site` to make `params.u` and `params.v` as `PyroParam`s and `natural_parameter` to
#    return their product).  Which optimiser now steps them, and what does the learning rule say
#    when it finds no natural parameter?
