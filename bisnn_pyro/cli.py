"""The ``bisnn-pyro`` command: train, evaluate, export, cost, report, study, parts, datasets."""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Sequence

import torch

from . import __version__
from .analysis.health import chance_warnings, loss_warnings
from .config.components import KINDS, REGISTRY, load_plugins, part_flags
from .config.options import ConfigError, Text
from .config.run import PLUGINS, SECTIONS, ExperimentConfig, merge, read_config_file, sectioned
from .data.registry import SPECS
from .errors import BisnnError, PeerFailed, one_line
from .experiment import Run, create_run, open_run, refuse_samples_of_one_network
from .inference.bnn import ENGINES
from .inference.predict import MODES
from .inference.rules import RULE_PRESETS
from .runtime import keep_freed_memory
from .sizing import out_of_memory

ENGINE_HELP = (
    "float: PyTorch's float32 network; packed: the 1-bit engine (integer additions on the CPU, the same "
    "readouts bit for bit); auto (default): packed where it applies"
)


class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line (no usage block first) and exit status 2."""

    def error(self, message: str):
        self.exit(2, f"bisnn-pyro: error: {message}\n")


def _at_least_one(text: str) -> int:
    """An option's whole number >= 1 (argparse names the option in its one-line error)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="bisnn-pyro",
        description="Binary-weight spiking neural networks trained by Bayesian learning (Pyro).",
        allow_abbrev=False,
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    train = commands.add_parser(
        "train",
        help="train a network and write a run folder",
        usage="bisnn-pyro train [--config FILE] [--set KEY=VALUE ...] [--rule RULE] [--prior|--guide|--likelihood|"
        "--optim NAME] [--KIND.OPTION VALUE ...] [OPTION ...] --out RUN_DIR [--resume]",
        description="Options come from --config, then --set, then the flags (later ones win); a named "
        "--rule is a preset of the parts, and explicit parts win over it.  Part options: --prior.p 0.3, "
        "--guide.temperature 0.5, ... (`bisnn-pyro parts` lists every part and its options).",
        allow_abbrev=False,
    )
    train.add_argument("--config", metavar="FILE", help="configuration file: TOML, or a run's config.json")
    train.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="one option, e.g. training.epochs=30 or prior.p=0.3",
    )
    train.add_argument("--plugin", dest="plugins", action="append", default=[], metavar="MODULE", help=PLUGINS.help)
    for kind in KINDS:
        train.add_argument(f"--{kind}", dest=f"{kind}.name", default=argparse.SUPPRESS, metavar="NAME",
                           help=f"the {kind} by name")
    for section, options in SECTIONS.items():
        group = train.add_argument_group(f"[{section}]")
        for option in options:
            group.add_argument(
                f"--{section}.{option.name}",
                *option.flags,
                dest=f"{section}.{option.name}",
                default=argparse.SUPPRESS,
                nargs="+" if option.many else None,
                metavar=option.name.upper(),
                help=option.help if "(default:" in option.help else f"{option.help} (default: {option.default})",
            )
    group = train.add_argument_group("part options with flags of their own")
    for key, (kind, name) in part_flags().items():
        group.add_argument(f"--{key.replace('_', '-')}", dest=f"{kind}.{name}", default=argparse.SUPPRESS,
                           metavar=name.upper(), help=f"{kind}.{name}")
    train.add_argument("--out", required=True, help="run folder to write")
    train.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out up to --epochs (its other settings come from its config.json)",
    )
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.add_argument(
        "--distributed",
        action="store_true",
        help="data-parallel training under torchrun (--nproc-per-node N): each process a shard of every minibatch",
    )

    evaluate = commands.add_parser("evaluate", help="score a run on its held-out test set", allow_abbrev=False)
    evaluate.add_argument("run_dir")
    evaluate.add_argument("--mode", choices=MODES, default=None,
                          help="default: the run's own predictor, its ensemble, or map where the guide is a "
                               "point estimate (straight-through, auto-delta)")
    evaluate.add_argument("--samples", type=_at_least_one, default=None,
                          help="ensemble size K (default: the run's); given alone, it means --mode ensemble")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: the run's)")
    evaluate.add_argument("--engine", choices=ENGINES, default="auto", help=ENGINE_HELP)

    export = commands.add_parser(
        "export", help="write a run's MAP network or K posterior draws as 1-bit packed weights", allow_abbrev=False
    )
    export.add_argument("run_dir")
    export.add_argument("--format", choices=["packed"], default="packed",
                        help="packed: one bit per synapse in a .npz file, read with bisnn_pyro.packed.load_packed")
    export.add_argument("--mode", choices=("map", "ensemble"), default=None,
                        help="the MAP network or K posterior draws (default: map, or ensemble with --samples)")
    export.add_argument("--samples", type=_at_least_one, default=None, metavar="K",
                        help="K posterior draws, the ones `evaluate --samples K` scores (default: the run's K); "
                             "given alone, it means --mode ensemble")
    export.add_argument("--out", required=True, metavar="FILE", help="file to write (.npz)")
    export.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: the run's)")

    cost = commands.add_parser(
        "cost",
        help="spikes, synaptic operations, weight memory and energy per layer on the test set",
        description="Per test sequence (mean over the test set; an ensemble's figures are per weight draw), per "
        "layer and readout: spikes per neuron per step, synops (one accumulate per input spike per output it "
        "reaches, event-driven), the multiply-accumulates of a full-precision SNN of the same shape in DECOLLE's "
        "order (connections x steps) and of a non-spiking network (connections x --ann-passes), and the weight "
        "bits.  Energy (pJ; Horowitz, ISSCC 2014, 45 nm): binary SNN = synops x (int32 add + one weight bit read) "
        "+ LIF updates (4 float32 multiplies + 4 adds per neuron per step); float32 SNN = synops x (float32 add + "
        "32 bit reads) + the same updates; full-precision SNN and non-spiking network = MACs x (float32 multiply "
        "+ add + 32 bit reads), plus the updates, or one add per neuron and pass.  A bit read costs a 64-bit read "
        "/ 64 of the smallest memory (8 KB, 32 KB, 1 MB SRAM, else DRAM) that holds the network's weights.  "
        "Totals count the last readout only (the one prediction reads) unless --all-readouts.  See docs/cost.md.",
        allow_abbrev=False,
    )
    cost.add_argument("run_dir")
    cost.add_argument("--mode", choices=("map", "ensemble"), default=None,
                      help="the MAP weights or K posterior draws (default: map, or ensemble with --samples)")
    cost.add_argument("--samples", type=_at_least_one, default=None,
                      help="ensemble size K (default: the run's); given alone, it means --mode ensemble")
    cost.add_argument("--energy", action="append", default=[], metavar="NAME=PJ",
                      help="replace one energy constant (pJ), e.g. int_add=0.03; repeatable (names: int_add, "
                           "float_add, float_mult, sram_8kb_read_64b, sram_32kb_read_64b, sram_1mb_read_64b, "
                           "dram_read_64b)")
    cost.add_argument("--ann-passes", type=_at_least_one, default=1, metavar="N",
                      help="forward passes of the non-spiking network per sequence (default: 1)")
    cost.add_argument("--all-readouts", action="store_true",
                      help="count every layer's readout in the totals (DECOLLE's training readouts too)")
    cost.add_argument("--json", action="store_true", help="print one JSON object")
    cost.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: the run's)")

    commands.add_parser("datasets", help="list the data sets, their sources and shapes").add_argument(
        "--data-dir", default=None, help="where recorded data sets are looked for"
    )

    parts = commands.add_parser("parts", help="list the parts a configuration can name, with their options")
    parts.add_argument("--plugin", dest="plugins", action="append", default=[], metavar="MODULE", help=PLUGINS.help)

    study = commands.add_parser("study", help="many seeds and settings as one study: run it, report it")
    study_commands = study.add_subparsers(dest="study_command", required=True, parser_class=_Parser)
    study_run = study_commands.add_parser("run", help="run (or finish) every run of a study file", allow_abbrev=False)
    study_run.add_argument("study_file", metavar="STUDY.toml")
    study_run.add_argument("--out", required=True, help="study folder: a run folder per arm and seed")
    study_run.add_argument("--workers", type=_at_least_one, default=None,
                           help="local processes (default: one per core)")
    study_run.add_argument("--ray", metavar="auto|ADDRESS", default=None,
                           help="run as Ray tasks: auto (this machine's cluster, else a local one) "
                                "or a cluster's address")
    study_run.add_argument("--quiet", action="store_true", help="no progress bar")
    study_report = study_commands.add_parser("report", help="runs.csv, summary over seeds, paired differences",
                                             allow_abbrev=False)
    study_report.add_argument("study_dir", metavar="STUDY_DIR")
    study_report.add_argument("--out", default=None, help="folder to write (default: STUDY_DIR/report)")

    report = commands.add_parser("report", help="figures, a Markdown table and InferenceData for run folders")
    report.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    report.add_argument("--out", default="report", help="folder to write (default: ./report)")
    report.add_argument("--samples", type=int, default=20, help="weight draws K for ensembles (default 20)")
    report.add_argument("--grid", type=int, default=40, help="points per side of the two-moons uncertainty grid")
    report.add_argument("--quiet", action="store_true", help="no progress bar")
    report.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: each run's)")
    report.add_argument("--engine", choices=ENGINES, default="auto", help=ENGINE_HELP)
    return parser


