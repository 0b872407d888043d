# %% [markdown]
# # A calibration study
#
# One training run says little about calibration: change the seed and the expected calibration
# error (ECE) of a small network moves by as much as the difference between two learning rules.
# A *study* trains every setting ("arm") with several seeds, scores every run the same way, and
# reports each metric as a mean over seeds with an interval, and each comparison as a *paired*
# difference over the seeds two arms share.  This tutorial writes a tiny study of Bayes-BiSNN
# against ST-BiSNN on two moons, runs it with the library's study runner, reads its report, and
# recomputes one of its paired intervals by hand.
#
# **What you will learn**
#
# * what a study file is: a base configuration, named arms, seeds, extra ensemble sizes;
# * how to run a study on a pool of local processes and write its report (tables and figures);
# * how to read a pooled reliability diagram and the metrics figure;
# * what a Student-t interval over seeds and a paired difference are, and how to compute one by
#   hand from `runs.csv`;
# * what such numbers do and do not say: few seeds, many comparisons, one data set.

# %%
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy import stats

from bisnn_pyro.studies import paired_difference, read_study
from bisnn_pyro.studies.report import write_study_report

SMALL = os.environ.get("BISNN_TUTORIAL_SMALL") == "1"  # the test suite runs a small version
SEEDS = 3 if SMALL else 5  # training seeds per arm
EPOCHS = 4 if SMALL else 15
HIDDEN = 32 if SMALL else 64  # one hidden layer of this many LIF neurons
STEPS = 50 if SMALL else 100  # time steps per example
TEST_SIZE = 300 if SMALL else 1000
WORKERS = 2  # processes in the study's pool (this machine has two cores)
print(f"size: {'small' if SMALL else 'full'}, {SEEDS} seeds, {EPOCHS} epochs")

# %% [markdown]
# ## A study file
#
# A study is described by a TOML file (the [studies guide](../../studies/#the-study-file) lists
# every key).  `seeds` says which training seeds every arm runs with (a count $n$ means seeds
# $0, \dots, n-1$); `[base_config.*]` sections are a run configuration, exactly as
# `bisnn-pyro train --config` reads it; each `[[arms]]` names a setting and the options it
# changes over the base, by `section.option`; `ensemble_sizes` asks for the posterior-predictive
# ensemble to be scored also with these numbers of weight draws $K$ (the first $K$ of one set of
# draws), besides the run's own $K$ = `training.samples` = 10.
#
# The library's own study of the paper's claims, `studies/calibration.toml` in the repository,
# has thirteen arms (four learning rules, three temperatures, two KL weights, two likelihoods, and
# the same rules on the event-camera digits), 10 seeds on two moons and 5 on digits-dvs.  Ours has
# two arms: **Bayes-BiSNN** (`bayes`: the mean-field sign-Bernoulli posterior trained by the
# paper's natural-gradient rule) and **ST-BiSNN** (`ste`: one ±1 weight per synapse, trained
# straight-through, here with Adam at a step size of 0.01 rather than its default 0.001, so that it
# learns in a few epochs), on a smaller network trained for a few epochs so that it runs in a
# minute or two.

# %%
folder = Path(tempfile.mkdtemp(prefix="bisnn-study-"))
study_file = folder / "moons.toml"
study_file.write_text(f"""\
seeds = {SEEDS}
ensemble_sizes = [1, 30]           # also score ensembles of 1 and 30 draws

[base_config.data]
dataset = "two-moons"
steps = {STEPS}
test_size = {TEST_SIZE}

[base_config.model]
hidden = [{HIDDEN}]

[base_config.training]
epochs = {EPOCHS}

[[arms]]
name = "bayes"
set = {{ "training.rule" = "bayes" }}

[[arms]]
name = "ste"
set = {{ "training.rule" = "ste", "optim.lr" = 0.01 }}
""")
print(study_file.read_text())

