# %% [markdown]
# # Your first Bayes-BiSNN
#
# A Bayes-BiSNN is a spiking neural network whose synaptic weights are binary, $w \in \{-1, +1\}$,
# and uncertain: training learns a distribution $q(w)$ over them rather than one value each.  This
# tutorial builds one from the bottom up.  It starts with a single leaky integrate-and-fire neuron
# and the surrogate gradient that lets a spike carry a gradient, explains the DECOLLE readouts that
# let each layer learn on its own, turns the two-moons points into spike trains, trains Bayes-BiSNN
# on them, and ends with what the posterior buys: an ensemble of networks whose disagreement maps
# where the model has seen no data.
#
# **What you will learn**
#
# * the leaky integrate-and-fire (LIF) neuron as a pure step function (`lif_step`,
#   `LIFParameters`, `lif_initial_state`), checked against the recurrence written by hand;
# * why a spike needs a *surrogate* gradient, and what the library's surrogates (`boxcar`,
#   `sigmoid`, `fast_sigmoid`) put in place of the derivative of a step;
# * what DECOLLE's fixed random readouts are and why they make learning local to each layer;
# * how the two-moons task is population-coded into spikes (`two_moons`);
# * how to train Bayes-BiSNN (`make_rule("bayes")`, `SpikingMLP`, `BayesianSNN`,
#   `ReadoutCategorical`, `Trainer`);
# * the three ways to predict (`map`, `ensemble`, `mean`) and their accuracy, NLL and calibration
#   (`bisnn_pyro.analysis.summary`);
# * the uncertainty map: predictive entropy and mutual information of the ensemble over the plane.

# %%
import math
import os
import time

import matplotlib.pyplot as plt
import numpy as np
import pyro
import torch

from bisnn_pyro import BayesianSNN, ReadoutCategorical, SpikingMLP, Trainer, make_rule
from bisnn_pyro.analysis import ece, expected_entropy, mutual_information, predictive_entropy, summary
from bisnn_pyro.data import raised_cosine_rates, two_moons
from bisnn_pyro.data.two_moons import X_RANGE, Y_RANGE, encode_points
from bisnn_pyro.models import LIFParameters, boxcar, fast_sigmoid, lif_initial_state, lif_step, sigmoid, surrogate
from bisnn_pyro.runtime import keep_freed_memory

SMALL = os.environ.get("BISNN_TUTORIAL_SMALL") == "1"  # the test suite runs a small version
HIDDEN = (32,) if SMALL else (64, 64)  # hidden layer widths of the network
EPOCHS = 6 if SMALL else 25  # passes over the 200 training points
TEST_SIZE = 200 if SMALL else 1000  # held-out points
SAMPLES = 8 if SMALL else 10  # ensemble size K
GRID = 14 if SMALL else 24  # the uncertainty map is GRID x GRID points
pyro.set_rng_seed(0)
keep_freed_memory()  # a process setting that makes training epochs faster (the command line does it too)

# %% [markdown]
# ## 1. One leaky integrate-and-fire neuron
#
# A spiking neuron integrates its input spikes over time and emits a spike of its own when its
# membrane potential crosses a threshold.  The library uses the LIF form of DECOLLE and of the
# BiSNN paper: every input $j$ leaves a synaptic trace $Q_j$ and a membrane trace $P_j$, the
# neuron's own spikes leave a refractory trace $R$, and with decays $a = e^{-1/\tau_\mathrm{mem}}$,
# $b = e^{-1/\tau_\mathrm{syn}}$, $c = e^{-1/\tau_\mathrm{ref}}$ one time step reads
#
# $$
# P_j[t] = a\,P_j[t-1] + Q_j[t-1], \qquad Q_j[t] = b\,Q_j[t-1] + s_j[t], \qquad
# R[t] = c\,R[t-1] + S[t-1],
# $$
#
# $$
# U[t] = \frac{1}{\sqrt{n}} \sum_{j=1}^{n} w_j P_j[t] - R[t], \qquad S[t] = \Theta(U[t]) = [\,U[t] > 0\,].
# $$
#
# The factor $1/\sqrt{n}$ keeps $U$ of order one when the $n$ weights are $\pm 1$.  In the library
# the step is a pure function, `lif_step(inputs, state, synapse, params, spike)`: the state
# (a `LIFState` of the four traces) goes in and comes out, and the synapse is any map
# $P \mapsto$ drive, here $P \mapsto w \cdot P / \sqrt{n}$.  We drive one neuron with ten inputs, six
# excitatory ($w = +1$, firing with probability 0.05 per step) and four inhibitory ($w = -1$, firing
# with probability 0.1 for 50 steps, then 0.3).