COMMAND_OPTIONS = {"config", "set", "plugins", "out", "resume", "quiet", "distributed", "command"}


def _option(key: str, value, where: str) -> dict:
    """Option ``key`` (``section.name``, or ``plugins``) set to ``value``, as a sectioned configuration."""
    if key == "plugins":
        values = value.replace(",", " ").split() if isinstance(value, str) else value
        return {"plugins": [Text(v) for v in values]}
    section, dot, name = key.partition(".")
    if not dot or not name:
        raise ConfigError(f"{where}: expected SECTION.OPTION (e.g. training.epochs), got {key!r}")
    return {section: {name: value}}


def _part_options(extra: list[str]) -> list[tuple[str, str]]:
    """(``kind.option``, value) from the arguments argparse did not know: ``--prior.a 2``, ``--prior.a=2``."""
    pairs, rest = [], list(extra)
    while rest:
        token = rest.pop(0)
        key, equals, value = token[2:].partition("=") if token.startswith("--") else ("", "", "")
        if key.partition(".")[0] not in KINDS or not key.partition(".")[2]:
            raise ConfigError(
                f"unrecognized argument {token!r} (part options read --KIND.OPTION VALUE, e.g. --prior.p 0.3)"
            )
        if not equals:
            if not rest or rest[0].startswith("--"):
                raise ConfigError(f"{token} needs a value")
            value = rest.pop(0)
        pairs.append((key, value))
    return pairs


