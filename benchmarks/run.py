"""Side-by-side timings of bisnn-pyro on the two-moons task (200 training points, T = 100, 256-256).

    python benchmarks/run.py [--quick] [--json FILE] [--device cpu|cuda] [--threads N] [--compile]

Every ratio compares two things measured in this one run, on this machine.  After the first
sequence epochs the process keeps freed memory for reuse (``bisnn_pyro.runtime.keep_freed_memory``,
as the ``bisnn-pyro`` command does); the row below the sequence epoch is the time before.
``--quick`` trims the repeats and skips the slow sections (time to 0.97 accuracy, the torch.compile
check); ``--json`` writes the numbers, including the keys epoch_s_sequence, epoch_s_online,
pyro_over_torch, ensemble10_s, ensemble10_over_map and matmul_fraction (the float path), and the
packed 1-bit engine's packed_ensemble10_s, packed_over_float_ensemble, packed_over_dense_matmul,
packed_map_over_float_map, packed_weight_bytes_ratio, packed_spike_density, packed_change_rate,
independent_changes_over_popcount and independent_change_rate (auto's method against bit counts on
inputs drawn afresh each step) and
packed_sweep (one dense layer by width, input spike density and rate of change: where each of the
engine's methods wins and where not), and conv_packed_over_float (the convolutional network on the
offline event-camera digits).  The packed
section's times are medians over all repeats, each with its spread as KEY_min and KEY_max (for a
ratio: the least and greatest ratio within one round of the alternated variants).
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from functools import partial

import numpy as np
import pyro
import torch
from pyro import poutine
from torch.distributions import Categorical

from bisnn_pyro.adapters.pyro_internals import local_params
from bisnn_pyro.experiment import ExperimentConfig, build, load_data
from bisnn_pyro.inference.predict import point_weights
from bisnn_pyro.inference.training import Trainer
from bisnn_pyro.models import recurrences
from bisnn_pyro.models.neurons import LIFParameters, input_traces, subtract_refractory_
from bisnn_pyro.models.snn import SpikingMLP
from bisnn_pyro.packed.network import PackedNetwork
from bisnn_pyro.runtime import keep_freed_memory


def timed(fn: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def median_time(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    return statistics.median(timed(fn, device) for _ in range(repeats))


def setup(device: str, **overrides):
    config = ExperimentConfig(device=device, **overrides)
    train, test = load_data(config)
    bsnn, trainer = build(config, train)
    return config, train, test, bsnn, trainer


def epoch_times(args, device) -> dict[str, float]:
    """Sequence vs online schedule on the same network and data (after one warm-up epoch each)."""
    _, train, _, bsnn, trainer = setup(args.device)
    trainer.run_epoch()  # warm-up: the first optimiser step imports torch._dynamo (about 2 s, once)
    repeats = 2 if args.quick else 5
    default_malloc = median_time(trainer.run_epoch, repeats, device)
    keep_freed_memory()  # as the bisnn-pyro command does; in force for every later section
    trainer.run_epoch()
    sequence = median_time(trainer.run_epoch, repeats, device)
    online = Trainer(bsnn, trainer.optim, trainer.loss, train.x, train.y, schedule="online", device=device)
    online.run_epoch()
    result = {
        "epoch_s_sequence": sequence,
        "epoch_s_sequence_default_malloc": default_malloc,
        "epoch_s_online": median_time(online.run_epoch, 1 if args.quick else 2, device),
        "online_engine": online.engine,
    }
    direct = Trainer(
        bsnn, trainer.optim, trainer.loss, train.x, train.y, schedule="online", engine="direct", device=device
    )
    direct.run_epoch()
    result["epoch_s_online_direct"] = median_time(direct.run_epoch, 1 if args.quick else 2, device)
    if not args.quick:
        svi = Trainer(bsnn, trainer.optim, trainer.loss, train.x, train.y, schedule="online", engine="svi")
        result["epoch_s_online_svi"] = timed(svi.run_epoch, device)
    result.update(epoch_floors(args, train, bsnn, trainer.batch_size, device))
    return result


def epoch_floors(args, train, bsnn, batch_size: int, device) -> dict[str, float]:
    """What any implementation of an epoch must at least do, timed alone at the same shapes: the
    synaptic matrix products of a sequence epoch (each layer's drive over all T * B sample-steps and
    its weight gradient), and the weight draws of an online epoch (one relaxed draw of every weight
    per optimiser step; the uniform numbers alone, then the guide's draw without gradients)."""
    batches, steps = math.ceil(len(train.y) / batch_size), train.x.shape[1]
    shapes = [layer.weight_prior.shape for layer in bsnn.net.layers]
    traces = [torch.rand(steps * batch_size, w[1], device=device) for w in shapes]
    grads = [torch.rand(steps * batch_size, w[0], device=device) for w in shapes]
    weights = [torch.rand(w, device=device) for w in shapes]

    def sequence_products():
        for _ in range(batches):
            for p, g, w in zip(traces, grads, weights):
                torch.matmul(p, w.t()), torch.matmul(g.t(), p)

    online_steps = batches * (steps - bsnn.likelihood.burn_in)
    count = sum(math.prod(w) for w in shapes)
    repeats = 2 if args.quick else 3

    def uniforms():
        for _ in range(online_steps):
            torch.rand(count, device=device)

    def relaxed_draws():
        with torch.no_grad():
            for _ in range(online_steps):
                [q.rsample() for q in bsnn.guide.distributions().values()]

    return {
        "sequence_matmuls_s": median_time(sequence_products, repeats, device),
        "online_uniforms_s": median_time(uniforms, repeats, device),
        "online_relaxed_draws_s": median_time(relaxed_draws, repeats, device),
    }


def plain_torch_step(bsnn, lams: dict, prior: dict, x, y, lr: float, temperature: float, kl_weight: float) -> float:
    """One Bayes-BiSNN sequence step written in plain PyTorch: relaxed draws, the network, the
    categorical log-likelihood, the exact KL and the natural-gradient update, no Pyro."""
    weights = []
    for lam in lams.values():
        u = torch.rand_like(lam).clamp(torch.finfo(lam.dtype).tiny, 1.0 - torch.finfo(lam.dtype).eps)
        weights.append(torch.tanh((lam + 0.5 * (torch.log(u) - torch.log1p(-u))) / temperature))
    readouts = bsnn.net.run(x, weights).readouts[..., bsnn.likelihood.burn_in :, :]
    batch, layers, steps = readouts.shape[:3]
    targets = y.reshape(batch, 1, 1).expand(batch, layers, steps)
    nll = -Categorical(logits=readouts).log_prob(targets).sum() * (bsnn.likelihood.num_data / batch)
    kl = 0.0
    for name, lam in lams.items():
        kl = kl + (torch.tanh(lam) * (lam - prior[name]) - log_two_cosh(lam) + log_two_cosh(prior[name])).sum()
    loss = nll + kl_weight * kl
    loss.backward()
    with torch.no_grad():
        for lam in lams.values():
            fisher = (1.0 - torch.tanh(lam) ** 2).clamp_min(1e-8)
            lam.sub_(lr * lam.grad / fisher).clamp_(-10.0, 10.0)
            lam.grad = None
    return loss.item()


def log_two_cosh(x: torch.Tensor) -> torch.Tensor:
    return x.abs() + torch.log1p(torch.exp(-2.0 * x.abs()))


def pyro_cost(args, device) -> dict[str, float]:
    """SVI steps (sequence schedule) against the same mathematics in a plain PyTorch loop, and the
    direct engine (the default) against the same loop."""
    config, train, _, bsnn, trainer = setup(args.device)
    batches = [(train.x[i : i + 40].to(device), train.y[i : i + 40].to(device)) for i in range(0, 200, 40)]
    trainer.run_epoch()
    lams = {name: lam.detach().clone().requires_grad_() for name, lam in bsnn.guide.natural().items()}
    prior = {name: p.base_dist.natural for name, p in bsnn.prior_distributions().items()}
    lr = config.optim["lr"]
    bsnn.train()

    def pyro_epoch():
        for xb, yb in batches:
            trainer.svi.step(xb, yb)

    def torch_epoch():
        for xb, yb in batches:
            plain_torch_step(bsnn, lams, prior, xb, yb, lr, config.guide["temperature"], config.kl_weight)

    def direct_epoch():
        for xb, yb in batches:
            trainer.direct.step(xb, yb)

    pyro_epoch(), torch_epoch(), direct_epoch()
    repeats = 3 if args.quick else 7
    runs = [
        (timed(pyro_epoch, device), timed(torch_epoch, device), timed(direct_epoch, device)) for _ in range(repeats)
    ]
    pyro_s, torch_s, direct_s = (statistics.median(run[i] for run in runs) for i in range(3))
    return {
        "sequence_epoch_pyro_s": pyro_s,
        "sequence_epoch_torch_s": torch_s,
        "sequence_epoch_direct_s": direct_s,
        "pyro_over_torch": pyro_s / torch_s,
        "direct_over_torch": direct_s / torch_s,
    }


def ensemble_times(args, device) -> dict[str, float]:
    """K = 10 ensemble over the 1,000 test points vs one MAP pass vs ten single-draw passes, and
    the synaptic matmuls of the ensemble alone (same shapes, same chunks) for the matmul fraction;
    all through the float path (``engine="float"``: ``"auto"`` now takes the packed engine, which
    ``packed_times`` measures)."""
    _, train, test, bsnn, trainer = setup(args.device)
    trainer.run_epoch()
    bsnn.eval()
    x = test.x.to(device)
    draws = bsnn.draw_weights(x, 10)
    map_weights = {k: v.unsqueeze(0) for k, v in point_weights(bsnn.guide, "map").items()}
    singles = [{k: v[i : i + 1] for k, v in draws.items()} for i in range(10)]
    repeats = 2 if args.quick else 3
    bsnn.readouts_with(draws, x, engine="float")
    ensemble = median_time(lambda: bsnn.readouts_with(draws, x, engine="float"), repeats, device)
    single = median_time(lambda: bsnn.readouts_with(map_weights, x, engine="float"), repeats, device)
    ten_singles = median_time(lambda: [bsnn.readouts_with(w, x, engine="float") for w in singles], repeats, device)

    chunk, steps = 500, x.shape[1]
    matrices = [
        draws[f"layers.{i}.weight"].reshape(10, *layer.weight_prior.shape) for i, layer in enumerate(bsnn.net.layers)
    ]
    inputs = [torch.rand(10, chunk, w.shape[-1], device=device) for w in matrices]

    def matmuls_only():
        for _ in range(0, x.shape[0], chunk):
            for _ in range(steps):
                for p, w in zip(inputs, matrices):
                    torch.matmul(p, w.transpose(-1, -2))

    matmuls = median_time(matmuls_only, repeats, device)
    flops = 2 * 10 * x.shape[0] * steps * sum(w.shape[-1] * w.shape[-2] for w in matrices)
    return {
        "ensemble10_s": ensemble,
        "map_s": single,
        "ensemble10_over_map": ensemble / single,
        "ensemble10_over_10_single_passes": ensemble / ten_singles,
        "synaptic_gflops": flops / ensemble / 1e9,
        "matmul_gflops": flops / matmuls / 1e9,
        "matmul_fraction": matmuls / ensemble,
    }


def alternating_times(
    variants: dict[str, Callable[[], object]], repeats: int, device: torch.device, warm: tuple[str, ...] = ()
) -> dict[str, list[float]]:
    """Each variant once untimed (those named in ``warm`` have already run at these shapes), then
    ``repeats`` rounds that run every variant in turn: the times per variant, round by round, so
    that the variants share each round's state of the machine."""
    for name, fn in variants.items():
        if name not in warm:
            fn()
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            times[name].append(timed(fn, device))
    return times


def spread_keys(name: str, times: list[float]) -> dict[str, float]:
    """A timed quantity's median over all its repeats as ``name``, its spread as ``name_min`` and ``name_max``."""
    return {name: statistics.median(times), f"{name}_min": min(times), f"{name}_max": max(times)}


def ratio_keys(name: str, numerator: list[float], denominator: list[float]) -> dict[str, float]:
    """The ratio of two alternated quantities' medians as ``name``, the least and greatest ratio
    within one round as ``name_min`` and ``name_max``."""
    rounds = [n / d for n, d in zip(numerator, denominator)]
    return {
        name: statistics.median(numerator) / statistics.median(denominator),
        f"{name}_min": min(rounds),
        f"{name}_max": max(rounds),
    }


@contextmanager
def numba_threads_as_torch():
    """numba's kernels (the packed engine) on as many threads as PyTorch's (``--threads``), so that
    both engines get the same cores; numba's count as it was after."""
    import numba

    before = numba.get_num_threads()
    numba.set_num_threads(min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))
    try:
        yield
    finally:
        numba.set_num_threads(before)