# %%
params = LIFParameters()  # tau_mem = 10, tau_syn = 6, tau_ref = 2 steps, threshold 0 (the paper's)
a, b, c = params.decays()
print(f"decays: a={a:.4f} b={b:.4f} c={c:.4f}")

n_inputs, steps = 10, 100
w = torch.tensor([1.0] * 6 + [-1.0] * 4)
input_rates = torch.zeros(steps, 1, n_inputs)
input_rates[:, :, :6] = 0.05
input_rates[:, :, 6:] = torch.where(torch.arange(steps) < steps // 2, 0.1, 0.3)[:, None, None]
generator = torch.Generator().manual_seed(0)
input_spikes = torch.bernoulli(input_rates, generator=generator)  # (T, batch 1, n)


def synapse(p):
    return p @ w / math.sqrt(n_inputs)


spike = surrogate("boxcar")
state = lif_initial_state(input_spikes[0])
potential, out_spikes, refractory = [], [], []
for t in range(steps):
    s, u, state = lif_step(input_spikes[t], state, synapse, params, spike)
    potential.append(u.item())
    out_spikes.append(s.item())
    refractory.append(state.r.item())
potential, out_spikes = np.array(potential), np.array(out_spikes)
half = steps // 2
print(f"LIF neuron: {int(out_spikes[:half].sum())} spikes in steps 0-{half - 1}, "
      f"{int(out_spikes[half:].sum())} in steps {half}-{steps - 1} (inhibition x3)")

# %% [markdown]
# The same recurrence written out by hand in double precision, as a check on the library's step:

# %%
P, Q, R, S_prev = np.zeros(n_inputs), np.zeros(n_inputs), 0.0, 0.0
hand_u, hand_s = [], []
s_in = input_spikes[:, 0].double().numpy()
for t in range(steps):
    P = a * P + Q  # uses Q[t-1]
    Q = b * Q + s_in[t]
    R = c * R + S_prev
    U = w.double().numpy() @ P / math.sqrt(n_inputs) - R
    S_prev = float(U > 0)
    hand_u.append(U)
    hand_s.append(S_prev)
print(f"LIF library vs hand-written: max |dU| = {np.abs(potential - np.array(hand_u)).max():.2e}")
print(f"LIF library vs hand-written: spikes that differ = {int((out_spikes != np.array(hand_s)).sum())}")

# %%
fig, (top, middle, bottom) = plt.subplots(3, 1, figsize=(9, 6), sharex=True, height_ratios=[1.2, 2, 1])
times, inputs = np.nonzero(input_spikes[:, 0].numpy())
top.scatter(times, inputs, marker="|", c=np.where(w.numpy()[inputs] > 0, "C0", "C3"), s=40)
top.set(ylabel="input j", yticks=range(0, n_inputs, 3), title="Input spikes (blue: w = +1, red: w = -1)")
middle.plot(potential, label="membrane potential U[t]")
middle.plot(-np.array(refractory), ls=":", color="C2", label="refractory term -R[t]")
middle.axhline(0.0, color="k", lw=0.8, ls="--", label="threshold")
middle.scatter(np.nonzero(out_spikes)[0], potential[out_spikes > 0], color="C3", zorder=3, s=15, label="spike")
middle.set(ylabel="U", title="One LIF neuron (library step; the hand recurrence agrees)")
middle.axvline(half, color="0.5", lw=0.8)
middle.legend(fontsize=8, loc="upper right")
bottom.vlines(np.nonzero(out_spikes)[0], 0, 1, color="C3")
bottom.set(xlabel="time step t", ylabel="S[t]", yticks=[0, 1], title="Output spikes")
plt.tight_layout()
plt.show()

# %% [markdown]
# Each output spike is followed by a dip: the refractory trace $R$ jumps by one and decays with
# $\tau_\mathrm{ref} = 2$ steps, holding the neuron down briefly.  An input spike acts on $U$ for
# tens of steps, since it passes through two leaky traces ($Q$, then $P$): when the inhibitory inputs
# triple their rate halfway, $U$ sinks and stays below threshold.  Note that the threshold is zero,
# so the neuron fires whenever the weighted drive exceeds the refractory term: with $\pm 1$ weights
# a balance of excitation and inhibition is what keeps it from firing at every step.
#
# ## 2. The surrogate gradient
#
# Training needs $\partial S / \partial U$, but $S = \Theta(U)$ is a step: its derivative is zero
# everywhere except at $U = 0$, where it does not exist, so the exact gradient of any loss with
# respect to the weights is zero almost everywhere.  A *surrogate gradient* keeps the step in the
# forward pass and replaces its derivative in the backward pass by a bump around the threshold.
# The library's surrogates are small factories with their hyper-parameter baked in:
#
# $$
# \texttt{boxcar}(w):\ [\,|u| < w\,], \qquad
# \texttt{sigmoid}(k):\ k\,\sigma(ku)\,(1 - \sigma(ku)), \qquad
# \texttt{fast\_sigmoid}(k):\ \frac{1}{(1 + k|u|)^2}.
# $$
#
# The area under a surrogate is the total "step height" it pretends to differentiate: $2w = 1$ for
# the boxcar with $w = \tfrac12$ (the BiSNN paper's choice) and $1$ for the sigmoid, but only
# $\int_{-L}^{L} (1 + k|u|)^{-2}\,du = \tfrac{2}{k}\bigl(1 - \tfrac{1}{1 + kL}\bigr) \to 2/k$ for the
# fast sigmoid: it is heavy-tailed but, with $k = 10$, scales gradients down about five-fold.
# We read each derivative off autograd and integrate it numerically over $[-3, 3]$.

# %%
u = torch.linspace(-3.0, 3.0, 6001, dtype=torch.float64)
half_width, slope, fast_slope = 0.5, 4.0, 10.0
surrogates = {
    "boxcar": (boxcar(half_width), 2 * half_width),
    "sigmoid": (sigmoid(slope), math.tanh(3 * slope / 2)),  # sigmoid(3k) - sigmoid(-3k)
    "fast_sigmoid": (fast_sigmoid(fast_slope), 2 / fast_slope * (1 - 1 / (1 + fast_slope * 3.0))),
}
fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
for name, (spike_fn, closed_form) in surrogates.items():
    x = u.clone().requires_grad_(True)
    forward = spike_fn(x)
    (derivative,) = torch.autograd.grad(forward.sum(), x)
    area = torch.trapezoid(derivative, u).item()
    steps_exact = bool(torch.equal(forward.detach(), (u > 0).double()))
    print(f"surrogate {name}: area {area:.5f} closed form {closed_form:.5f} forward is the step: {steps_exact}")
    right.plot(u, derivative, label=f"{name} (area {area:.3f})")
left.plot(u, (u > 0).double(), color="k")
left.set(xlabel="membrane potential u", ylabel="S = step(u)", title="Forward: the spike is an exact step")
right.set(xlabel="membrane potential u", ylabel="dS/du used in the backward pass",
          title="Backward: surrogate derivatives")
right.legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# `SpikingMLP(..., spike="boxcar" | "sigmoid" | "fast-sigmoid")` or any callable chooses the
# surrogate of a network (`--surrogate` on the command line).
#
# ## 3. DECOLLE readouts: learning that stays in its layer
#
# In a network of such neurons, layer $l$ emits spikes $S_l[t] \in \{0,1\}^{n_l}$ at every step.
# DECOLLE (Kaiser, Mostafa & Neftci) gives every layer its own **fixed, random, untrained** readout
# $G_l \in \{-1, +1\}^{C \times n_l}$ to the $C$ classes, scaled like the synapses:
#
# $$
# r_l[t] = \frac{g}{\sqrt{n_l}}\, G_l\, S_l[t] \in \mathbb{R}^C ,
# $$
#
# and a *local* loss per layer, the cross-entropy of the label against $r_l[t]$ at every step after
# a burn-in.  The input a layer passes on to the next is detached, and so is each layer's state
# from one step to the next: the gradient of layer $l$'s loss reaches only $W_l$, through the
# present step's potential $U_l[t] = W_l P_l[t] / \sqrt{n} - R_l[t]$.  No gradient flows between
# layers or back through time, so each layer learns from signals available where it is, which is
# what makes the scheme plausible on neuromorphic hardware and cheap in memory.  Predictions use the
# last layer's readout averaged over the steps after burn-in.
#
# We check the claim on a small network with two layers: the gradient of the *second* layer's
# readout loss with respect to the *first* layer's weights is exactly zero under local learning,
# and not under end-to-end learning (`local_learning=False`).

# %%
moons = two_moons(20, seed=0)
for local in (True, False):
    net = SpikingMLP(20, hidden=(16, 16), num_classes=2, local_learning=local)
    weights = [torch.sign(torch.randn(layer.weight.shape, generator=generator)).requires_grad_(True)
               for layer in net.layers]  # one +-1 draw per layer, as leaves that collect gradients
    readouts = net.run(moons.x, weights).readouts  # (batch, layers, T, classes)
    last_layer_logits = readouts[:, 1, 10:].mean(1)  # layer 2's readout after a burn-in of 10 steps
    loss = torch.nn.functional.cross_entropy(last_layer_logits, moons.y)
    grads = torch.autograd.grad(loss, weights, allow_unused=True)
    norms = [0.0 if g is None else g.norm().item() for g in grads]
    print(f"DECOLLE local_learning={local}: |d loss_2 / d W_1| = {norms[0]:.4g}, |d loss_2 / d W_2| = {norms[1]:.4g}")
print(f"readout matrix of layer 1: {tuple(net.readout_0.shape)}, values {sorted(net.readout_0.unique().tolist())}")

# %% [markdown]
# ## 4. Two moons as spike trains
#
# The BiSNN paper's toy task: 2-D points on two interleaved half-circles.  Each coordinate is
# population-coded by 10 neurons with raised-cosine tuning curves centred evenly on its range; a
# neuron centred at $c_k$ fires at every step with probability
#
# $$
# \rho_k(v) = \rho_\max \cdot \tfrac12\Bigl(1 + \cos\frac{\pi (v - c_k)}{\Delta}\Bigr)\,[\,|v - c_k| < \Delta\,],
# $$
#
# ($\Delta$ twice the spacing of the centres, $\rho_\max = 0.5$), independently over $T = 100$
# steps.  So a point becomes 20 Bernoulli spike trains, two to four of each group active.
# `two_moons(n, seed=...)` returns the spikes $(N, T, 20)$, the labels and the points.

# %%
N_TRAIN = 200
train, test = two_moons(N_TRAIN, seed=0), two_moons(TEST_SIZE, seed=1)
print(f"two moons: train spikes {tuple(train.x.shape)}, test spikes {tuple(test.x.shape)}, "
      f"labels {train.y.unique().tolist()}")
print(f"two moons: mean spike probability per input and step {train.x.mean().item():.4f}")

example = 0
point = train.points[example]
low, high = torch.tensor([X_RANGE[0], Y_RANGE[0]]), torch.tensor([X_RANGE[1], Y_RANGE[1]])
rates = raised_cosine_rates(point[None], low, high)[0]  # the tuning curves' rates for this point
fig, (left, middle, right) = plt.subplots(1, 3, figsize=(13, 3.6), width_ratios=[1.1, 1.6, 0.8])
for label, marker in ((0, "o"), (1, "s")):
    chosen = train.y == label
    left.scatter(*train.points[chosen].T, s=10, marker=marker, label=f"class {label}")
left.scatter(*point, s=120, facecolors="none", edgecolors="k", label="example below")
left.set(xlabel="x1", ylabel="x2", title=f"{N_TRAIN} training points")
left.legend(fontsize=8)
t_idx, n_idx = np.nonzero(train.x[example].numpy())
middle.scatter(t_idx, n_idx, marker="|", s=30, c=np.where(n_idx < 10, "C0", "C1"))
middle.set(xlabel="time step", ylabel="input neuron", yticks=range(0, 20, 2),
           title=f"Spikes of one point ({point[0]:.2f}, {point[1]:.2f}); 0-9: x1, 10-19: x2")
right.barh(range(20), train.x[example].mean(0).numpy(), color="0.7", label="spikes / T (this example)")
right.plot(rates.numpy(), range(20), "k.-", label="tuning rate $\\rho_k$")
right.set(xlabel="spike probability per step", yticks=range(0, 20, 2), title="Population code")
right.legend(fontsize=7)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 5. Training Bayes-BiSNN
#
# Now every synaptic weight of a `SpikingMLP` becomes a Pyro sample site with a sign-Bernoulli
# prior, $p(w = +1) = \tfrac12$.  Bayes-BiSNN's posterior is mean-field, one natural parameter
# $\lambda$ per weight:
#
# $$
# q_\lambda(w) = \frac{e^{w\lambda}}{2\cosh\lambda}, \qquad P(w = +1) = \sigma(2\lambda),
# \qquad \mathbb{E}_q[w] = \tanh\lambda ,
# $$
#
# and training minimises the negative ELBO with the likelihood summed over the DECOLLE readouts of
# every layer and every step after burn-in,
#
# $$
# \mathcal{L}(\lambda) = \mathbb{E}_{q}\Bigl[-\sum_n \log p(y_n \mid x_n, \tilde w)\Bigr]
# + \beta\,\mathrm{KL}(q_\lambda \,\|\, p),
# \qquad \tilde w = \tanh\frac{\lambda + \delta}{\tau},\ \ \delta = \tfrac12 \log\tfrac{u}{1-u},\ u \sim U(0,1),
# $$
#
# where $\tilde w$ is the concrete relaxation of a draw (its sign has exactly the law $q$; it is
# differentiable in $\lambda$), and the KL is exact,
# $\sum \tanh\lambda\,(\lambda - \lambda_p) - \log\cosh\lambda + \log\cosh\lambda_p$.
# The **Bayesian learning rule** steps $\lambda$ along the natural gradient, the ordinary gradient
# divided by the Fisher information $1 - \tanh^2\lambda$ (tutorials 1 and 5 take it apart).
#
# `make_rule("bayes")` returns those parts by name: the prior, the guide (mean-field sign-Bernoulli
# relaxed at $\tau = 0.5$), the loss (the mean-field ELBO with the exact KL) and the optimiser (the
# learning rule).  `BayesianSNN` joins network, prior, likelihood and guide, `setup` checks that
# they fit, and `Trainer` runs the epochs (here with the *direct* engine, which evaluates the same
# ELBO without tracing).  We record, after every epoch, how decided the weights are: the mean of
# $|\mathbb{E}_q[w]| = |\tanh\lambda|$, 0 at the prior and 1 when every weight is certain.

# %%
rule = make_rule("bayes", temperature=0.5, seed=0)
net = SpikingMLP(20, hidden=HIDDEN, num_classes=2)
model = BayesianSNN(net, rule.prior, ReadoutCategorical(num_data=N_TRAIN, burn_in=10), rule.guide)
model.setup(train.x)  # checks that the parts fit; makes the guide's parameters
trainer = Trainer(model, rule.optim, rule.loss, train.x, train.y, batch_size=40, seed=0)


def decidedness():
    lams = torch.cat([lam.detach().flatten() for lam in model.guide.natural().values()])
    return {"mean_abs_mean": torch.tanh(lams).abs().mean().item()}


print(f"training: {sum(lam.numel() for lam in model.guide.natural().values())} binary weights, engine {trainer.engine}")
start = time.perf_counter()
history = trainer.fit(EPOCHS, evaluate=decidedness, progress=False)
print(f"training: {EPOCHS} epochs in {time.perf_counter() - start:.1f} s, final loss {history[-1]['loss']:.1f}")

fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.4))
left.plot(range(1, EPOCHS + 1), [h["loss"] for h in history], "o-", ms=3)
left.set(xlabel="epoch", ylabel="negative ELBO per epoch (mean over batches)", title="Training loss")
right.plot(range(1, EPOCHS + 1), [h["mean_abs_mean"] for h in history], "o-", ms=3, color="C1")
right.set(xlabel="epoch", ylabel="mean |tanh(lambda)|", title="How decided the weights are", ylim=(0, 1))
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 6. Three ways to predict: MAP, ensemble and mean
#
# The posterior $q$ gives three predictors, chosen by `model.predict(x, mode=...)`:
#
# * `map`: the posterior mode, $w = \operatorname{sign}\lambda$: one binary network, one pass;
# * `ensemble`: the posterior predictive $p(y \mid x) \approx \frac1K \sum_{k=1}^{K} p(y \mid x, w_k)$
#   with $K$ exact $\pm 1$ draws $w_k \sim q$, **averaged in probability** (not in logits), all
#   $K$ networks run in one batched pass;
# * `mean`: $w = \tanh\lambda$, real-valued: not a binary network at all, a diagnostic only.
#
# `model.predictive_probs(x, "ensemble", samples=K)` returns the per-draw probabilities $(K, N, C)$;
# their mean over draws is what `predict(x, "ensemble", K)` returns.  We keep the draws, to score
# each network on its own too.  `bisnn_pyro.analysis.summary` gives accuracy, NLL (mean negative
# log-likelihood of the labels), Brier score, ECE and MCE (expected and maximum calibration error
# over 15 equal-width bins of the top-class confidence).

