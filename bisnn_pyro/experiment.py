"""Runs: a configuration, the data it names, the model and rule it builds, and its folder on disk.

A run folder is self-contained: ``config.json`` (everything needed to rebuild the model),
``checkpoint.pt`` (written atomically after every epoch) and ``metrics.jsonl`` (one line per epoch).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from .analysis.metrics import summary
from .analysis.posterior import posterior_diagnostics
from .config.components import part
from .config.options import ConfigError
from .config.run import ExperimentConfig, read_config_file
from .data import SpikeDataset
from .data.events import DataError
from .data.registry import SPECS, load_dataset
from .errors import CheckpointError
from .inference import BayesianSNN, Trainer
from .inference.bnn import ENGINES
from .inference.checkpoint import load_checkpoint, remove_unfinished_writes
from .inference.distributed import DataParallel
from .inference.predict import check_mode, point_weights
from .inference.random_stream import RandomStream
from .inference.rules import Rule, build_rule
from .inference.rules import build as build_part
from .inference.sites import CompositionError
from .models import CONV_PRESETS, ConvSpikingNet, LIFParameters, SpikingMLP
from .models.snn import conv_output_shapes
from .run_lock import RunLock
from .sizing import FLOAT, prediction_bytes, require_memory, training_bytes

__all__ = ["ConfigError", "ExperimentConfig", "Run", "create_run", "open_run"]

CONFIG_FILE, CHECKPOINT_FILE, METRICS_FILE = "config.json", "checkpoint.pt", "metrics.jsonl"


def load_data(config: ExperimentConfig):
    """(train, test) for the configured data set (see ``load_dataset``)."""
    spec = SPECS[config.dataset]
    if spec.folder is None:  # generated in memory
        sequences = spec.sequences or config.train_size + config.test_size
        frame = math.prod(spec.frame_shape(config.downsample))
        require_memory(2 * FLOAT * sequences * config.steps * frame, f"{config.dataset} with {config.steps:,} steps")
    try:
        return load_dataset(
            config.dataset,
            steps=config.steps,
            data_dir=config.data_dir,
            step_ms=config.step_ms,
            downsample=config.downsample,
            seed=config.data_seed,
            train_size=config.train_size,
            test_size=config.test_size,
        )
    except DataError as error:
        raise ConfigError(str(error)) from None


def _example(data) -> tuple[torch.Tensor, int]:
    """One batch of one sequence (1, T, ...) and the number of sequences."""
    if isinstance(data, SpikeDataset):
        return data.x[:1], len(data.y)
    return data[0][0].unsqueeze(0), len(data)


def _conv_layers(config: ExperimentConfig) -> dict[str, Any]:
    """The conv network's channels, kernel_size and pool: its preset with the configured kernel."""
    preset = dict(CONV_PRESETS[config.conv_preset])
    if config.kernel_size is not None:
        preset["kernel_size"] = config.kernel_size
    return preset


def build_network(config: ExperimentConfig, frame_shape: tuple[int, ...]) -> torch.nn.Module:
    """The configured network for inputs of shape (T, *frame_shape)."""
    classes = SPECS[config.dataset].classes
    neuron = LIFParameters(config.tau_mem, config.tau_syn, config.tau_ref)
    common = dict(
        neuron=neuron,
        spike=config.surrogate,
        readout_seed=config.seed,
        readout_gain=config.readout_gain,
        local_learning=config.learning == "local",
    )
    if config.network == "conv":
        _check_conv_input(config, frame_shape)
        return ConvSpikingNet(frame_shape, num_classes=classes, dense=config.dense, **_conv_layers(config), **common)
    return SpikingMLP(frame_shape, config.hidden, classes, **common)


def _check_conv_input(config: ExperimentConfig, frame_shape: tuple[int, ...]) -> None:
    if len(frame_shape) != 3:
        raise ConfigError(f"--model conv needs image frames (P, H, W); {config.dataset} gives {frame_shape}")