@torch.no_grad()
def spike_densities(net: torch.nn.Module, weights: dict[str, torch.Tensor], x: torch.Tensor, chunk: int = 500):
    """Spikes per neuron per step of each layer of ``net`` with ``weights`` on ``x``, the mean over
    the draws and points: the float path as ``readouts_with`` runs it (chunks of 500 points), so
    that this pass also warms it up."""
    layers = len(net.layers)
    counts = torch.zeros(layers, dtype=torch.float64)
    for start in range(0, x.shape[0], chunk):
        with local_params():
            out = poutine.condition(net, data=weights)(x[start : start + chunk])
        per_draw = out.spike_counts.reshape(-1, layers)
        counts += per_draw.sum(0).double()
    neurons = [math.prod(shape) for shape in net.output_shapes]
    passes = per_draw.shape[0] * x.shape[0] * x.shape[1]
    return [count / (passes * size) for count, size in zip(counts.tolist(), neurons)]


def change_rates(network: PackedNetwork, x: torch.Tensor, points: int = 200) -> list[float]:
    """The fraction of each dense layer's neurons whose spike differs from the step before (per
    step, the mean over the draws and the first ``points`` sequences of ``x``): the work of the
    packed engine's "changes" method.  Each layer's spikes come from the engine's event kernel."""
    from bisnn_pyro.packed import kernels

    spikes = x[:points].to(torch.uint8).numpy().reshape(1, min(points, len(x)), x.shape[1], -1)
    rates = []
    for layer in network.layers:
        out = np.empty((network.draws, *spikes.shape[1:3], layer.weights.shape[-1]), np.uint8)
        kernels.dense_events(spikes, layer.weights, np.float32(layer.scale), layer.bias_or_zeros(),
                             *network._constants(), out)
        rates.append(float((out[:, :, 1:] != out[:, :, :-1]).mean()))
        spikes = out
    return rates