def _raw_config(args: argparse.Namespace, extra: list[str]) -> dict:
    """The configuration the arguments give: --config, then each --set, then the flags, each layer
    winning over the ones before (see ``merge``)."""
    raw = sectioned(read_config_file(args.config)) if args.config else {}
    for item in args.set:
        key, equals, value = item.partition("=")
        if not equals:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. training.epochs=30")
        raw = merge(raw, _option(key.strip(), Text(value.strip()), f"--set {item}"))
    flags: dict = {"plugins": [Text(v) for v in args.plugins]} if args.plugins else {}
    given = {key: value for key, value in vars(args).items() if key not in COMMAND_OPTIONS}
    for key, value in [*given.items(), *_part_options(extra)]:
        value = [Text(v) for v in value] if isinstance(value, list) else Text(value)
        for section, settings in _option(key, value, f"--{key}").items():
            flags.setdefault(section, {}).update(settings)
    return merge(raw, flags)


def _format(scores: dict) -> str:
    k = f" (K={scores['samples']})" if scores["mode"] == "ensemble" else ""
    return (
        f"{scores['mode']}{k}: accuracy {scores['accuracy']:.3f}, NLL {scores['nll']:.3f}, "
        f"Brier {scores['brier']:.3f}, ECE {scores['ece']:.3f} on {scores['n']} test points "
        f"({scores['engine']} engine)"
    )


def _train(args: argparse.Namespace, extra: list[str]) -> None:
    if not args.out.strip():
        raise ConfigError("--out needs the name of a run folder, got ''")
    if args.resume:
        given = {key for key in vars(args) if key not in COMMAND_OPTIONS} - {"training.epochs"}
        if args.config or args.set or args.plugins or extra or given:
            named = sorted(given) or ["--config / --set / --plugin"]
            raise ConfigError(
                "--resume continues the run as its config.json says; "
                f"only --epochs may be given (got {', '.join(named)})"
            )
        config = None
    else:
        config = ExperimentConfig(_raw_config(args, extra))
    if not args.distributed:
        return _fit_and_summarise(_start_run(args, config), args)
    from .inference.distributed import DataParallel

    parallel = DataParallel.from_environment((config or _saved_config(args.out)).device)
    try:
        try:
            run, error = _start_run(args, config, parallel), None
        except Exception as failure:  # any failure: the other processes must not wait for this one
            run, error = None, failure
        failed = parallel.failed(error is None)  # every process starts, or none trains
        if failed and error is not None and (parallel.rank == 0 or 0 not in failed):
            raise error  # said once: by rank 0, or by each process that failed where rank 0 did not
        if failed:
            raise PeerFailed(f"process {parallel.rank}: another process of the run could not start")
        if parallel.writes:
            _fit_and_summarise(run, args)
        else:
            run.fit(run.config.epochs, progress=False)
    finally:
        parallel.close()