def network_size(config: ExperimentConfig, frame_shape: tuple[int, ...]) -> tuple[int, int]:
    """(synaptic weights, neurons) of the configured network, from its shapes alone."""
    if config.network == "conv":
        _check_conv_input(config, frame_shape)
        layers = _conv_layers(config)
        channels, pool = layers["channels"], layers["pool"]
        pools = [pool] * len(channels) if isinstance(pool, int) else list(pool)
        try:
            shapes = conv_output_shapes(frame_shape, channels, pools, config.dense)
        except ValueError as error:
            raise ConfigError(str(error)) from None
        kernel = layers["kernel_size"] ** 2
        inputs = [frame_shape, *shapes[:-1]]
        weights = sum(a[0] * b[0] * kernel if len(b) == 3 else math.prod(a) * b[0] for a, b in zip(inputs, shapes))
        return weights, sum(math.prod(shape) for shape in shapes)
    widths = [math.prod(frame_shape), *config.hidden]
    return sum(a * b for a, b in zip(widths, widths[1:])), sum(config.hidden)


def check_training_memory(config: ExperimentConfig, frame_shape: tuple[int, ...], steps: int) -> None:
    """Refuse a configuration whose training step cannot fit in the device's memory."""
    weights, neurons = network_size(config, frame_shape)
    stepped = steps if config.schedule == "sequence" else 1
    needed = training_bytes(
        weights, neurons, batch=config.batch_size, steps=stepped, features=math.prod(frame_shape),
        particles=config.particles,
    )
    require_memory(
        needed, f"training ({weights:,} weights, {neurons:,} neurons, batch {config.batch_size})", config.device
    )


def build(config: ExperimentConfig, train, parallel: DataParallel | None = None) -> tuple[BayesianSNN, Trainer]:
    """The model of ``config`` with its parts, and a trainer ready for epoch 1 (``parallel``: this
    process's place in data-parallel training)."""
    draws = RandomStream(config.seed, config.device)
    with draws:  # the guide's initial values, then the training's draws
        bsnn, rule = _build_model(config, train)
    bsnn.to(config.device)
    in_memory = isinstance(train, SpikeDataset)
    try:
        trainer = Trainer(
            bsnn,
            rule.optim,
            rule.loss,
            train.x if in_memory else train,
            train.y if in_memory else None,
            batch_size=config.batch_size,
            schedule=config.schedule,
            seed=config.seed,
            engine=config.engine,
            device=config.device,
            draws=draws,
            parallel=parallel,
        )
    except CompositionError as error:  # parts or an engine that cannot run this configuration say why
        raise ConfigError(
            f"training.engine {config.engine!r}: {error}" if config.engine != "auto" else str(error)
        ) from None
    return bsnn, trainer


def _build_model(config: ExperimentConfig, train) -> tuple[BayesianSNN, Rule]:
    parts = config.parts
    rule = build_rule(config.label, parts, num_particles=config.particles, seed=config.seed, loss=config.loss)
    example, size = _example(train)
    check_training_memory(config, tuple(example.shape[2:]), example.shape[1])
    net = build_network(config, tuple(example.shape[2:]))
    likelihood = build_part(parts, "likelihood", num_data=size, burn_in=config.burn_in)
    try:
        bsnn = BayesianSNN(net, rule.prior, likelihood, rule.guide, kl_weight=config.kl_weight).setup(example)
    except CompositionError as error:
        raise ConfigError(str(error)) from None
    return bsnn, rule


def refuse_samples_of_one_network(mode: str | None, samples: int | None) -> None:
    """``samples`` count an ensemble's weight draws: refuse them with a mode of one network (map,
    mean), before any run is read (``Run.prediction_draws`` checks the rest)."""
    if mode not in (None, "ensemble") and samples is not None:
        raise ConfigError(
            f"samples={samples} counts an ensemble's draws, but mode {mode!r} predicts with one network: "
            "drop the samples, or ask for mode 'ensemble'"
        )