# %%
draws = model.predictive_probs(test.x, "ensemble", samples=SAMPLES)  # (K, N, 2)
predictions = {
    "map": model.predict(test.x, mode="map"),
    "ensemble": draws.mean(0),
    "mean": model.predict(test.x, mode="mean"),
}
scores = {}
for mode, probs in predictions.items():
    scores[mode] = summary(probs, test.y)
    confidence = probs.max(-1).values.mean().item()
    print(f"mode={mode} " + " ".join(f"{k}={v:.4f}" for k, v in scores[mode].items()) + f" confidence={confidence:.4f}")

draw_scores = [summary(p, test.y) for p in draws]
draw_accuracy = np.array([s["accuracy"] for s in draw_scores])
draw_nll = np.array([s["nll"] for s in draw_scores])
print(f"single draws: accuracy mean={draw_accuracy.mean():.4f} sd={draw_accuracy.std(ddof=1):.4f} "
      f"nll mean={draw_nll.mean():.4f}; ensemble of {SAMPLES}: accuracy={scores['ensemble']['accuracy']:.4f} "
      f"nll={scores['ensemble']['nll']:.4f}")

# %%
fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
modes = list(predictions)
n = len(test.y)
for axis, metric in zip(axes, ("accuracy", "nll", "ece"), strict=True):
    values = [scores[m][metric] for m in modes]
    if metric == "accuracy":  # a proportion: binomial standard error
        errors = [math.sqrt(v * (1 - v) / n) for v in values]
    elif metric == "nll":  # a mean over test points: standard error of the mean
        errors = [(-torch.log(predictions[m].gather(1, test.y[:, None]).clamp_min(1e-12))).std().item() / math.sqrt(n)
                  for m in modes]
    else:  # ECE is no mean over points: the spread of its value over bootstrap resamples of the test set
        resample = torch.Generator().manual_seed(0)
        indices = [torch.randint(0, n, (n,), generator=resample) for _ in range(200)]
        errors = [float(np.std([ece(predictions[m][i], test.y[i]) for i in indices], ddof=1)) for m in modes]
    axis.bar(modes, values, yerr=errors, capsize=4, color=["C0", "C1", "C2"])
    if metric == "accuracy":
        axis.scatter(["ensemble"] * SAMPLES, draw_accuracy, color="k", s=8, zorder=3, label="single draws")
        axis.legend(fontsize=8, loc="lower left")
        axis.set_ylim(max(0.0, min(values + list(draw_accuracy)) - 0.05), 1.0)
    if metric == "nll":
        axis.scatter(["ensemble"] * SAMPLES, draw_nll, color="k", s=8, zorder=3, label="single draws")
        axis.legend(fontsize=8)
    axis.set(title=f"{metric} on {n} test points (+- 1 s.e.)", ylabel=metric, xlabel="prediction mode")