def dense_products(bsnn, draws: dict[str, torch.Tensor], x: torch.Tensor, chunk: int = 500) -> Callable[[], None]:
    """The dense float32 products the float path makes, alone at its shapes: per chunk of ``chunk``
    points and per step, each layer's drive (K, chunk, in) @ (K, in, out)^T and its readout
    (K, chunk, out) @ (out, classes)^T (random inputs: the time of a product does not depend on them)."""
    net, draws_count = bsnn.net, next(iter(draws.values())).shape[0]
    matrices = [
        draws[f"layers.{i}.weight"].reshape(draws_count, *layer.weight_prior.shape).transpose(-1, -2)
        for i, layer in enumerate(net.layers)
    ]
    readouts = [getattr(net, f"readout_{i}").t() for i in range(len(net.layers))]
    inputs = [torch.rand(draws_count, chunk, w.shape[-2]) for w in matrices]
    spikes = [torch.rand(draws_count, chunk, w.shape[-1]) for w in matrices]

    def products():
        for _ in range(0, x.shape[0], chunk):
            for _ in range(x.shape[1]):
                for p, w, s, r in zip(inputs, matrices, spikes, readouts):
                    torch.matmul(p, w), torch.matmul(s, r)

    return products


INDEPENDENT_DENSITY = 0.45  # inputs of the packed section's method check: each step drawn afresh