@dataclass
class Run:
    """A run folder brought to life: its configuration, data, model and trainer."""

    directory: Path
    config: ExperimentConfig
    train: SpikeDataset
    test: SpikeDataset
    bsnn: BayesianSNN
    trainer: Trainer
    lock: RunLock | None = None  # held by the process that writes the folder

    @property
    def checkpoint(self) -> Path:
        return self.directory / CHECKPOINT_FILE

    @property
    def modes(self) -> list[str]:
        """The prediction modes worth scoring: the MAP, and the ensemble unless the guide is a
        point estimate (whose draws are all the same)."""
        return ["map"] if part("guide", self.config.guide).point_estimate else ["ensemble", "map"]

    def close(self) -> None:
        """Release the folder for other writers (the process's end does too)."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def metrics(self) -> list[dict[str, Any]]:
        """The records of ``metrics.jsonl``, one per epoch trained."""
        path = self.directory / METRICS_FILE
        return [record for record in _records(path) if isinstance(record, dict)]

    def write_config(self) -> None:
        """Record the configuration in the run folder (``config.json``, a valid ``--config``)."""
        (self.directory / CONFIG_FILE).write_text(json.dumps(self.config.to_dict(), indent=2) + "\n")

    def fit(self, epochs: int | None = None, progress: bool | None = None) -> list[dict]:
        """Train, recording per epoch the loss and, for sign posteriors, each layer's diagnostics
        (in data-parallel training, the process of rank 0 records; the others only train)."""
        parallel = self.trainer.parallel
        follower = parallel is not None and not parallel.writes
        if self.lock is None and not follower:
            raise RuntimeError(
                f"{self.directory} was opened for reading; open it with open_run(..., write=True) to train it"
            )
        return self.trainer.fit(
            epochs or self.config.epochs,
            run_dir=None if follower else self.directory,
            evaluate=lambda: {"posterior": posterior_diagnostics(self.bsnn)},
            progress=False if follower else progress,
            record={
                "run": {
                    "label": self.config.label,
                    "parts": self.config.parts,
                    "engine": self.trainer.engine,  # the one "auto" chose
                    "config": self.config.fingerprint(),
                }
            },
        )

    def prediction_draws(self, mode: str | None = None, samples: int | None = None) -> tuple[str, int]:
        """The prediction mode and number of weight draws that ``mode`` and ``samples`` ask of this run.

        ``mode`` defaults to the run's first of ``modes`` (the ensemble, or the MAP for a
        point-estimate guide), or to ``"ensemble"`` where only ``samples`` is given; an ensemble's
        ``samples`` default to the run's K.  Refused: ``samples`` with a mode of one network (map,
        mean), and an ensemble of a point-estimate guide, whose draws are all one network."""
        try:
            check_mode(mode or "ensemble", 1 if samples is None else samples)
        except ValueError as error:
            raise ConfigError(str(error)) from None
        refuse_samples_of_one_network(mode, samples)
        if mode is None:
            mode = "ensemble" if samples is not None else self.modes[0]
        if mode != "ensemble":
            return mode, 1
        if "ensemble" not in self.modes:
            raise ConfigError(
                f"{self.directory}: the {part('guide', self.config.guide).name} guide is a point estimate, so its "
                "draws are all one network: use mode 'map', without samples"
            )
        return mode, self.config.samples if samples is None else samples

    def evaluate(self, mode: str | None = None, samples: int | None = None, engine: str = "auto") -> dict[str, Any]:
        """accuracy, nll, brier, ece of ``mode`` on the held-out test set (``mode`` and ``samples`` as
        in ``prediction_draws``; ``engine``: ``"auto"``, ``"float"`` or ``"packed"``, as in
        ``BayesianSNN.readouts_with``; the same scores from each)."""
        mode, samples = self.prediction_draws(mode, samples)
        draw_probs, labels, engines = self._test_predictions(mode, samples, engine=engine)
        scores = {**summary(draw_probs.mean(0), labels), "mode": mode, "samples": samples, "n": len(labels)}
        return {**scores, "engine": engines.pop() if len(engines) == 1 else "mixed"}

    def prediction_weights(self, mode: str, samples: int) -> dict[str, torch.Tensor]:
        """The weights ``evaluate`` predicts with: the MAP or mean weights (a draw dimension of 1),
        or ``samples`` draws from the guide, the draws the run would make next (training's stay its
        own).  It takes ``mode`` and ``samples`` as given; ``prediction_draws`` resolves and checks them."""
        if mode != "ensemble":
            return {k: v.unsqueeze(0) for k, v in point_weights(self.bsnn.guide, mode).items()}
        example, _ = _example(self.test)
        with self.trainer.draws.forked():
            return self.bsnn.draw_weights(example, samples)

    def test_predictions(
        self, mode: str, samples: int, batch_size: int = 200, engine: str = "auto"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-draw class probabilities (K, N, C) on the test set and its labels; one set of draws
        serves every batch of a test set read from files."""
        return self._test_predictions(mode, samples, batch_size, engine)[:2]

    def _test_predictions(
        self, mode: str, samples: int, batch_size: int = 200, engine: str = "auto"
    ) -> tuple[torch.Tensor, torch.Tensor, set[str]]:
        """``test_predictions`` and the engines that computed them (one per batch, as ``engine`` chose)."""
        if engine not in ENGINES:
            raise ConfigError(f"unknown engine {engine!r}; expected one of {', '.join(ENGINES)}")
        self.check_prediction_memory(samples if mode == "ensemble" else 1, batch_size)
        weights = self.prediction_weights(mode, samples)
        batches = [(self.test.x, self.test.y)] if isinstance(self.test, SpikeDataset) else DataLoader(
            self.test, batch_size=batch_size
        )
        probs, labels, engines = [], [], set()
        try:
            for xb, yb in batches:
                readouts, used = self.bsnn.readouts_and_engine(weights, xb, engine=engine)
                probs.append(self.bsnn.likelihood.probs(readouts))
                labels.append(yb)
                engines.add(used)
        except CompositionError as error:  # the packed engine, asked for, cannot run this run
            raise ConfigError(f"engine {engine!r}: {error}") from None
        return torch.cat(probs, dim=1), torch.cat(labels), engines

    def check_prediction_memory(self, samples: int, batch_size: int = 500, points: int | None = None) -> None:
        """Refuse, in one line, ``samples`` weight draws predicting ``points`` sequences (default: the
        test set) that cannot fit in memory."""
        example, size = _example(self.test)
        points = size if points is None else points
        weights, neurons = network_size(self.config, tuple(example.shape[2:]))
        layers = len(self.bsnn.net.output_shapes)
        needed = prediction_bytes(
            weights, neurons, samples=samples, points=points, batch=batch_size, steps=example.shape[1],
            readouts=layers * SPECS[self.config.dataset].classes,
        )
        require_memory(needed, f"predicting {points:,} sequences with K={samples:,} weight draws", self.config.device)