plt.tight_layout()
plt.show()

# %% [markdown]
# The single draws (black dots) are binary networks sampled from $q$.  They scatter around and
# mostly below the ensemble: on average a single draw is the worse classifier.  For the NLL this is
# a theorem about the average: $-\log$ is convex, so point by point (Jensen)
#
# $$
# -\log \frac1K \sum_{k=1}^{K} p(y \mid x, w_k) \le \frac1K \sum_{k=1}^{K} -\log p(y \mid x, w_k),
# $$
#
# although one lucky draw may beat the ensemble.  The ensemble is usually *less confident* than the
# MAP network: averaging $K$ networks that disagree near the boundary pulls probabilities towards
# $\tfrac12$.  Whether that helps calibration depends on how far $q$ has concentrated: the
# [results page](../../results/#two-moons) records the default run (two layers of 256, 60 epochs)
# with an under-confident ensemble, ECE 0.035 against 0.004 for its MAP network, and tutorial 4
# studies this over seeds.
#
# ## 7. The uncertainty map
#
# The ensemble's predictive entropy splits into two parts:
#
# $$
# \underbrace{\mathcal{H}\Bigl[\tfrac1K \textstyle\sum_k p(y \mid x, w_k)\Bigr]}_{\text{predictive entropy}}
# = \underbrace{\tfrac1K \textstyle\sum_k \mathcal{H}\bigl[p(y \mid x, w_k)\bigr]}_{\text{expected entropy (aleatoric)}}
# + \underbrace{I(y; w \mid x)}_{\text{mutual information (epistemic)}} .
# $$
#
# The mutual information is also the mean KL divergence of each draw's prediction from their average,
# $I = \frac1K \sum_k \mathrm{KL}\bigl(p(\cdot \mid x, w_k) \,\|\, \bar p(\cdot \mid x)\bigr)$, which we use
# as a check on the library's `mutual_information`.  It is high where the sampled networks are each
# confident but *disagree*: where the data did not pin the weights down.  A point estimate (MAP)
# has none.  We encode a grid
# over the plane into spikes, exactly as the data were encoded (`encode_points`), run the $K$
# networks on it, and compare the mutual information near the training points (within 0.1 of one)
# with far from them (more than 0.5 away).  `bisnn-pyro report` draws the same maps for a run
# folder (`bisnn_pyro.analysis.plots.uncertainty_maps` writes them as a PNG).

