# %% [markdown]
# # Event cameras
#
# An event camera (a dynamic vision sensor, DVS) has no frames and no shutter: each pixel reports,
# on its own and within microseconds, when the light it sees changes.  Its output is a stream of
# *events*, which is what spiking networks were made for.  This tutorial builds an event stream
# with the library's simulated sensor, bins it into the spike tensors a network reads, loads the
# offline event-camera digits that the library generates without any download (`digits-dvs`), and
# trains the convolutional binary spiking network on them with Bayes-BiSNN.
#
# **What you will learn**
#
# * what an event stream is: $(x, y, t, p)$ tuples, and how a DVS pixel makes them;
# * how events are binned into frames of $T$ steps, by hand and with the library's functions,
#   and what the binning throws away;
# * the `digits-dvs` set: scikit-learn's 8×8 digits seen by a simulated DVS, its shapes and split;
# * the convolutional network `ConvSpikingNet` of binary convolutions `BinaryConv2d`, its presets,
#   and how a run configuration selects it;
# * how to train it briefly with Bayes-BiSNN and score each prediction mode.

# %%
import inspect
import math
import os
import time

import matplotlib.pyplot as plt
import numpy as np
import pyro
import torch

from bisnn_pyro import BayesianSNN, ReadoutCategorical, Trainer, make_rule
from bisnn_pyro.analysis import summary
from bisnn_pyro.config.run import ExperimentConfig
from bisnn_pyro.data import digits_dvs as sensor
from bisnn_pyro.data.events import EventFrames
from bisnn_pyro.data.registry import SPECS, load_dataset
from bisnn_pyro.experiment import build_network
from bisnn_pyro.models import CONV_PRESETS, BinaryConv2d, ConvSpikingNet, LIFParameters
from bisnn_pyro.models.conv import conv_synapse
from bisnn_pyro.runtime import keep_freed_memory

SMALL = os.environ.get("BISNN_TUTORIAL_SMALL") == "1"  # the test suite runs a small version
TRAIN_SIZE = 400 if SMALL else None  # training recordings (None: all 1,438)
TEST_SIZE = 200 if SMALL else None  # test recordings scored (None: all 359)
EPOCHS = 2 if SMALL else 6
SAMPLES = 10  # weight draws in the ensemble
torch.set_num_threads(1)  # small convolutions gain little from a second thread, and on a busy machine lose
keep_freed_memory()  # see the README: a training step frees and reuses tens of megabytes
pyro.set_rng_seed(0)
print(f"size: {'small' if SMALL else 'full'}, {EPOCHS} epochs")

# %% [markdown]
# ## Events
#
# A DVS pixel at $(x, y)$ keeps the log intensity it saw at its last event,
# $\log I_{x,y}(t_{\text{last}})$.  When the current log intensity has moved from it by a contrast
# threshold $C$, the pixel emits an event, ON ($p = 1$) if the light rose and OFF ($p = 0$) if it
# fell, and resets its reference by $\pm C$:
#
# $$
# \bigl|\log I_{x,y}(t) - \log I_{x,y}(t_{\text{last}})\bigr| \ge C
# \quad\Longrightarrow\quad
# e = (x, y, t, p) .
# $$
#
# A still scene makes no events; a moving edge makes a burst of them.  The N-MNIST recordings were
# made by moving a real DVS in three saccades (a small triangle) in front of MNIST digits on a
# screen.  `bisnn_pyro/data/digits_dvs.py` simulates the same thing for scikit-learn's bundled
# 8×8 digits: the digit sits in the middle of a 12×12 sensor, moves along a closed triangle of
# side 1.5 pixels in 100 ms, the sensor samples it every millisecond, and Gaussian noise is added
# to the log intensity.  Its functions do one step each, so we can run the sensor on one digit
# and look at its events.  The settings are `digits_dvs`'s own defaults.