def packed_times(args, device) -> dict[str, object]:
    """The packed 1-bit engine against the float path on the ensemble section's network and data
    (one training epoch, the same K = 10 draws over the 1,000 test points, and the MAP network),
    alternating with the float path's dense products alone at its shapes; the packed weights'
    bytes against float32, and the spike densities that decide the engine's work; and the
    changes method (auto's) against bit counts on inputs whose steps are independent.  On the CPU
    whatever ``--device`` (the packed engine runs there), numba on PyTorch's thread count.  The
    packed timings include packing the weights, as each ``readouts_with(..., engine="packed")`` does."""
    from bisnn_pyro.packed.file import weight_bytes

    _, _, test, bsnn, trainer = setup("cpu")
    trainer.run_epoch()
    bsnn.eval()
    cpu, x = torch.device("cpu"), test.x.cpu()
    draws = bsnn.draw_weights(x, 10)
    map_weights = {k: v.unsqueeze(0) for k, v in point_weights(bsnn.guide, "map").items()}
    network, reason = bsnn.packed_network(draws, x)
    if network is None:
        return {"packed_unavailable": reason}
    packed_bytes, float_bytes = weight_bytes(network)
    densities = spike_densities(bsnn.net, draws, x)  # a pass of the float path: its warm-up
    variants = {
        "float_ensemble10_s": lambda: bsnn.readouts_with(draws, x, engine="float"),
        "packed_ensemble10_s": lambda: bsnn.readouts_with(draws, x, engine="packed"),
        "dense_matmul_s": dense_products(bsnn, draws, x),
        "float_map_s": lambda: bsnn.readouts_with(map_weights, x, engine="float"),
        "packed_map_s": lambda: bsnn.readouts_with(map_weights, x, engine="packed"),
    }
    # auto's choice where the inputs' steps are independent (half of them change each step)
    independent = (torch.rand(x.shape, generator=torch.Generator().manual_seed(0)) < INDEPENDENT_DENSITY).to(x.dtype)
    if network.all_dense:
        for method in ("changes", "popcount"):
            variants[f"independent_{method}_s"] = partial(network.readouts, independent, method=method)
    with numba_threads_as_torch():
        times = alternating_times(variants, 1 if args.quick else 5, cpu, warm=("float_ensemble10_s",))
    result: dict[str, object] = {}
    for name, values in times.items():
        result.update(spread_keys(name, values))
    result.update(ratio_keys("packed_over_float_ensemble", times["packed_ensemble10_s"], times["float_ensemble10_s"]))
    result.update(ratio_keys("packed_over_dense_matmul", times["packed_ensemble10_s"], times["dense_matmul_s"]))
    result.update(ratio_keys("packed_map_over_float_map", times["packed_map_s"], times["float_map_s"]))
    if network.all_dense:
        result.update(
            ratio_keys("independent_changes_over_popcount", times["independent_changes_s"],
                       times["independent_popcount_s"])
        )
        result["independent_change_rate"] = change_rates(network, independent)
    result.update(
        {
            "packed_method": network.method_for(x),
            "packed_weight_bytes": packed_bytes,
            "float_weight_bytes": float_bytes,
            "packed_weight_bytes_ratio": packed_bytes / float_bytes,
            "packed_spike_density": densities,
            "packed_change_rate": change_rates(network, x) if network.all_dense else None,
            "packed_input_density": x.mean().item(),
        }
    )
    return result


