"""Side-by-side timings of bisnn-pyro on the two-moons task (200 training points, T = 100, 256-256).

    python benchmarks/run.py [--quick] [--json FILE] [--device cpu|cuda] [--threads N] [--compile]

Every ratio compares two things measured in this one run, on this machine.  After the first
sequence epochs the process keeps freed memory for reuse (``bisnn_pyro.runtime.keep_freed_memory``,
as the ``bisnn-pyro`` command does); the row below the sequence epoch is the time before.
``--quick`` trims the repeats and skips the slow sections (time to 0.97 accuracy, the torch.compile
check); ``--json`` writes the numbers, including the keys epoch_s_sequence, epoch_s_online,
pyro_over_torch, ensemble10_s, ensemble10_over_map and matmul_fraction.
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

import pyro
import torch
from torch.distributions import Categorical

from bisnn_pyro.experiment import ExperimentConfig, build, load_data
from bisnn_pyro.inference.predict import point_weights
from bisnn_pyro.inference.training import Trainer
from bisnn_pyro.models import recurrences
from bisnn_pyro.models.neurons import LIFParameters, input_traces, subtract_refractory_
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
    the synaptic matmuls of the ensemble alone (same shapes, same chunks) for the matmul fraction."""
    _, train, test, bsnn, trainer = setup(args.device)
    trainer.run_epoch()
    bsnn.eval()
    x = test.x.to(device)
    draws = bsnn.draw_weights(x, 10)
    map_weights = {k: v.unsqueeze(0) for k, v in point_weights(bsnn.guide, "map").items()}
    singles = [{k: v[i : i + 1] for k, v in draws.items()} for i in range(10)]
    repeats = 2 if args.quick else 3
    bsnn.readouts_with(draws, x)
    ensemble = median_time(lambda: bsnn.readouts_with(draws, x), repeats, device)
    single = median_time(lambda: bsnn.readouts_with(map_weights, x), repeats, device)
    ten_singles = median_time(lambda: [bsnn.readouts_with(w, x) for w in singles], repeats, device)

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
    ("recurrence_library_ms", "one layer's recurrences, as the library runs them (ms)"),
    ("recurrence_pytorch_loops_ms", "  the same as PyTorch loops (ms)"),
    ("recurrence_library_over_pytorch_loops", "  library / PyTorch loops"),
    ("recurrence_compiled_ms", "  written for torch.compile, compiled (ms)"),
    ("compiled_over_library", "  torch.compile / library"),
]


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
    sections = [epoch_times, recurrence_times, particle_times, pyro_cost, ensemble_times, scaling]
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
            print(f"  {label:<{width}}  {results[key]:.3f}")
    for key, value in results.items():
        if key not in dict(ROWS) and key not in ("device", "threads", "quick"):
            shown = "not reached" if value is None else f"{value:.3f}" if isinstance(value, float) else value
            print(f"  {key:<{width}}  {shown}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(
                {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in results.items()},
                handle,
                indent=2,
            )


if __name__ == "__main__":
    main()
