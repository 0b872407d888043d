"""Runs: a configuration, the data it names, the model and rule it builds, and its folder on disk.

A run folder is self-contained: ``config.json`` (everything needed to rebuild the model),
``checkpoint.pt`` (written atomically after every epoch) and ``metrics.jsonl`` (one line per epoch).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyro

from .analysis.metrics import summary
from .analysis.posterior import posterior_diagnostics
import torch
from torch.utils.data import DataLoader

from .data import SpikeDataset
from .data.events import DataError
from .data.registry import DATASETS, SPECS, load_dataset
from .inference import BayesianSNN, Trainer, make_rule
from .inference.checkpoint import CheckpointError
from .inference.predict import check_mode, point_weights
from .inference.rules import OPTION_DEFAULTS, RULE_OPTIONS, RULES, rule_options
from .inference.sites import CompositionError
from .inference.training import ENGINES, SCHEDULES
from .models import CONV_PRESETS, ConvSpikingNet, LIFParameters, SpikingMLP
from .models.likelihoods import LIKELIHOODS, LastReadoutCategorical, ReadoutCategorical

MODELS = ("mlp", "conv")
LEARNING = ("local", "end-to-end", "end-to-end-output")  # gradients within each layer, or through all
CONFIG_FILE, CHECKPOINT_FILE, METRICS_FILE = "config.json", "checkpoint.pt", "metrics.jsonl"


class ConfigError(ValueError):
    """A configuration value is out of range or unknown."""


@dataclass
class ExperimentConfig:
    """Everything that defines a run; the defaults train Bayes-BiSNN on two moons in about 30 s."""

    dataset: str = "two-moons"
    rule: str = "bayes"
    epochs: int = 60
    batch_size: int = 40
    schedule: str = "sequence"
    seed: int = 0
    lr: float | None = None
    # the rule's options (None: the rule's default where it uses the option, absent where it does not)
    temperature: float | None = None
    prior_p: float | None = None
    prior_scale: float | None = None
    init_scale: float | None = None
    momentum: float | None = None
    kl_weight: float = 1.0
    likelihood: str = "decolle"  # decolle (every step of every readout) or last-readout (time-averaged)
    samples: int = 10
    particles: int = 1  # ELBO particles per step, drawn as one batch of weights
    hidden: list[int] = field(default_factory=lambda: [256, 256])
    model: str = "mlp"
    conv_preset: str = "small"
    dense: list[int] = field(default_factory=list)  # conv model: dense layers after the convolutions
    kernel_size: int | None = None  # conv model: odd kernel size; None: the preset's
    learning: str = "local"  # local (DECOLLE), end-to-end (all readouts), end-to-end-output (last readout)
    steps: int | None = None  # None: the data set's default (two moons: 100)
    burn_in: int | None = None  # None: the data set's default (two moons: 10)
    step_ms: float | None = None  # event sets: time per step; None: the data set's default
    downsample: int | None = None  # event sets: spatial factor; None: the data set's default
    data_dir: str | None = None
    surrogate: str = "boxcar"
    tau_mem: float | None = None  # LIF time constants in steps; None: the data set's default
    tau_syn: float | None = None  # (the paper's 10, 6 and 2; 4, 2 and 2 for the short digits-dvs)
    tau_ref: float | None = None
    readout_gain: float | None = None  # readout logits scale; None: the data set's default
    train_size: int = 200
    test_size: int = 1000
    data_seed: int = 0
    engine: str = "auto"  # svi, direct, fused, or auto (fused for bayes online, else direct where the rule allows it)
    device: str = "cpu"  # cpu, cuda, cuda:1, ...

    def __post_init__(self):
        spec = SPECS.get(self.dataset)
        if spec is not None:
            self.steps = spec.steps if self.steps is None else self.steps
            self.burn_in = spec.burn_in if self.burn_in is None else self.burn_in
            if self.readout_gain is None:
                self.readout_gain = spec.readout_gain
            for name, value in zip(("tau_mem", "tau_syn", "tau_ref"), spec.time_constants):
                if getattr(self, name) is None:
                    setattr(self, name, value)

    def validate(self) -> "ExperimentConfig":
        checks = [
            (self.dataset in DATASETS, f"unknown dataset {self.dataset!r}; expected one of {', '.join(DATASETS)}"),
            (self.model in MODELS, f"unknown model {self.model!r}; expected one of {', '.join(MODELS)}"),
            (
                self.conv_preset in CONV_PRESETS,
                f"unknown conv preset {self.conv_preset!r}; expected {sorted(CONV_PRESETS)}",
            ),
            (not self.dense or min(self.dense) >= 1, f"dense widths must be >= 1, got {self.dense}"),
            (
                self.kernel_size is None or (self.kernel_size >= 1 and self.kernel_size % 2 == 1),
                f"kernel size must be odd and >= 1 ('same' padding), got {self.kernel_size}",
            ),
            (
                (not self.dense and self.kernel_size is None) or self.model == "conv",
                "--dense and --kernel-size shape --model conv; an mlp takes --hidden",
            ),
            (self.learning in LEARNING, f"unknown learning {self.learning!r}; expected one of {', '.join(LEARNING)}"),
            (self.steps >= 1, f"number of time steps must be >= 1, got {self.steps}"),
            (min(self.tau_mem, self.tau_syn, self.tau_ref) > 0, "time constants must be > 0"),
            (self.step_ms is None or self.step_ms > 0, f"time step must be > 0 ms, got {self.step_ms}"),
            (self.downsample is None or self.downsample >= 1, f"downsample must be >= 1, got {self.downsample}"),
            (self.rule in RULES, f"unknown rule {self.rule!r}; expected one of {', '.join(RULES)}"),
            (
                self.likelihood in LIKELIHOODS,
                f"unknown likelihood {self.likelihood!r}; expected one of {', '.join(LIKELIHOODS)}",
            ),
            (self.schedule in SCHEDULES, f"unknown schedule {self.schedule!r}; expected one of {', '.join(SCHEDULES)}"),
            (self.engine in ENGINES, f"unknown engine {self.engine!r}; expected one of {', '.join(ENGINES)}"),
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.batch_size >= 1, f"batch size must be >= 1, got {self.batch_size}"),
            (self.lr is None or self.lr > 0, f"learning rate must be > 0, got {self.lr}"),
            (self.kl_weight >= 0, f"KL weight must be >= 0, got {self.kl_weight}"),
            (self.samples >= 1, f"number of samples K must be >= 1, got {self.samples}"),
            (self.particles >= 1, f"number of particles must be >= 1, got {self.particles}"),
            (len(self.hidden) >= 1 and min(self.hidden) >= 1, f"hidden widths must be >= 1, got {self.hidden}"),
            (0 <= self.burn_in < self.steps, f"burn-in must lie in [0, steps={self.steps}), got {self.burn_in}"),
            (self.train_size >= 2 and self.test_size >= 2, "train and test sizes must be >= 2"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        try:  # the rule's options as they take effect: defaults filled in, unused ones refused
            options = rule_options(self.rule, **{option: getattr(self, option) for option in OPTION_DEFAULTS})
        except ValueError as error:
            raise ConfigError(str(error)) from None
        for option, value in options.items():
            setattr(self, option, value)
        check_device(self.device)
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, saved: bool = False) -> "ExperimentConfig":
        """The configuration ``values`` name; ``saved``: read from a run folder, where versions
        before 0.2 recorded every rule option, used or not, so the unused ones are dropped."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown configuration keys {unknown}")
        if saved and values.get("rule") in RULE_OPTIONS:
            used = RULE_OPTIONS[values["rule"]]
            values = {k: v for k, v in values.items() if k not in OPTION_DEFAULTS or k in used}
        return cls(**values).validate()