def packed_conv_times(args, device) -> dict[str, object]:
    """The packed engine on the convolutional network (``--network conv``, the small preset) on
    the offline event-camera digits (digits-dvs, 359 test sequences), after two training epochs:
    the K = 10 ensemble through the engine (its event kernels) against the float network,
    alternating.  On the CPU, numba on PyTorch's thread count."""
    _, _, test, bsnn, trainer = setup("cpu", dataset="digits-dvs", network="conv")
    trainer.run_epoch(), trainer.run_epoch()
    bsnn.eval()
    x = test.x.cpu()
    draws = bsnn.draw_weights(x, 10)
    variants = {
        "conv_float_ensemble10_s": lambda: bsnn.readouts_with(draws, x, engine="float"),
        "conv_packed_ensemble10_s": lambda: bsnn.readouts_with(draws, x, engine="packed"),
    }
    with numba_threads_as_torch():
        times = alternating_times(variants, 1 if args.quick else 3, torch.device("cpu"))
    result: dict[str, object] = {}
    for name, values in times.items():
        result.update(spread_keys(name, values))
    result.update(ratio_keys("conv_packed_over_float", times["conv_packed_ensemble10_s"],
                             times["conv_float_ensemble10_s"]))
    return result


SWEEP_DRAWS, SWEEP_POINTS, SWEEP_STEPS = 10, 200, 100


def random_layer(width: int, generator: torch.Generator) -> tuple[torch.nn.Module, torch.Tensor]:
    """A one-layer ``SpikingMLP(width, (width,), 2)`` (fan-in = fan-out = width) and
    ``SWEEP_DRAWS`` random +-1 draws of its weights (K, width, width)."""
    net = SpikingMLP(width, (width,), 2).eval()
    signs = torch.randint(0, 2, (SWEEP_DRAWS, width, width), generator=generator).float() * 2.0 - 1.0
    return net, signs


@torch.no_grad()
def float_layer_readouts(net: torch.nn.Module, weights: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The float path of ``readouts_with(..., engine="float")`` on a network without latent sites:
    the network run with the given weights, without gradients."""
    return net.run(x, [weights]).readouts


def packed_layer_readouts(net: torch.nn.Module, weights: torch.Tensor, x: torch.Tensor, method: str) -> torch.Tensor:
    """The packed engine by ``method``, packing the weights on each call as ``readouts_with`` does."""
    return PackedNetwork.from_network(net, [weights]).readouts(x, method=method)


def sweep_inputs(density: float, held: float, width: int, generator: torch.Generator) -> torch.Tensor:
    """``SWEEP_POINTS`` sequences of ``SWEEP_STEPS`` steps of ``width`` input spikes, each spiking
    with probability ``density``: each step each input keeps its last value with probability
    ``held``, else takes a fresh draw, so that 2 density (1 - density)(1 - held) of the inputs
    change per step (``held`` = 0: independent steps; spiking layers fire in runs)."""
    shape = (SWEEP_POINTS, width)
    steps = [(torch.rand(shape, generator=generator) < density).float()]
    for _ in range(SWEEP_STEPS - 1):
        fresh = (torch.rand(shape, generator=generator) < density).float()
        steps.append(torch.where(torch.rand(shape, generator=generator) < held, steps[-1], fresh))
    return torch.stack(steps, dim=1)


SWEEP_METHODS = ("changes", "popcount", "events")


def packed_sweep(args, device) -> dict[str, object]:
    """Where the packed engine wins and where not: one dense layer of each width (``random_layer``),
    K = 10 draws, N = 200 sequences of T = 100 steps of random input spikes at each density, with
    independent steps and with runs (``sweep_inputs``, held = 0.8), run by the float path and by
    the engine's three methods ("changes": work grows with the inputs that change; "events": with
    the input spikes; "popcount": with the fan-in / 64), alternating.  On the CPU, numba on
    PyTorch's thread count; ``--quick``: fewer widths, one repeat."""
    generator = torch.Generator().manual_seed(0)
    widths, densities = ((128, 256), (0.02, 0.45)) if args.quick else ((128, 256, 512), (0.02, 0.1, 0.45))
    rows = []
    for width in widths:
        net, weights = random_layer(width, generator)
        for density in densities:
            for held in (0.0, 0.8):
                x = sweep_inputs(density, held, width, generator)
                variants = {"float_s": partial(float_layer_readouts, net, weights, x)}
                for method in SWEEP_METHODS:
                    variants[f"{method}_s"] = partial(packed_layer_readouts, net, weights, x, method)
                with numba_threads_as_torch():
                    times = alternating_times(variants, 1 if args.quick else 3, torch.device("cpu"))
                changes = (x[:, 1:] != x[:, :-1]).float().mean().item()
                row: dict[str, float] = {"width": width, "density": density, "change_rate": changes}
                for name, values in times.items():
                    row.update(spread_keys(name, values))
                for method in SWEEP_METHODS:
                    row.update(ratio_keys(f"{method}_over_float", times[f"{method}_s"], times["float_s"]))
                rows.append(row)
    return {"packed_sweep": rows}