# %%
defaults = {name: p.default for name, p in inspect.signature(sensor.digits_dvs).parameters.items()}
print("digits_dvs defaults:", defaults)
images, labels = sensor.load_digit_images()  # (1797, 8, 8) intensities in [0, 1], labels 0-9
index = int(np.flatnonzero(labels == 3)[0])  # a "3"
samples = defaults["duration_us"] // defaults["sample_us"]  # sensor samples in the recording
rng = np.random.default_rng(0)
path = sensor.saccade_paths(samples, defaults["amplitude"], rng.uniform(0, 2 * math.pi, 1))
intensity = sensor.shifted_images(images[index : index + 1], path)  # (1, samples, 12, 12)
log_intensity = np.log(intensity + 0.1) + defaults["noise"] * rng.standard_normal(intensity.shape)
counts = sensor.crossing_counts(log_intensity, defaults["threshold"])  # +k: k ON events, -k: k OFF
events = sensor.events_from_counts(counts[0], defaults["sample_us"])
print(f"events: {len(events)} (ON {int(events['p'].sum())}, OFF {int((events['p'] == 0).sum())})")
print("fields:", events.dtype.names, "first events:", events[:3].tolist())
print(f"time span: {events['t'].min()} to {events['t'].max()} microseconds")

# %% [markdown]
# Each event is a point in $(x, y, t)$ space with a sign.  Seen from the side (time against the
# column $x$), the stream changes its pattern at the corners of the triangle (dashed lines): each
# leg moves the digit's bright strokes in another direction, so other edges brighten (ON) and
# darken (OFF).  The sensor noise adds scattered events of its own.

# %%
figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6), gridspec_kw={"width_ratios": [1, 2.4]})
left.imshow(images[index], cmap="gray_r")
left.set(title=f"the 8x8 digit (label {labels[index]})", xlabel="x", ylabel="y")
for polarity, colour, name in ((1, "tab:red", "ON"), (0, "tab:blue", "OFF")):
    chosen = events[events["p"] == polarity]
    jitter = np.random.default_rng(1).uniform(-0.3, 0.3, len(chosen))  # events share pixels and samples
    right.scatter(chosen["t"] / 1000, chosen["x"] + jitter, s=3, color=colour, label=f"{name} ({len(chosen)})")
for corner in (1, 2):
    right.axvline(corner * defaults["duration_us"] / 3000, color="grey", linestyle="--",
                  label="corner of the triangle" if corner == 1 else None)
right.set(xlabel="time (ms)", ylabel="pixel column x", title="its event stream, seen from the side")
right.legend(loc="upper right")
plt.show()

# %% [markdown]
# ## From events to frames
#
# A network that runs in $T$ discrete steps reads the stream as frames: cut time into bins of
# $\Delta t$, count the events of each polarity at each pixel in each bin, and keep whether the
# count is positive (a pixel spikes or not in a step):
#
# $$
# n_{k,p,y,x} = \#\bigl\{e : \lfloor t_e / \Delta t \rfloor = k,\ p_e = p,\ y_e = y,\ x_e = x\bigr\},
# \qquad
# S_{k,p,y,x} = \mathbb 1\bigl[n_{k,p,y,x} > 0\bigr],
# \qquad k = 0, \dots, T - 1 .
# $$
#
# `digits-dvs` takes $T = 20$ steps of $\Delta t = 5$ ms.  By hand, with `numpy`:

# %%
STEPS = SPECS["digits-dvs"].steps  # the data set's default T
step_us = defaults["duration_us"] // STEPS
n = np.zeros((STEPS, 2, sensor.SENSOR, sensor.SENSOR), dtype=np.int64)  # (T, P, H, W)
np.add.at(n, (events["t"] // step_us, events["p"], events["y"], events["x"]), 1)
frames_by_hand = torch.from_numpy((n > 0).astype(np.float32))
print(f"events counted in the bins: {int(n.sum())} of {len(events)}")
print(f"spikes in the binary frames: {int(frames_by_hand.sum())} (events merged by the clipping: "
      f"{int(n.sum() - frames_by_hand.sum())})")
print(f"frames shape (T, P, H, W): {tuple(frames_by_hand.shape)}")

# %% [markdown]
# The library bins in two places.  `digits-dvs` bins the sensor's counts directly
# (`frames_from_counts`), and the recorded sets (N-MNIST, DVS Gesture, MNIST-DVS) go through
# `EventFrames` in `bisnn_pyro/data/events.py`, which wraps tonic's `ToFrame` with a fixed start
# and end time so that every recording gives the same $T$ (it needs tonic, the optional extra
# `pip install "bisnn-pyro[events]"`).  Both should give exactly our frames.  (`EventFrames`
# measures time from the recording's first event unless `align_start=False`; the simulated
# recording starts at time 0.)

# %%
frames_library = sensor.frames_from_counts(counts, STEPS)[0]
print(f"frames_from_counts equals the hand binning: {torch.equal(frames_library, frames_by_hand)}")
try:
    to_frames = EventFrames((sensor.SENSOR, sensor.SENSOR, 2), STEPS, step_us, align_start=False)
    frames_tonic = to_frames(events)
    print(f"EventFrames equals the hand binning: {torch.equal(frames_tonic, frames_by_hand)}")
except Exception as error:  # tonic is not installed: the library says so in one line
    print(f"EventFrames skipped: {error}")

# %% [markdown]
# A few of the 20 frames, ON spikes in red and OFF spikes in blue: the digit's leading edges turn
# ON and its trailing edges OFF, and the direction swaps as the saccade turns a corner.

# %%
shown = [0, 3, 6, 9, 12, 15, 18]
figure, axes = plt.subplots(1, len(shown), figsize=(2 * len(shown), 2.4))
for axis, k in zip(axes, shown, strict=True):
    rgb = np.ones((sensor.SENSOR, sensor.SENSOR, 3))
    rgb[frames_by_hand[k, 1].numpy() > 0] = (0.85, 0.1, 0.1)
    rgb[frames_by_hand[k, 0].numpy() > 0] = (0.1, 0.3, 0.85)
    rgb[(frames_by_hand[k, 0] * frames_by_hand[k, 1]).numpy() > 0] = (0.5, 0.1, 0.6)  # both in one step
    axis.imshow(rgb)
    axis.set_title(f"step {k} ({k * step_us // 1000}-{(k + 1) * step_us // 1000} ms)", fontsize=8)
    axis.set_xticks([])
    axis.set_yticks([])
axes[0].set_ylabel("y")
figure.suptitle("binary frames: ON red, OFF blue, both purple")
plt.show()

# %% [markdown]
# ## The offline digits set
#
# `digits-dvs` runs this sensor on all 1,797 digits with one seeded generator, bins them into
# $T = 20$ steps, and splits them 80/20 with a seed, stratified by digit; nothing is downloaded
# (`bisnn-pyro datasets` lists every set, and [the data guide](../../data/) the recorded ones).
# `load_dataset` returns it by name, as a run configuration does; each example is a spike tensor
# $(T, P, H, W) = (20, 2, 12, 12)$.

# %%
start = time.perf_counter()
train, test = load_dataset("digits-dvs", steps=STEPS, seed=0)
print(f"generated in {time.perf_counter() - start:.1f} s")
print(f"train: x {tuple(train.x.shape)}, y {tuple(train.y.shape)}; test: x {tuple(test.x.shape)}")
print(f"recordings in all: {len(train.y) + len(test.y)}")
print(f"frames binary: {bool(((train.x == 0) | (train.x == 1)).all())}")
print(f"mean spike probability per pixel and step: {train.x.mean():.4f}")
print("test recordings per digit:", torch.bincount(test.y, minlength=10).tolist())

# %% [markdown]
# Summed over time, each recording is a blurred outline of its digit, drawn by its edges (ON minus
# OFF spikes would show where the light rose and fell):

# %%
figure, axes = plt.subplots(1, 10, figsize=(15, 2))
for digit, axis in enumerate(axes):
    example = int(torch.nonzero(train.y == digit)[0])
    axis.imshow(train.x[example].sum(dim=(0, 1)), cmap="magma")
    axis.set_title(f"digit {digit}")
    axis.set_xticks([])
    axis.set_yticks([])
figure.suptitle("one training recording per digit: spikes summed over steps and polarities")
plt.show()

# %% [markdown]
# ## The convolutional spiking network
#
# Each convolutional layer $l$ is a layer of LIF neurons (one per channel and pixel) whose synapses
# are a binary convolution, `BinaryConv2d`: the weights $W^{(l)} \in \{-1, +1\}^{C_{\text{out}}
# \times C_{\text{in}} \times k \times k}$ are sample sites under the binary prior, exactly like a
# dense layer's, and the drive of the membrane is
#
# $$
# U^{(l)}_t = \frac{1}{\sqrt{C_{\text{in}} k^2}} \; W^{(l)} \ast P^{(l)}_t - R^{(l)}_t ,
# $$
#
# with "same" padding, stride 1 and optional max pooling (a pooled unit spikes if any of its units
# did).  Every layer has its own fixed random readout to the 10 classes (DECOLLE).  An ensemble of
# $K$ weight draws runs as one grouped convolution of $K$ groups, which gives the same drives as
# $K$ separate convolutions:

# %%
torch.manual_seed(0)
conv = BinaryConv2d(2, 4, kernel_size=3)
draws = torch.randint(0, 2, (5, 4, 2, 3, 3)).float() * 2 - 1  # K = 5 draws of the +-1 weights
grouped = conv_synapse(train.x[:8, 10], draws, conv.scale, conv.padding)  # step 10 of 8 recordings
one_by_one = torch.stack([conv.scale * torch.nn.functional.conv2d(train.x[:8, 10], w, padding=1) for w in draws])
print(f"grouped convolution shape (K, B, C, H, W): {tuple(grouped.shape)}")
print(f"grouped against one by one, max difference: {(grouped - one_by_one).abs().max():.2e}")

# %% [markdown]
# `CONV_PRESETS` names two networks: `small` (16 and 32 channels, 3×3 kernels, no pooling: the
# 12×12 offline set on a CPU) and `paper` (64, 128 and 128 channels, 7×7, pooling 2, close to the
# paper's networks for the 128×128 recordings).

# %%
for name, preset in CONV_PRESETS.items():
    print(f"preset {name}: {preset}")

# %% [markdown]
# A run configuration selects the network in its `[model]` section: `network = "conv"`, a
# `conv_preset`, optionally another `kernel_size`, `dense` layers after the convolutions, and
# `learning` (`local`: DECOLLE's per-layer losses, or `end-to-end`).  What the data set knows
# is left to it: $T$, the burn-in, the time constants and the readout gain of `digits-dvs` (faster
# neurons than two moons', for 20 steps).  The
# [results page](../../results/#offline-digits-digits-dvs-and-the-convolutional-network) found
# end-to-end learning and 5×5 kernels to work best on this set, with Adam on the natural
# parameters (`bayes-adam`) at a step size of 0.1; we take that recipe, with a smaller minibatch so
# that a few epochs make more steps.  On the command line:
#
#     bisnn-pyro train --dataset digits-dvs --model conv --kernel-size 5 --learning end-to-end \
#         --rule bayes-adam --lr 0.1 --batch-size 16 --epochs 6 --out runs/dvs

# %%
config = ExperimentConfig({
    "data": {"dataset": "digits-dvs"},
    "model": {"network": "conv", "conv_preset": "small", "kernel_size": 5, "learning": "end-to-end"},
    "optim": {"lr": 0.1},
    "training": {"rule": "bayes-adam", "batch_size": 16, "epochs": EPOCHS, "seed": 0},
})
print(f"from the data set: steps {config.steps}, burn-in {config.burn_in}, "
      f"tau_mem/syn/ref {config.tau_mem}/{config.tau_syn}/{config.tau_ref}, readout gain {config.readout_gain}")
frame_shape = tuple(train.x.shape[2:])  # (P, H, W)
net = ConvSpikingNet(
    frame_shape,
    num_classes=10,
    **{**CONV_PRESETS[config.conv_preset], "kernel_size": config.kernel_size},
    neuron=LIFParameters(config.tau_mem, config.tau_syn, config.tau_ref),
    readout_gain=config.readout_gain,
    local_learning=config.learning == "local",
    readout_seed=config.seed,
)
print(net)
built = build_network(config, frame_shape)  # what `bisnn-pyro train` builds from the configuration
same = repr(net) == repr(built) and all(
    torch.equal(a, b) for a, b in zip(net.buffers(), built.buffers(), strict=True))  # layers and readouts
print(f"the same network as the configuration builds: {same}")
weights = sum(layer.weight.numel() for layer in net.layers)
print(f"binary weights: {weights}")

# %% [markdown]
# ## Training with Bayes-BiSNN
#
# The rest is the same as for the dense network: the rule gives the binary prior, the mean-field
# sign-Bernoulli guide (relaxed draws at $\tau = 0.5$, the exact KL) and Adam on the natural
# parameters $\lambda$; the DECOLLE likelihood scores every layer's readout at every step after the
# burn-in.  We train briefly; each epoch goes once through the training recordings.

# %%
x_train = train.x if TRAIN_SIZE is None else train.x[:TRAIN_SIZE]
y_train = train.y if TRAIN_SIZE is None else train.y[:TRAIN_SIZE]
x_test = test.x if TEST_SIZE is None else test.x[:TEST_SIZE]
y_test = test.y if TEST_SIZE is None else test.y[:TEST_SIZE]
rule = make_rule(config.rule, lr=config.optim["lr"])
model = BayesianSNN(net, rule.prior, ReadoutCategorical(num_data=len(y_train), burn_in=config.burn_in), rule.guide)
model.setup(x_train)
trainer = Trainer(model, rule.optim, rule.loss, x_train, y_train, batch_size=config.batch_size, seed=config.seed)
start = time.perf_counter()
history = trainer.fit(EPOCHS, progress=False)
print(f"trained {EPOCHS} epochs on {len(y_train)} recordings in {time.perf_counter() - start:.1f} s")
print("loss per epoch:", [round(epoch["loss"], 1) for epoch in history])

# %% [markdown]
# ## Test accuracy per prediction mode
#
# `map` takes the posterior mode $w = \operatorname{sign}\lambda$, `ensemble` averages the class
# probabilities of $K$ exact weight draws, and `mean` runs the network with the real-valued mean
# weights $\tanh\lambda$ (a diagnostic: the network was never meant to run with them).  Chance is
# 0.1.

# %%
scores = {}
for mode in ("map", "ensemble", "mean"):
    probs = model.predict(x_test, mode=mode, samples=SAMPLES)
    scores[mode] = summary(probs, y_test)
    print(f"test accuracy ({mode}): {scores[mode]['accuracy']:.3f}  NLL {scores[mode]['nll']:.3f}  "
          f"ECE {scores[mode]['ece']:.3f}  on {len(y_test)} recordings")

figure, axis = plt.subplots(figsize=(5, 3.2))
modes = list(scores)
axis.bar(modes, [scores[m]["accuracy"] for m in modes], color=["tab:blue", "tab:orange", "tab:green"])
axis.axhline(0.1, color="grey", linestyle="--", label="chance")
axis.set(ylim=(0, 1), ylabel="test accuracy", title=f"digits-dvs after {EPOCHS} epochs")
axis.legend()
plt.show()

# %% [markdown]
# A few epochs leave the network short of what longer training reaches.  For what full training gives, the
# [results page](../../results/#offline-digits-digits-dvs-and-the-convolutional-network) measured
# this recipe (5×5 kernels, end to end, `bayes-adam` at a step size of 0.1, minibatches of 40) for
# 30 epochs on five seeds: the Bayes-BiSNN ensemble reached a mean test accuracy of 0.884 (MAP
# 0.885) against 0.908 for the full-precision network, each run under 4 minutes on two cores.  The
# [studies page](../../studies/#the-papers-claims) repeats it as a study over 5 seeds: ensemble
# accuracy 0.885 [0.873, 0.898] with ECE 0.095, while the paper's natural-gradient rule reaches
# 0.832 and ST-BiSNN 0.838.

# %% [markdown]
# ## Exercises
#
# 1. Change the contrast threshold of the simulated sensor (`defaults["threshold"]`, 0.15) to 0.3
#    and to 0.05.  Predict how the number of events and the number of spikes in the frames change,
#    and why the clipping to one spike per step loses more events at the lower threshold.
# 2. Bin the same events into $T = 10$ and $T = 50$ steps (`STEPS`).  Which counts stay the same,
#    which change?  Check that `frames_from_counts` refuses a $T$ that does not divide the 100
#    sensor samples, and that `EventFrames` does not.
# 3. Train with `"learning": "local"` (DECOLLE's per-layer losses, the paper's form) and with
#    3×3 kernels, and compare the accuracies after the same epochs with the results page's remarks.
# 4. Replace `bayes-adam` by `bayes` (the paper's natural-gradient rule; remove the `lr` of 0.1,
#    its default is 5e-4).  Which prediction mode gains most from the ensemble now?
# 5. Set `"dense": [128]` in the `[model]` section: how many binary weights does the network gain,
#    and does `build_network` still build the same network as your hand-made one (add `dense` to it)?