# %%
gx, gy = np.meshgrid(np.linspace(*X_RANGE, GRID), np.linspace(*Y_RANGE, GRID))
grid_points = torch.tensor(np.stack([gx.ravel(), gy.ravel()], -1), dtype=torch.float32)
grid_spikes = encode_points(grid_points, 100, torch.Generator().manual_seed(0))
grid_draws = model.predictive_probs(grid_spikes, "ensemble", samples=SAMPLES)  # (K, G, 2)

entropy = predictive_entropy(grid_draws)
aleatoric = expected_entropy(grid_draws)
mi = mutual_information(grid_draws)
ensemble_probs = grid_draws.mean(0, keepdim=True).double()
per_draw = grid_draws.double()
mi_by_hand = (per_draw * (per_draw.clamp_min(1e-300).log() - ensemble_probs.log())).sum(-1).mean(0)
print(f"uncertainty: max |MI - mean_k KL(p_k || p_mean)| = {(mi - mi_by_hand).abs().max().item():.2e}")
print(f"uncertainty: mean over the grid: predictive entropy {entropy.mean().item():.4f} = "
      f"expected entropy {aleatoric.mean().item():.4f} + MI {mi.mean().item():.4f}")
distance = torch.cdist(grid_points, train.points).min(-1).values
near, far = distance < 0.1, distance > 0.5
print(f"uncertainty: mean MI near the data = {mi[near].mean().item():.4f} ({int(near.sum())} grid points), "
      f"far from the data = {mi[far].mean().item():.4f} ({int(far.sum())} grid points)")