def sweep_table(rows: list[dict[str, float]]) -> str:
    """The sweep as a table: per width, input density and rate of change the median seconds
    [min, max] of each variant, and each method's median over the float path's."""
    times = ("float_s", *(f"{method}_s" for method in SWEEP_METHODS))
    ratios = tuple(f"{method}_over_float" for method in SWEEP_METHODS)
    lines = [
        f"packed engine sweep: one dense layer width x width, K = {SWEEP_DRAWS}, N = {SWEEP_POINTS}, "
        f"T = {SWEEP_STEPS} (seconds: median [min, max])",
        f"  {'width':>5}  {'density':>7}  {'changes':>7}"
        + "".join(f"  {k:>21}" for k in times)
        + "".join(f"  {k:>19}" for k in ratios),
    ]
    for row in rows:
        cells = [f"{row[k]:.3f} [{row[k + '_min']:.3f}, {row[k + '_max']:.3f}]" for k in times]
        lines.append(
            f"  {row['width']:>5}  {row['density']:>7.2f}  {row['change_rate']:>7.3f}"
            + "".join(f"  {cell:>21}" for cell in cells)
            + "".join(f"  {row[k]:>19.3f}" for k in ratios)
        )
    return "\n".join(lines)


def particle_times(args, device) -> dict[str, float]:
    """A sequence epoch with P = 4 ELBO particles (four draws of every weight as one batch) against
    one particle, both with the default engine, alternating: batching pays if the ratio is below 4."""
    *_, single = setup(args.device)
    *_, batched = setup(args.device, particles=4)
    single.run_epoch(), batched.run_epoch()
    runs = [(timed(single.run_epoch, device), timed(batched.run_epoch, device)) for _ in range(2 if args.quick else 5)]
    one, four = (statistics.median(run[i] for run in runs) for i in range(2))
    return {"epoch_s_particles4": four, "particles4_over_1": four / one, "particles_engine": batched.engine}


def time_to_accuracy(args, device, target: float = 0.97) -> dict[str, float | None]:
    """Training seconds (evaluation excluded) until the K = 10 ensemble reaches ``target`` on the
    test set, and the epochs that took, per rule and schedule; None if not within the epoch budget
    (the Bayes rule's online schedule took 17 epochs in a trial run: the budget leaves room)."""
    budgets = {"sequence": 40, "online": 25}
    result = {}
    for rule in ("bayes", "ste"):
        for schedule, epochs in budgets.items():
            _, _, test, bsnn, trainer = setup(args.device, rule=rule, schedule=schedule)
            spent, reached, epochs_taken = 0.0, None, None
            for epoch in range(1, epochs + 1):
                spent += trainer.run_epoch()["seconds"]
                if bsnn.evaluate(test.x.to(device), test.y.to(device), "ensemble", 10)["accuracy"] >= target:
                    reached, epochs_taken = spent, epoch
                    break
            result[f"seconds_to_{target}_{rule}_{schedule}"] = reached
            result[f"epochs_to_{target}_{rule}_{schedule}"] = epochs_taken
    return result


def peak_memory(args) -> dict[str, float]:
    """Peak resident memory (MB) of a fresh process training one epoch, per schedule."""
    result = {}
    for schedule in ("sequence", "online"):
        command = [sys.executable, __file__, "--peak-memory-of", schedule, "--device", args.device]
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        result.update(json.loads(out.strip().splitlines()[-1]))
    return result


def _status_mb(field: str) -> float:
    """A memory field of /proc/self/status (VmHWM: peak resident, VmRSS: resident now), in MB."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_peak_memory(schedule: str, device: str) -> None:
    """One training epoch in this (fresh) process; the peak is reset first where Linux allows, so
    it covers training only, not the data generation before it.  Memory is kept for reuse as the
    bisnn-pyro command keeps it."""
    keep_freed_memory()
    _, _, _, _, trainer = setup(device, schedule=schedule, test_size=2)
    before = _status_mb("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")  # resets VmHWM to the current resident size
        reset = True
    except OSError:
        reset = False
    trainer.run_epoch()
    peak = _status_mb("VmHWM")
    record = {f"peak_rss_mb_{schedule}": peak, f"peak_reset_before_training_{schedule}": reset}
    if torch.device(device).type == "cuda":
        record[f"peak_cuda_mb_{schedule}"] = torch.cuda.max_memory_allocated() / 2**20
    record[f"rss_before_training_mb_{schedule}"] = before
    print(json.dumps(record))


def scaling(args, device) -> dict[str, float]:
    """Sequence epoch time against T (width 256) and against width (T = 100), median of repeats."""
    result, repeats = {}, 2 if args.quick else 3
    for steps in (50, 100) if args.quick else (50, 100, 200):
        _, _, _, _, trainer = setup(args.device, steps=steps, burn_in=min(10, steps // 5))
        trainer.run_epoch()
        result[f"epoch_s_T{steps}"] = median_time(trainer.run_epoch, repeats, device)
    for width in (128, 256) if args.quick else (128, 256, 512):
        _, _, _, _, trainer = setup(args.device, hidden=[width, width])
        trainer.run_epoch()
        result[f"epoch_s_width{width}"] = median_time(trainer.run_epoch, repeats, device)
    return result


def _recurrence_inputs(device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A training-sized layer's drive and input spikes (T = 100, batch 40, 256 units), and a zero."""
    drive = torch.randn(100, 40, 256, device=device)
    spikes = (torch.rand(100, 40, 256, device=device) < 0.3).float()
    return drive, spikes, torch.zeros((), device=device)