# %% [markdown]
# `read_study` reads the file and resolves every run's configuration (a bad option is refused here,
# in one line naming the arm, before anything trains).  A run is an arm times a seed; its seed is
# `training.seed`, which sets the initial variational parameters, the minibatch order, the weight
# draws and the fixed random DECOLLE readouts.  The *data* seed stays the base's, so all runs see
# the same 200 training and the same test points: runs of two arms with one seed share their data,
# readouts and minibatch order, and can be compared in pairs.

# %%
spec = read_study(study_file)
runs = spec.runs()
for run in runs:
    print(f"{run.folder:14s} rule={run.config.rule:5s} seed={run.config.seed} "
          f"guide={run.config.guide['name']:17s} optim={run.config.optim['name']}")
print(f"runs in the study: {len(runs)}")

# %% [markdown]
# ## Running it
#
# `bisnn-pyro study run STUDY.toml --out DIR --workers N` trains every run on a pool of $N$
# processes, each with one torch thread, into an ordinary run folder `DIR/<arm>/seed-<s>`
# (`bisnn-pyro evaluate` and `report` work on it), and writes each finished run's test scores per
# prediction mode to its `scores.json`: the MAP, the $K = 10$ ensemble and the ensembles of
# `ensemble_sizes` (ST-BiSNN's guide is a point estimate, so it has only a MAP).  Running the same
# command again skips what has finished and resumes what was interrupted.
#
# The function behind the command is `run_study` in `bisnn_pyro/studies/runner.py`.  Its pool starts
# its workers with the *spawn* method, which imports the caller's main module again in every worker;
# in a script of your own, call it under `if __name__ == "__main__":`, or the workers fail at
# start-up.  Here we run the command in a subprocess, which works the same from a script and from a
# notebook.