def _saved_config(out: str) -> ExperimentConfig:
    path = Path(out) / "config.json"
    if not path.is_file():
        raise ConfigError(f"no config.json in {out}: nothing to resume")
    return ExperimentConfig.from_dict(read_config_file(path), saved=True)


def _start_run(args: argparse.Namespace, config: ExperimentConfig | None, parallel=None) -> Run:
    """The run to train: a new one from ``config``, or (``config`` None) the run in ``--out`` to resume."""
    if config is not None:
        return create_run(config, args.out, parallel)
    run = open_run(args.out, write=parallel is None or parallel.writes, parallel=parallel)
    epochs = getattr(args, "training.epochs", None)
    if epochs is not None:
        run.config = run.config.replaced(epochs=Text(epochs))
        if run.config.epochs < run.trainer.epoch:
            raise ConfigError(
                f"--epochs {run.config.epochs}: {args.out} has trained {run.trainer.epoch} epochs already"
            )
        if run.lock is not None:
            run.write_config()
    return run


def _fit_and_summarise(run: Run, args: argparse.Namespace) -> None:
    start = time.perf_counter()
    run.fit(run.config.epochs, progress=False if args.quiet else None)
    seconds = time.perf_counter() - start
    scores = [run.evaluate(mode) for mode in run.modes]
    epochs = run.trainer.epoch
    header = (
        f"{run.config.label} on {run.config.dataset}, {epochs} epoch{'s' if epochs != 1 else ''} in {seconds:.1f} s"
    )
    print(f"{header} -> {run.directory}: " + "; ".join(_format(s) for s in scores))
    best = max(scores, key=lambda s: s["accuracy"])
    _warn([*loss_warnings([record["loss"] for record in run.metrics()]), *_at_chance(run, best)])


def _at_chance(run: Run, scores: dict) -> list[str]:
    """A warning if the accuracy in ``scores`` is no better than guessing one of the run's classes."""
    classes = SPECS[run.config.dataset].classes
    return chance_warnings(scores["accuracy"], classes, scores["n"], f"{scores['mode']} accuracy")


def _warn(warnings: list[str]) -> None:
    for warning in warnings:
        print(f"bisnn-pyro: warning: {warning}", file=sys.stderr)


def _one_network_unless_samples(args: argparse.Namespace) -> str:
    """export's and cost's mode: --mode, else the MAP network, or the ensemble where --samples is given."""
    return args.mode or ("ensemble" if args.samples is not None else "map")


def _evaluate(args: argparse.Namespace) -> None:
    refuse_samples_of_one_network(args.mode, args.samples)
    run = open_run(args.run_dir, args.device)
    scores = run.evaluate(args.mode, args.samples, args.engine)
    print(json.dumps(scores) if args.json else _format(scores))
    _warn(_at_chance(run, scores))


def _export(args: argparse.Namespace) -> None:
    from .packed import export_packed

    if not args.out.strip():
        raise ConfigError("--out needs the name of a file, got ''")
    refuse_samples_of_one_network(args.mode, args.samples)
    run = open_run(args.run_dir, args.device)
    written = export_packed(run, args.out, _one_network_unless_samples(args), args.samples)
    print(f"{written.path}: {written.describe()}")


def _cost(args: argparse.Namespace) -> None:
    from .analysis.cost import cost_table, parse_energy, run_cost

    energies = parse_energy(args.energy)
    refuse_samples_of_one_network(args.mode, args.samples)
    run = open_run(args.run_dir, args.device)
    cost = run_cost(run, _one_network_unless_samples(args), args.samples, energies=energies, ann_passes=args.ann_passes,
                    all_readouts=args.all_readouts)
    print(json.dumps(cost) if args.json else cost_table(cost))


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
        engine=args.engine,
        progress=False if args.quiet else None,
        device=args.device,
    )
    print(f"report on {len(args.run_dirs)} run(s) -> {path}")


