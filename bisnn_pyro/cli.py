"""The ``bisnn-pyro`` command: train, evaluate, report, datasets."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Sequence

from .data.registry import SPECS
from .experiment import DATASETS, LEARNING, MODELS, ConfigError, ExperimentConfig, create_run, open_run
from .inference.checkpoint import CheckpointError
from .inference.predict import MODES
from .inference.rules import POINT_ESTIMATE_RULES, RULES
from .inference.training import ENGINES, SCHEDULES, TrainingDiverged
from .models import CONV_PRESETS
from .models.likelihoods import LIKELIHOODS
from .runtime import keep_freed_memory


def _parser() -> argparse.ArgumentParser:
    defaults = ExperimentConfig()
    parser = argparse.ArgumentParser(
        prog="bisnn-pyro",
        description="Binary-weight spiking neural networks trained by Bayesian learning (Pyro).",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a network and write a run folder")
    train.add_argument("--dataset", choices=DATASETS, default=defaults.dataset)
    train.add_argument("--rule", choices=RULES, default=defaults.rule, help="learning rule (default: bayes)")
    train.add_argument("--epochs", type=int, default=defaults.epochs)
    train.add_argument("--seed", type=int, default=defaults.seed)
    train.add_argument(
        "--schedule",
        choices=SCHEDULES,
        default=defaults.schedule,
        help="sequence: one step per sequence; online: one step per time step (the paper's)",
    )
    train.add_argument("--lr", type=float, default=None, help="learning rate (default: the rule's own)")
    train.add_argument(
        "--temperature", type=float, default=None, help="relaxation temperature tau (rules bayes, bayes-adam; 0.5)"
    )
    train.add_argument("--prior-p", type=float, default=None, help="prior P(w = +1) (binary-weight rules; 0.5)")
    train.add_argument("--prior-scale", type=float, default=None, help="Gaussian prior scale (rules fp, fp-bayes; 1)")
    train.add_argument("--init-scale", type=float, default=None, help="scale of the guide's initial values (0.1)")
    train.add_argument("--momentum", type=float, default=None, help="learning-rule momentum (rule bayes; 0)")
    train.add_argument("--kl-weight", type=float, default=defaults.kl_weight, help="KL weight beta")
    train.add_argument(
        "--likelihood",
        choices=list(LIKELIHOODS),
        default=defaults.likelihood,
        help="decolle: every step of every readout (the paper's); last-readout: the time-averaged last "
        "readout, the predictive's own model (needs --learning end-to-end)",
    )
    train.add_argument("--samples", type=int, default=defaults.samples, help="ensemble size K for the summary")
    train.add_argument("--batch-size", type=int, default=defaults.batch_size)
    train.add_argument(
        "--particles", type=int, default=defaults.particles, help="ELBO particles per step (one batched draw)"
    )
    train.add_argument("--hidden", type=int, nargs="+", default=defaults.hidden, help="hidden layer widths (mlp)")
    train.add_argument("--model", choices=MODELS, default=defaults.model, help="dense (mlp) or convolutional network")
    train.add_argument(
        "--conv-preset",
        choices=sorted(CONV_PRESETS),
        default=defaults.conv_preset,
        help="conv layers: small (16, 32 ch, 3x3, no pooling) or paper (64, 128, 128 ch, 7x7, pool 2)",
    )
    train.add_argument(
        "--dense", type=int, nargs="+", default=[], help="conv model: dense layer widths after the convolutions"
    )
    train.add_argument("--kernel-size", type=int, default=None, help="conv model: odd kernel size (default: preset's)")
    train.add_argument(
        "--learning",
        choices=LEARNING,
        default=defaults.learning,
        help="local: each layer from its own readout (DECOLLE); end-to-end: gradients through layers and "
        "time, from every readout; end-to-end-output: from the last readout only",
    )
    train.add_argument("--data-dir", default=None, help="folder holding the recorded data sets")
    train.add_argument("--steps", type=int, default=None, help="time steps T (default: the data set's)")
    train.add_argument(
        "--burn-in", type=int, default=None, help="steps before the loss counts (default: the data set's)"
    )
    train.add_argument("--step-ms", type=float, default=None, help="event sets: milliseconds per time step")
    train.add_argument("--downsample", type=int, default=None, help="event sets: spatial down-sampling factor")
    train.add_argument("--device", default=defaults.device, help="cpu, cuda or cuda:N (default: cpu)")
    train.add_argument(
        "--engine",
        choices=ENGINES,
        default=defaults.engine,
        help="svi: Pyro SVI every step; direct: the same ELBO without tracing; fused: the online steps of "
        "rule bayes in a few compiled passes; auto: fused where it applies, else direct where it applies, else svi",
    )
    train.add_argument("--out", required=True, help="run folder to write")
    train.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out up to --epochs (its other settings come from its config.json)",
    )
    train.add_argument("--quiet", action="store_true", help="no progress bar")

    evaluate = commands.add_parser("evaluate", help="score a run on its held-out test set")
    evaluate.add_argument("run_dir")
    evaluate.add_argument("--mode", choices=MODES, default="ensemble")
    evaluate.add_argument("--samples", type=int, default=None, help="ensemble size K (default: the run's)")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: the run's)")

    commands.add_parser("datasets", help="list the data sets, their sources and shapes").add_argument(
        "--data-dir", default=None, help="where recorded data sets are looked for"
    )

    report = commands.add_parser("report", help="figures, a Markdown table and InferenceData for run folders")
    report.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    report.add_argument("--out", default="report", help="folder to write (default: ./report)")
    report.add_argument("--samples", type=int, default=20, help="weight draws K for ensembles (default 20)")
    report.add_argument("--grid", type=int, default=40, help="points per side of the two-moons uncertainty grid")
    report.add_argument("--quiet", action="store_true", help="no progress bar")
    report.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: each run's)")
    return parser


def _config(args: argparse.Namespace) -> ExperimentConfig:
    return ExperimentConfig(
        dataset=args.dataset,
        rule=args.rule,
        epochs=args.epochs,
        seed=args.seed,
        schedule=args.schedule,
        lr=args.lr,
        temperature=args.temperature,
        prior_p=args.prior_p,
        prior_scale=args.prior_scale,
        init_scale=args.init_scale,
        momentum=args.momentum,
        kl_weight=args.kl_weight,
        likelihood=args.likelihood,
        samples=args.samples,
        batch_size=args.batch_size,
        particles=args.particles,
        hidden=list(args.hidden),
        model=args.model,
        conv_preset=args.conv_preset,
        dense=list(args.dense),
        kernel_size=args.kernel_size,
        learning=args.learning,
        data_dir=args.data_dir,
        steps=args.steps,
        burn_in=args.burn_in,
        step_ms=args.step_ms,
        downsample=args.downsample,
        device=args.device,
        engine=args.engine,
    ).validate()


def _format(scores: dict) -> str:
    k = f" (K={scores['samples']})" if scores["mode"] == "ensemble" else ""
    return (
        f"{scores['mode']}{k}: accuracy {scores['accuracy']:.3f}, NLL {scores['nll']:.3f}, "
        f"Brier {scores['brier']:.3f}, ECE {scores['ece']:.3f} on {scores['n']} test points"
    )


def _train(args: argparse.Namespace) -> None:
    if args.resume:
        run = open_run(args.out)
    else:
        run = create_run(_config(args), args.out)
    start = time.perf_counter()
    run.fit(args.epochs, progress=False if args.quiet else None)
    seconds = time.perf_counter() - start
    modes = ["map"] if run.config.rule in POINT_ESTIMATE_RULES else ["ensemble", "map"]
    parts = [_format(run.evaluate(mode)) for mode in modes]
    epochs = run.trainer.epoch
    header = f"{run.config.rule} on {run.config.dataset}, {epochs} epoch{'s' if epochs != 1 else ''} in {seconds:.1f} s"
    print(f"{header} -> {run.directory}: " + "; ".join(parts))


def _evaluate(args: argparse.Namespace) -> None:
    run = open_run(args.run_dir, args.device)
    scores = run.evaluate(args.mode, args.samples)
    print(json.dumps(scores) if args.json else _format(scores))


def _report(args: argparse.Namespace) -> None:
    if args.samples < 2:
        raise ConfigError(f"the report needs K >= 2 weight draws, got --samples {args.samples}")
    if args.grid < 2:
        raise ConfigError(f"--grid must be >= 2, got {args.grid}")
    from .report import write_report  # ArviZ and matplotlib load only when a report is asked for

    path = write_report(
        args.run_dirs,
        args.out,
        samples=args.samples,
        resolution=args.grid,
        progress=False if args.quiet else None,
        device=args.device,
    )
    print(f"report on {len(args.run_dirs)} run(s) -> {path}")


def _datasets(args: argparse.Namespace) -> None:
    for name, spec in SPECS.items():
        status = "present" if spec.present(args.data_dir) else f"missing: expected {spec.layout}"
        shape = f"T={spec.steps}"
        if spec.sensor is not None:
            width, height, polarities = spec.sensor
            shape += (
                f" x {polarities}x{height // spec.downsample}x{width // spec.downsample} ({spec.step_ms:g} ms/step)"
            )
        print(
            f"{name:12s} {spec.classes:2d} classes  {shape:38s} {spec.size}; {status}\n{'':12s} source: {spec.source}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    keep_freed_memory()  # a quarter of a sequence epoch was page faults on fresh memory
    try:
        {"train": _train, "evaluate": _evaluate, "report": _report, "datasets": _datasets}[args.command](args)
    except (ConfigError, CheckpointError, TrainingDiverged) as error:
        print(f"bisnn-pyro: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