# %%
def bisnn_pyro(*args: str) -> str:
    """Run the bisnn-pyro command of this Python environment; return what it printed."""
    done = subprocess.run([sys.executable, "-m", "bisnn_pyro", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"bisnn-pyro {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout.strip()


study_dir = folder / "moons"
print(bisnn_pyro("study", "run", str(study_file), "--out", str(study_dir), "--workers", str(WORKERS), "--quiet"))

# %% [markdown]
# `bisnn-pyro study report DIR` aggregates the finished runs (also of a study that is still
# running, or was stopped halfway) into `DIR/report`: `runs.csv` (one row per run and prediction
# mode, with every metric and every configuration key), `summary.csv` and `summary.md` (each arm
# and mode over its seeds), `paired.csv` and `paired.md` (paired differences), and the figures.
# The function behind it, `write_study_report` in `bisnn_pyro/studies/report.py`, starts no
# process, so we call it here directly.

# %%
report = write_study_report(study_dir, study_dir / "report")
print(sorted(path.name for path in report.iterdir()))

# %% [markdown]
# ## A mean over seeds and its Student-t interval
#
# Let $m_1, \dots, m_n$ be one metric (say the ECE) of one predictor over $n$ seeds.  If the $m_s$
# were draws of a normal distribution with mean $\mu$, then
#
# $$
# \frac{\bar m - \mu}{s / \sqrt{n}} \sim t_{n-1},
# \qquad \bar m = \frac{1}{n} \sum_s m_s,
# \qquad s^2 = \frac{1}{n-1} \sum_s (m_s - \bar m)^2 ,
# $$
#
# so $\bar m \pm t_{0.975,\,n-1}\, s / \sqrt{n}$ covers $\mu$ in 95 % of studies, exactly, at any
# $n$.  With few seeds the quantile is large ($t_{0.975,2} = 4.30$, $t_{0.975,4} = 2.78$ against
# $1.96$ for a normal), which is the honest price of estimating $s$ from three or five values; the
# [studies guide](../../studies/#the-report) shows why a bootstrap interval would be far too narrow
# here.  The report cuts the interval to the values a metric can take (an ECE lies in $[0, 1]$).
#
# What $\mu$ is matters: the mean over *training seeds* of this configuration on *this* data set
# and test set.  The interval says nothing about another data set, another architecture or a
# longer training.

# %%
summary = pd.read_csv(report / "summary.csv")
shown = summary[summary.metric.isin(["accuracy", "nll", "ece"])].copy()
shown["mean [95 % interval]"] = shown.apply(lambda r: f"{r['mean']:.3f} [{r.low:.3f}, {r.high:.3f}]", axis=1)
print(shown.pivot(index=["arm", "mode"], columns="metric", values="mean [95 % interval]").to_string())
for t_seeds in (3, 5, 10):
    print(f"t quantile 0.975 with {t_seeds} seeds: {stats.t.ppf(0.975, t_seeds - 1):.3f}")

# %% [markdown]
# ## The figures
#
# `metrics.png` shows every arm and prediction mode: a point at the mean over seeds, a bar for the
# 95 % t-interval.

# %%
def show_png(path: Path, title: str) -> None:
    """Show a figure the report wrote (a PNG file) at its own size."""
    image = plt.imread(path)
    figure, axis = plt.subplots(figsize=(image.shape[1] / 100, image.shape[0] / 100))
    axis.imshow(image)
    axis.set_axis_off()
    axis.set_title(title)
    plt.show()


show_png(report / "metrics.png", "metrics.png: each arm and mode over seeds")

# %% [markdown]
# A reliability diagram bins the test points by the predictor's confidence in its top class,
# $\hat p_i = \max_c p(c \mid x_i)$, and plots each bin's accuracy against its mean confidence.  A
# calibrated predictor lies on the diagonal; above it, the predictor is right more often than it
# says (under-confident); below it, over-confident.  The ECE is the gap averaged over the bins,
# weighted by their share of the $N$ points:
#
# $$
# \mathrm{ECE} = \sum_b \frac{n_b}{N} \,\bigl|\mathrm{acc}_b - \mathrm{conf}_b\bigr| .
# $$
#
# `reliability.png` pools the bins of every seed (the scores keep each bin's counts and sums, so
# they add up over seeds): one curve per arm for its headline predictor (the ensemble where there
# is one, else the MAP), with bars for the spread of a bin's accuracy over seeds, and below it
# how many test points fall in each bin.

# %%
show_png(report / "reliability.png", "reliability.png: pooled over seeds")

# %% [markdown]
# `ensemble_size.png` plots the metrics against the number of draws $K$ in the ensemble
# ($K$ = 1, 10, 30 here, the MAP marked at $K = 1$).

# %%
show_png(report / "ensemble_size.png", "ensemble_size.png: the Bayes ensemble against K")

# %% [markdown]
# ## Paired differences
#
# To compare predictor $A$ (the Bayes ensemble) with predictor $B$ (the ST-BiSNN MAP), take the
# difference seed by seed, $d_s = m^A_s - m^B_s$, and give its mean the same t-interval:
#
# $$
# \bar d \pm t_{0.975,\,n-1}\, \frac{s_d}{\sqrt n},
# \qquad
# \operatorname{Var}(\bar d) = \frac{\sigma_A^2 + \sigma_B^2 - 2 \rho\, \sigma_A \sigma_B}{n} .
# $$
#
# Runs with one seed share their minibatch order and their random readouts, so their metrics can be
# correlated across seeds ($\rho > 0$); pairing then removes the shared part of the seed-to-seed
# noise.  In sample terms, $s_d^2 = s_A^2 + s_B^2 - 2\,\widehat{\mathrm{cov}}(m^A, m^B)$: the paired
# interval is narrower than the interval of two *independent* means,
# $t_{0.975,\,n-1}\sqrt{(s_A^2 + s_B^2)/n}$, exactly when the sample covariance is positive.  The report also counts in
# how many seeds $A$ was lower ("holds in $k$ of $n$ seeds").  That count alone is weak evidence
# with few seeds: if $A$ and $B$ were equal and $d_s$ as likely negative as positive, all $n$
# seeds would agree in sign with probability $2 \cdot 2^{-n}$: 0.25 at 3 seeds, 0.06 at 5, 0.002
# at 10.
#
# Here is the ECE seed by seed, each seed's pair joined by a line.

# %%
runs_table = pd.read_csv(report / "runs.csv")
A, B, METRIC = ("bayes", "ensemble"), ("ste", "map"), "ece"


def per_seed(arm_mode: tuple[str, str], metric: str) -> pd.Series:
    rows = runs_table[(runs_table.arm == arm_mode[0]) & (runs_table["mode"] == arm_mode[1])]
    return rows.set_index("seed")[metric].sort_index()


first, second = per_seed(A, METRIC), per_seed(B, METRIC)
figure, axis = plt.subplots(figsize=(5, 4))
for seed in first.index:
    axis.plot([0, 1], [first[seed], second[seed]], color="grey", alpha=0.6)
for position, values, label in ((0, first, " ".join(A)), (1, second, " ".join(B))):
    low, high = stats.t.interval(0.95, len(values) - 1, loc=values.mean(), scale=stats.sem(values))
    axis.errorbar([position], [values.mean()], yerr=[[values.mean() - low], [high - values.mean()]],
                  fmt="o", capsize=6, markersize=8, label=f"{label}: mean, 95 % t-interval")
axis.scatter(np.zeros(len(first)), first, color="grey", s=12, label="one seed")
axis.scatter(np.ones(len(second)), second, color="grey", s=12)
axis.set(xticks=[0, 1], xticklabels=[" ".join(A), " ".join(B)], xlim=(-0.5, 1.5),
         ylabel="test ECE", title="ECE per seed, paired by seed")
axis.legend(fontsize=8)
plt.show()

# %% [markdown]
# ### One paired interval by hand
#
# From `runs.csv` alone: the per-seed differences, their mean, their standard deviation, the
# t quantile, the interval, and the count of seeds where $A$ was lower.  Then the library's row of
# `paired.csv` for the same pair, and `paired_difference` from `bisnn_pyro.studies`.

# %%
d = (first - second).dropna()
n = len(d)
half = stats.t.ppf(0.975, n - 1) * d.std(ddof=1) / np.sqrt(n)
hand = {"mean": d.mean(), "low": d.mean() - half, "high": d.mean() + half, "lower": int((d < 0).sum())}
for seed, value in d.items():
    print(f"seed {seed}: {METRIC} difference {value:+.6f}")

paired = pd.read_csv(report / "paired.csv")
row = paired[(paired["first"] == " ".join(A)) & (paired["second"] == " ".join(B)) & (paired.metric == METRIC)].iloc[0]
library = paired_difference(first.to_dict(), second.to_dict())
print(f"by hand: mean {hand['mean']:+.6f} interval [{hand['low']:+.6f}, {hand['high']:+.6f}] "
      f"lower in {hand['lower']} of {n} seeds")
print(f"paired.csv: mean {row.mean_difference:+.6f} interval [{row.low:+.6f}, {row.high:+.6f}] "
      f"lower in {row.first_lower_in} of {row.seeds} seeds")
lib = library.summary
print(f"paired_difference: mean {lib.mean:+.6f} interval [{lib.low:+.6f}, {lib.high:+.6f}] "
      f"lower in {library.first_lower} of {lib.n} seeds")
print(f"difference of the arms' means: {first.mean() - second.mean():+.6f}")

# %% [markdown]
# The mean of the differences equals the difference of the means (the seeds are the same); the
# interval does not: it comes from the spread of the $d_s$, not of each arm.  Compare its width
# with the width the same data would give if the two arms' seeds were unrelated.

# %%
own = [stats.t.ppf(0.975, n - 1) * v.std(ddof=1) / np.sqrt(n) for v in (first, second)]
print(f"half-widths of the two arms' own intervals: {own[0]:.6f}, {own[1]:.6f}")
print(f"half-width of the paired interval: {half:.6f}")
print(f"half-width as if unpaired: {np.hypot(*own):.6f}")
print(f"correlation of the two arms' {METRIC} over seeds: {np.corrcoef(first, second)[0, 1]:+.6f}")

# %% [markdown]
# ## The whole paired table, and many comparisons
#
# `paired.csv` pairs every arm's headline predictor with its other modes (ensemble against MAP,
# against smaller and larger ensembles) and the arms' headline predictors and MAPs with each other,
# for every metric.  Each interval is a 95 % interval *on its own*: among many comparisons of equal
# predictors, about one interval in twenty excludes 0 by chance, so a table of dozens of intervals
# will show a few "effects" that are not there.  Read a difference as evidence when it was the
# question asked before the study ran, when its interval is far from 0, and when it holds in (nearly)
# every seed.

# %%
headline = paired[paired.metric.isin(["accuracy", "nll", "ece"])]
print(headline[["first", "second", "metric", "seeds", "mean_difference", "low", "high", "first_lower_in"]]
      .round(4).to_string(index=False))
excludes = int(((paired.low > 0) | (paired.high < 0)).sum())
print(f"paired intervals in paired.csv: {len(paired)}, excluding 0: {excludes}")

# %% [markdown]
# ## What the numbers do and do not say
#
# * **Few seeds.**  With 3 or 5 seeds the t quantile is large and a single unusual seed moves the
#   mean; the interval is honest about it only if the seed-to-seed spread is roughly normal.  "All
#   $n$ seeds agree" is strong at 10 seeds and weak at 3.
# * **One budget.**  A few epochs on a small network compare the rules *at this budget*: a rule that
#   learns more slowly looks worse than it is after training to convergence (ST-BiSNN at its
#   default step size would be far behind here).  The library's study trains the defaults (256, 256 neurons, 60 epochs).
# * **One data set, one test set.**  The interval is over training seeds, with the data fixed; it
#   says nothing about other tasks.  Two moons is easy enough that accuracy differences sit near the
#   third decimal.
# * **Many comparisons.**  See above: unadjusted intervals, one in twenty wrong by design.  The
#   count of intervals that exclude 0 printed above is not a count of false effects: many pairs
#   differ for real (an ensemble against a single draw, a Bayes ensemble's ECE against ST-BiSNN's),
#   and chance adds about one in twenty of the pairs that do not.
#
# For what a full study finds, the [studies guide](../../studies/#the-papers-claims) reports the
# library's own `studies/calibration.toml` (two moons, 10 seeds, the default network trained to
# the end).  There the Bayes ensemble and ST-BiSNN tie in accuracy (difference +0.0002
# [−0.0011, +0.0015]), yet the ensemble's ECE is *higher* than ST-BiSNN's by +0.0201
# [+0.0171, +0.0232], lower in 0 of 10 seeds, and higher than its own MAP's by +0.0294
# [+0.0265, +0.0322]: the ensemble is under-confident, every reliability curve lying above the
# diagonal.  On the event-camera digits (5 seeds) Bayes-BiSNN with Adam on its natural parameters
# beats ST-BiSNN by 4.7 points of accuracy [1.1, 8.3].  Your small study may or may not agree with
# those numbers; where it does not, the budget and the seeds above are the first suspects.

# %% [markdown]
# ## Exercises
#
# 1. Change `seeds` to 10 (and keep the rest).  Predict how the half-width of the paired ECE
#    interval changes (roughly as $t_{0.975,n-1}/\sqrt n$ times the spread), then run the study
#    again into the same folder: the finished seeds are skipped and only the new ones train.
# 2. Raise `EPOCHS` to 30.  Which of the paired differences keep their sign, and which close?
#    Does the ensemble's reliability curve move towards the diagonal or away from it?
# 3. Add a third arm, `bayes-adam` (`set = { "training.rule" = "bayes-adam" }`), and predict from
#    the studies guide how its ensemble's ECE compares with `bayes`'s.  Count how many new rows
#    `paired.csv` gains, and how many of its intervals you would expect to exclude 0 by chance.
# 4. Compute the summary interval of one arm's accuracy by hand from `runs.csv` and compare it with
#    `summary.csv`: when does the cut to $[0, 1]$ change it?
# 5. Give the `ste` arm its default step size back (remove `"optim.lr" = 0.01`).  Predict its
#    accuracy after this few epochs, then check: does the ECE comparison with `bayes` change sign?