def recurrence_times(args, device) -> dict[str, float]:
    """Both recurrences of one training-sized layer as the library runs them (compiled kernels on a
    CPU) against the same recurrences as PyTorch loops of small operations."""
    params = LIFParameters()
    drive, spikes, zero = _recurrence_inputs(device)

    def library():
        subtract_refractory_(drive.clone(), zero, zero, params), input_traces(spikes, zero, zero, params)

    def pytorch_loops():
        with _pytorch_recurrences():
            library()

    library(), pytorch_loops()
    runs = [(timed(library, device), timed(pytorch_loops, device)) for _ in range(20)]
    library_ms, loops_ms = (1e3 * statistics.median(run[i] for run in runs) for i in range(2))
    return {
        "recurrence_library_ms": library_ms,
        "recurrence_pytorch_loops_ms": loops_ms,
        "recurrence_library_over_pytorch_loops": library_ms / loops_ms,
    }


@contextmanager
def _pytorch_recurrences():
    """The library's recurrences as PyTorch loops, as on a GPU or without numba."""
    native = recurrences._native_kernels
    recurrences._native_kernels = lambda *tensors: None
    try:
        yield
    finally:
        recurrences._native_kernels = native


def compile_check(args, device) -> dict[str, float]:
    """torch.compile of the two element-wise recurrences (written functionally, as the compiler
    prefers) against the library's loops, on one training-sized layer.  (Compiling the in-place
    loops themselves was slower than eager.)  The compile time depends on the compiler's disk
    cache: about 75 s cold here, a few seconds warm."""
    params = LIFParameters()
    a, b, c = params.decays()

    def potential(drive):
        r, s, out = torch.zeros_like(drive[0]), torch.zeros_like(drive[0]), []
        for t in range(drive.shape[0]):
            r = c * r + s
            out.append(drive[t] - r)
            s = (out[-1] > 0).to(drive.dtype)
        return torch.stack(out)

    def traces(x):
        p, q, out = torch.zeros_like(x[0]), torch.zeros_like(x[0]), []
        for t in range(x.shape[0]):
            p = a * p + q
            q = b * q + x[t]
            out.append(p)
        return torch.stack(out)

    drive, spikes, zero = _recurrence_inputs(device)
    library = median_time(
        lambda: (subtract_refractory_(drive.clone(), zero, zero, params), input_traces(spikes, zero, zero, params)),
        10,
        device,
    )
    start = time.perf_counter()
    compiled_potential, compiled_traces = torch.compile(potential), torch.compile(traces)
    compiled_potential(drive), compiled_traces(spikes)
    compile_s = time.perf_counter() - start
    compiled = median_time(lambda: (compiled_potential(drive), compiled_traces(spikes)), 10, device)
    return {
        "recurrence_compiled_ms": 1e3 * compiled,
        "compiled_over_library": compiled / library,
        "compile_s": compile_s,
    }