def create_run(config: ExperimentConfig, directory: str | Path, parallel: DataParallel | None = None) -> Run:
    """A new run in ``directory``, locked for this process's writes; refuses a folder that already
    holds a run, or that another process is writing.  In data-parallel training (``parallel``)
    the processes other than rank 0 build the same run without touching the folder."""
    directory = Path(directory)
    _refuse_a_run_in(directory)
    train, test = load_data(config)
    bsnn, trainer = build(config, train, parallel)
    if parallel is not None and not parallel.writes:
        return Run(directory, config, train, test, bsnn, trainer)
    directory.mkdir(parents=True, exist_ok=True)
    lock = RunLock(directory)
    _refuse_a_run_in(directory)  # again: another process may have made one meanwhile
    remove_unfinished_writes(directory / CHECKPOINT_FILE)
    run = Run(directory, config, train, test, bsnn, trainer, lock)
    run.check_prediction_memory(config.samples)  # the summary's ensemble, before any training
    run.write_config()
    (directory / METRICS_FILE).unlink(missing_ok=True)
    return run


def _refuse_a_run_in(directory: Path) -> None:
    if (directory / CHECKPOINT_FILE).exists():
        raise ConfigError(f"{directory} already holds a run; pass --resume to continue it or choose another --out")


def open_run(
    directory: str | Path, device: str | None = None, *, write: bool = False, parallel: DataParallel | None = None
) -> Run:
    """Rebuild a run from its folder and load its latest checkpoint (onto ``device`` if given,
    else the device it was trained on).  ``write``: to train it further, holding its lock; the
    metrics are brought in line with the checkpoint (lines of epochs after it dropped, its own
    restored), and writes a killed process left unfinished are removed.  ``parallel``: to train
    it data-parallel (only rank 0 may open it to write)."""
    directory = Path(directory)
    config_path = directory / CONFIG_FILE
    if not (directory / CHECKPOINT_FILE).is_file():
        if (directory / "study.json").is_file():
            raise ConfigError(
                f"{directory} is a study's folder, not a run's: `bisnn-pyro study report {directory}` reports it"
            )
        if directory.is_file():
            hint = "; a packed file predicts with bisnn_pyro.packed.load_packed" if directory.suffix == ".npz" else ""
            raise ConfigError(f"{directory} is a file; expected a run folder (`bisnn-pyro train --out DIR`){hint}")
        raise CheckpointError(
            f"no checkpoint at {directory / CHECKPOINT_FILE}; train with `bisnn-pyro train --out {directory}` first"
        )
    if not config_path.is_file():
        raise ConfigError(f"no {CONFIG_FILE} in {directory}: not a bisnn-pyro run folder")
    lock = RunLock(directory) if write else None
    config = ExperimentConfig.from_dict(read_config_file(config_path), saved=True)
    if device is not None:
        config = config.replaced(device=device)
    train, test = load_data(config)
    bsnn, trainer = build(config, train, parallel)
    run = Run(directory, config, train, test, bsnn, trainer, lock)
    if write:
        remove_unfinished_writes(run.checkpoint)
    state = load_checkpoint(run.checkpoint)
    recorded = state.get("run", {})
    if recorded and recorded.get("config") != config.fingerprint():
        differs = "the same parts, other options" if recorded.get("label") == config.label else recorded.get("label")
        raise CheckpointError(
            f"checkpoint {run.checkpoint} belongs to another configuration ({differs}) than its folder's "
            f"{CONFIG_FILE} ({config.label})"
        )
    try:
        trainer.load_state_dict(state)
    except (KeyError, RuntimeError, TypeError, ValueError) as error:  # parts, shapes or values not the run's
        reason = " ".join(line.strip() for line in str(error).strip().splitlines()[:2])
        raise CheckpointError(f"checkpoint {run.checkpoint} does not match {CONFIG_FILE}: {reason}") from None
    if write:
        _settle_metrics(directory / METRICS_FILE, trainer.epoch, state.get("metrics"))
    return run


def _records(path: Path) -> list:
    """The JSON values of the lines of ``path`` that are whole (none where it is missing)."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_bytes().decode(errors="replace").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def _settle_metrics(path: Path, epoch: int, last: dict | None) -> None:
    """``metrics.jsonl`` with one line per epoch up to ``epoch``, the checkpoint's: lines a killed
    run wrote after its last checkpoint (or half wrote) dropped, the checkpoint's own line
    (``last``) restored where a kill lost it."""
    records: dict[int, dict] = {}
    for record in _records(path):
        if isinstance(record, dict) and isinstance(record.get("epoch"), int) and record["epoch"] <= epoch:
            records.setdefault(record["epoch"], record)
    if last is not None and last.get("epoch") == epoch:
        records.setdefault(epoch, last)
    text = "".join(json.dumps(records[e]) + "\n" for e in sorted(records))
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