def _study(args: argparse.Namespace) -> None:
    from .studies import read_study
    from .studies.report import write_study_report
    from .studies.runner import OUTCOMES, run_study

    if args.study_command == "report":
        path = write_study_report(args.study_dir, args.out or Path(args.study_dir) / "report")
        print(f"study report -> {path}")
        return
    if args.ray is not None and args.workers is not None:
        raise ConfigError("--workers sets the local pool; with --ray the cluster's CPUs set how many runs go at once")
    outcomes = run_study(
        read_study(args.study_file), args.out, args.workers, progress=False if args.quiet else None, ray=args.ray
    )
    failed = {folder: outcome for folder, outcome in outcomes.items() if outcome not in OUTCOMES}
    for folder, outcome in failed.items():
        print(f"bisnn-pyro: error: {Path(args.out) / folder}: {outcome}", file=sys.stderr)
    counts = {outcome: sum(o == outcome for o in outcomes.values()) for outcome in OUTCOMES}
    print(f"study {args.study_file}: {counts['done']} run(s) trained, {counts['scored']} scored again, "
          f"{counts['skipped']} finished before, {len(failed)} failed -> {args.out}")
    if failed:
        raise ConfigError(f"{len(failed)} of {len(outcomes)} runs failed (each said why above)")


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


def _parts(args: argparse.Namespace) -> None:
    load_plugins(args.plugins)
    for kind in KINDS:
        print(f"[{kind}]")
        for name in REGISTRY.names(kind):
            component = REGISTRY.parts[kind][name]
            where = "" if component.module.startswith("bisnn_pyro.") else f"  (from {component.module})"
            print(f"  {name:22s} {component.help}{where}")
            for option in component.options:
                setting = f"{option.name} = {option.default!r}"
                print(f"      {setting:24s} {option.help}; {option.describe()}")
    print("[rules] (presets of parts)")
    for rule, parts in RULE_PRESETS.items():
        described = ", ".join(
            spec["name"] + "".join(f" {k}={v}" for k, v in spec.items() if k != "name") for spec in parts.values()
        )
        print(f"  {rule:22s} {described}")


def _crash_log(error: BaseException) -> Path:
    """Write ``error``'s traceback to a log file; its path."""
    fd, name = tempfile.mkstemp(prefix="bisnn-pyro-crash-", suffix=".log")
    with os.fdopen(fd, "w") as log:
        log.write(f"bisnn-pyro {__version__}, torch {torch.__version__}, argv {sys.argv}\n")
        traceback.print_exception(error, file=log)
    return Path(name)


def _run(args: argparse.Namespace, extra: list[str]) -> None:
    if extra and args.command != "train":
        raise ConfigError(f"unrecognized arguments: {' '.join(extra)}")
    if args.command == "train":
        _train(args, extra)
    else:
        commands = {
            "evaluate": _evaluate, "export": _export, "cost": _cost, "report": _report, "datasets": _datasets,
            "parts": _parts, "study": _study,
        }
        commands[args.command](args)


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns the exit status: 0 done, 2 an error the user can act on (one
    line), 1 a bug (one line and the path of a log file with the traceback), 130 interrupted,
    141 the reader of its output stopped reading."""
    try:
        args, extra = _parser().parse_known_args(argv)  # the parser lists the parts: entry points load here
        keep_freed_memory()  # a quarter of a sequence epoch was page faults on fresh memory
        _run(args, extra)
    except PeerFailed:  # the process that failed has said why
        return 2
    except BisnnError as error:
        return _fail(one_line(error))
    except BrokenPipeError as error:
        if not _reader_gone():  # a pipe of a worker or a socket, not the output's
            return _fail(f"cannot use: {error.strerror or one_line(error)}")
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing left to flush at exit
        return 128 + signal.SIGPIPE  # the reader stopped (`| head`): quiet, as a Unix tool ended by SIGPIPE
    except OSError as error:  # a folder that is a file, a read-only place, a full disk
        where = f" {error.filename}" if error.filename else ""
        return _fail(f"cannot use{where}: {error.strerror or one_line(error)}")
    except MemoryError:
        return _fail("out of memory: choose a smaller model, batch, ensemble or data set")
    except KeyboardInterrupt:
        print("bisnn-pyro: interrupted (a run folder keeps its last finished epoch)", file=sys.stderr)
        return 130
    except Exception as error:  # a bug: one line here, the whole story in the log
        if out_of_memory(error):
            return _fail(f"out of memory: {one_line(error)}")
        log = _crash_log(error)
        print(
            f"bisnn-pyro: internal error ({type(error).__name__}: {one_line(error)}); traceback in {log}",
            file=sys.stderr,
        )
        return 1
    return 0


def _reader_gone() -> bool:
    """Whether standard output is a pipe whose reading end is closed."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll (Windows) or no file behind stdout
        return False


def _fail(message: str) -> int:
    print(f"bisnn-pyro: error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