def check_device(device: str) -> torch.device:
    """``device`` as a torch.device, or a ConfigError saying why it cannot be used here."""
    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"unknown device {device!r}; expected cpu, cuda or cuda:N") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {device!r} asked for, but this machine has no CUDA device torch can use")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise ConfigError(f"device {device!r}: only {torch.cuda.device_count()} CUDA devices are visible")
    elif parsed.type != "cpu":
        raise ConfigError(f"unsupported device {device!r}; expected cpu, cuda or cuda:N")
    return parsed


def load_data(config: ExperimentConfig):
    """(train, test) for the configured data set (see :func:`bisnn_pyro.data.registry.load_dataset`)."""
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
    if config.model == "conv":
        if len(frame_shape) != 3:
            raise ConfigError(f"--model conv needs image frames (P, H, W); {config.dataset} gives {frame_shape}")
        preset = dict(CONV_PRESETS[config.conv_preset])
        if config.kernel_size is not None:
            preset["kernel_size"] = config.kernel_size
        return ConvSpikingNet(frame_shape, num_classes=classes, dense=config.dense, **preset, **common)
    return SpikingMLP(frame_shape, config.hidden, classes, **common)


def build(config: ExperimentConfig, train) -> tuple[BayesianSNN, Trainer]:
    """The model of ``config`` with its rule's guide, and a trainer ready for epoch 1."""
    config.validate()
    pyro.set_rng_seed(config.seed)
    options = {option: getattr(config, option) for option in RULE_OPTIONS[config.rule]}
    rule = make_rule(config.rule, lr=config.lr, num_particles=config.particles, seed=config.seed, **options)
    example, size = _example(train)
    net = build_network(config, tuple(example.shape[2:]))
    if config.likelihood == LastReadoutCategorical.name:
        likelihood = LastReadoutCategorical(num_data=size, burn_in=config.burn_in)
    else:
        readouts = "last" if config.learning == "end-to-end-output" else "all"
        likelihood = ReadoutCategorical(num_data=size, burn_in=config.burn_in, readouts=readouts)
    try:
        bsnn = BayesianSNN(net, rule.prior, likelihood, rule.guide, kl_weight=config.kl_weight).setup(example)
    except CompositionError as error:
        raise ConfigError(str(error)) from None
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
        )
    except CompositionError as error:  # parts or an engine that cannot run this configuration say why
        raise ConfigError(f"--engine {config.engine}: {error}" if config.engine != "auto" else str(error)) from None
    return bsnn, trainer