ROWS = [
    ("epoch_s_sequence", "sequence epoch (s)"),
    ("epoch_s_sequence_default_malloc", "  the same before keep_freed_memory() (s)"),
    ("sequence_matmuls_s", "  its synaptic products alone (s)"),
    ("epoch_s_online", "online epoch (s)"),
    ("online_uniforms_s", "  its weight draws' uniforms alone (s)"),
    ("online_relaxed_draws_s", "  its relaxed weight draws alone (s)"),
    ("epoch_s_online_direct", "online epoch through the direct engine (s)"),
    ("epoch_s_online_svi", "online epoch through SVI (s)"),
    ("epoch_s_particles4", "sequence epoch, 4 particles (s)"),
    ("particles4_over_1", "  4 particles / 1 particle"),
    ("pyro_over_torch", "Pyro SVI / plain PyTorch, sequence epoch"),
    ("direct_over_torch", "direct engine / plain PyTorch, sequence epoch"),
    ("ensemble10_s", "K=10 ensemble, 1,000 points (s)"),
    ("map_s", "MAP pass, 1,000 points (s)"),
    ("ensemble10_over_map", "ensemble / MAP"),
    ("ensemble10_over_10_single_passes", "ensemble / 10 single-draw passes"),
    ("synaptic_gflops", "ensemble synaptic GFLOP/s"),
    ("matmul_gflops", "matmul GFLOP/s, same shapes"),
    ("matmul_fraction", "ensemble share of matmul throughput"),
    ("packed_ensemble10_s", "packed engine: K=10 ensemble, 1,000 points (s)"),
    ("float_ensemble10_s", "  the float path, alternating (s)"),
    ("packed_over_float_ensemble", "  packed / float path (goal <= 0.25)"),
    ("dense_matmul_s", "  the float path's dense products alone (s)"),
    ("packed_over_dense_matmul", "  packed / those products (goal <= 0.3)"),
    ("packed_map_s", "packed engine: MAP pass, 1,000 points (s)"),
    ("float_map_s", "  the float path, alternating (s)"),
    ("packed_map_over_float_map", "  packed / float path (goal <= 0.25)"),
    ("packed_weight_bytes_ratio", "packed / float32 weight bytes (goal <= 0.04)"),
    ("packed_spike_density", "spikes per neuron per step, per layer"),
    ("packed_input_density", "  the inputs'"),
    ("packed_change_rate", "spikes that differ from the step before, per neuron per step, per layer"),
    ("independent_changes_s", f"  inputs drawn afresh each step ({INDEPENDENT_DENSITY}): changes (s)"),
    ("independent_popcount_s", "    bit counts (s)"),
    ("independent_changes_over_popcount", "    changes / bit counts"),
    ("independent_change_rate", "    its spikes that differ from the step before, per layer"),
    ("conv_packed_ensemble10_s", "packed engine, conv network on digits-dvs: K=10 ensemble, 359 points (s)"),
    ("conv_float_ensemble10_s", "  the float path, alternating (s)"),
    ("conv_packed_over_float", "  packed / float path"),
    ("recurrence_library_ms", "one layer's recurrences, as the library runs them (ms)"),
    ("recurrence_pytorch_loops_ms", "  the same as PyTorch loops (ms)"),
    ("recurrence_library_over_pytorch_loops", "  library / PyTorch loops"),
    ("recurrence_compiled_ms", "  written for torch.compile, compiled (ms)"),
    ("compiled_over_library", "  torch.compile / library"),
]


def shown(value: object) -> str:
    """A result as printed: numbers to three decimals, lists of them likewise, None as not reached."""
    if value is None:
        return "not reached"
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, list) and all(isinstance(v, float) for v in value):
        return ", ".join(f"{v:.3f}" for v in value)
    return str(value)


def spread_of(key: str) -> bool:
    """Whether ``key`` is the min or max of another key (``spread_keys``, ``ratio_keys``)."""
    return key.endswith(("_min", "_max"))


def spread(results: dict[str, object], key: str) -> str:
    """'  [min, max]' of a key that has them, else ''."""
    if f"{key}_min" not in results:
        return ""
    return f"  [{results[f'{key}_min']:.3f}, {results[f'{key}_max']:.3f}]"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, skip the slow sections")
    parser.add_argument("--json", default=None, help="write the numbers to this file")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--compile", action="store_true", help="measure torch.compile of the recurrences")
    parser.add_argument("--peak-memory-of", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.peak_memory_of:
        measure_peak_memory(args.peak_memory_of, args.device)
        return
    device = torch.device(args.device)
    pyro.set_rng_seed(0)
    results: dict[str, object] = {"device": args.device, "threads": torch.get_num_threads(), "quick": args.quick}
    sections = [
        epoch_times,
        recurrence_times,
        particle_times,
        pyro_cost,
        ensemble_times,
        packed_times,
        packed_conv_times,
        packed_sweep,
        scaling,
    ]
    if not args.quick:
        sections.append(time_to_accuracy)
    if args.compile or not args.quick:
        sections.append(compile_check)
    for section in sections:
        start = time.perf_counter()
        results.update(section(args, device))
        print(f"[{section.__name__}: {time.perf_counter() - start:.0f} s]", file=sys.stderr)
    results.update(peak_memory(args))
    width = max(len(label) for _, label in ROWS)
    print(f"bisnn-pyro benchmarks on {args.device}, {results['threads']} threads{' (quick)' if args.quick else ''}")
    for key, label in ROWS:
        if key in results:
            print(f"  {label:<{width}}  {shown(results[key])}{spread(results, key)}")
    for key, value in results.items():
        if key not in dict(ROWS) and key not in ("device", "threads", "quick", "packed_sweep") and not spread_of(key):
            print(f"  {key:<{width}}  {shown(value)}{spread(results, key)}")
    if results.get("packed_sweep"):
        print(sweep_table(results["packed_sweep"]))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(
                {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in results.items()},
                handle,
                indent=2,
            )


if __name__ == "__main__":
    main()