map_grid = model.predictive_probs(grid_spikes, "map")
print(f"uncertainty: MI of the MAP network (one draw) = {mutual_information(map_grid).max().item():.4f}")

maps = {
    "P(class 1), ensemble": grid_draws.mean(0)[:, 1],
    "predictive entropy (nats)": entropy,
    "mutual information (nats)": mi,
}
fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
for axis, (title, values) in zip(axes, maps.items(), strict=True):
    image = axis.pcolormesh(gx, gy, values.reshape(gx.shape).numpy(), shading="auto", cmap="viridis")
    fig.colorbar(image, ax=axis)
    axis.scatter(*train.points.T, c=train.y, cmap="coolwarm", s=6, edgecolors="w", linewidths=0.3)
    axis.set(title=title, xlabel="x1", ylabel="x2")
plt.suptitle(f"Bayes-BiSNN ensemble of K = {SAMPLES} draws over the plane (training points on top)")
plt.tight_layout()
plt.show()

# %% [markdown]
# The predictive probability switches sharply across the gap between the moons, and the entropy is
# high along that boundary, where even single networks are unsure.  The mutual information is
# small on the moons, where the weights that matter were decided by the data, and larger in the
# regions no training point reached (the corners and the space around the moons): there the
# relevant weights are still close to their prior and the draws disagree.  This is the
# calibration-of-uncertainty argument for a posterior over binary weights.
#
# ## Exercises
#
# 1. **Temperature.** Train with `make_rule("bayes", temperature=1.0)` and with `0.2`.  Predict
#    first: at which temperature do the weights get decided faster (the right panel of section 5),
#    and what happens to the ensemble's ECE and to the mutual information far from the data?
# 2. **KL weight.** Pass `kl_weight=9` to `BayesianSNN`: the paper charges its KL weight
#    $\rho = 5\cdot10^{-4}$ at each of the $T - 10 = 90$ scored steps against a loss averaged over the
#    batch, which for the summed likelihood here is $\beta = \rho \cdot N \cdot 90 = 9$.  The KL now
#    pulls $q$ harder towards the prior: predict how the mean $|\tanh\lambda|$, the ensemble's
#    confidence and the MAP accuracy change.
# 3. **Surrogate.** Build the network with `spike="fast-sigmoid"`.  Its derivative has area about
#    $0.2$ instead of $1$ (section 2): predict whether training slows down, then check the loss curve.
# 4. **Ensemble size.** Score the ensemble for $K = 1, 2, 5, 10, 50$ draws.  Which metric keeps
#    improving with $K$ and which saturates early?  (The NLL bound of section 6 says something about
#    $K = 1$ against large $K$.)
# 5. **End-to-end learning.** Build the network with `local_learning=False` (section 3) and the
#    likelihood `ReadoutCategorical(N_TRAIN, burn_in=10, readouts="last")`, so only the last
#    readout is scored and gradients flow through layers.  Compare accuracy and training time with
#    DECOLLE's local learning.