@dataclass
class Run:
    """A run folder brought to life: its configuration, data, model and trainer."""

    directory: Path
    config: ExperimentConfig
    train: SpikeDataset
    test: SpikeDataset
    bsnn: BayesianSNN
    trainer: Trainer

    @property
    def checkpoint(self) -> Path:
        return self.directory / CHECKPOINT_FILE

    def fit(self, epochs: int | None = None, progress: bool | None = None) -> list[dict]:
        """Train, recording per epoch the loss and, for sign posteriors, each layer's diagnostics."""
        return self.trainer.fit(
            epochs or self.config.epochs,
            run_dir=self.directory,
            evaluate=lambda: {"posterior": posterior_diagnostics(self.bsnn)},
            progress=progress,
        )

    def evaluate(self, mode: str = "ensemble", samples: int | None = None) -> dict[str, Any]:
        """accuracy, nll, brier, ece of ``mode`` on the held-out test set."""
        samples = self.config.samples if samples is None else samples
        try:
            check_mode(mode, samples)
        except ValueError as error:
            raise ConfigError(str(error)) from None
        draw_probs, labels = self.test_predictions(mode, samples)
        used = samples if mode == "ensemble" else 1
        return {**summary(draw_probs.mean(0), labels), "mode": mode, "samples": used, "n": len(labels)}

    def test_predictions(self, mode: str, samples: int, batch_size: int = 200) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-draw class probabilities (K, N, C) on the test set and its labels; one set of draws
        serves every batch of a test set read from files."""
        if isinstance(self.test, SpikeDataset):
            return self.bsnn.predictive_probs(self.test.x, mode, samples), self.test.y
        example, _ = _example(self.test)
        if mode == "ensemble":
            weights = self.bsnn.draw_weights(example, samples)
        else:
            weights = {k: v.unsqueeze(0) for k, v in point_weights(self.bsnn.guide, mode).items()}
        probs, labels = [], []
        for xb, yb in DataLoader(self.test, batch_size=batch_size):
            probs.append(self.bsnn.likelihood.probs(self.bsnn.readouts_with(weights, xb)))
            labels.append(yb)
        return torch.cat(probs, dim=1), torch.cat(labels)


def create_run(config: ExperimentConfig, directory: str | Path) -> Run:
    """A new run in ``directory``; refuses a folder that already holds a checkpoint."""
    directory = Path(directory)
    if (directory / CHECKPOINT_FILE).exists():
        raise ConfigError(f"{directory} already holds a run; pass --resume to continue it or choose another --out")
    train, test = load_data(config.validate())
    bsnn, trainer = build(config, train)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / CONFIG_FILE).write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    (directory / METRICS_FILE).unlink(missing_ok=True)
    return Run(directory, config, train, test, bsnn, trainer)


def open_run(directory: str | Path, device: str | None = None) -> Run:
    """Rebuild a run from its folder and load its latest checkpoint (onto ``device`` if given,
    else the device it was trained on)."""
    directory = Path(directory)
    config_path = directory / CONFIG_FILE
    if not (directory / CHECKPOINT_FILE).is_file():
        raise CheckpointError(
            f"no checkpoint at {directory / CHECKPOINT_FILE}; train with `bisnn-pyro train --out {directory}` first"
        )
    try:
        values = json.loads(config_path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"no {CONFIG_FILE} in {directory}: not a bisnn-pyro run folder") from None
    except json.JSONDecodeError as error:
        raise ConfigError(f"{config_path} is not valid JSON ({error.msg} at line {error.lineno})") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{config_path} must hold a JSON object")
    if device is not None:
        values = {**values, "device": device}
    config = ExperimentConfig.from_dict(values, saved=True)
    train, test = load_data(config)
    bsnn, trainer = build(config, train)
    run = Run(directory, config, train, test, bsnn, trainer)
    try:
        trainer.resume(run.checkpoint)
    except (KeyError, RuntimeError) as error:
        reason = str(error).strip().splitlines()[0]
        raise CheckpointError(f"checkpoint {run.checkpoint} does not match {CONFIG_FILE}: {reason}") from None
    return run
