"""A run's configuration: the options of ``[data]``, ``[model]`` and ``[training]`` (each defined once
below) and the parts ``[prior]``, ``[guide]``, ``[likelihood]`` and ``[optim]`` (a part's name and its
options, see ``components``), with ``plugins`` that register parts of one's own.

A configuration is resolved in one place, ``ExperimentConfig``: the named rule
(``training.rule``) gives the parts, explicit parts win over it, every value is checked, defaults
(the data set's among them) are filled in, and ``to_dict`` is what the run
records in ``config.json``, which reads back as a configuration that rebuilds the run.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Mapping

import torch

from ..data.registry import DATASETS, SPECS
from ..inference.rules import RULES, preset
from ..inference.training import ENGINES, SCHEDULES
from ..models import CONV_PRESETS
from ..models.surrogates import SURROGATES
from .components import KINDS, LOSSES, REGISTRY, load_plugins, overlay, part, part_flags, resolve_part
from .options import ConfigError, Option, at_least, closest, non_negative, positive

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

NETWORKS = ("mlp", "conv")
# what torch's generators take (twice the data seed)
SEED = {"check": lambda v: 0 <= v < 2**63, "expect": "in [0, 2**63)"}
LEARNING = ("local", "end-to-end")  # gradients within each layer (DECOLLE), or through all of them

SECTIONS: dict[str, tuple[Option, ...]] = {
    "data": (
        Option("dataset", str, "two-moons", "data set", choices=DATASETS, flags=("--dataset",)),
        Option("data_dir", str, None, "folder holding the recorded data sets", optional=True, flags=("--data-dir",)),
        Option("steps", int, None, "time steps T (default: the data set's)", optional=True, **at_least(1),
               flags=("--steps",)),
        Option(
            "burn_in", int, None, "steps before the loss counts (default: the data set's)", optional=True,
            **at_least(0), flags=("--burn-in",),
        ),
        Option("step_ms", float, None, "event sets: milliseconds per step", optional=True, **positive(),
               flags=("--step-ms",)),
        Option("downsample", int, None, "event sets: spatial factor", optional=True, **at_least(1),
               flags=("--downsample",)),
        Option("train_size", int, 200, "two moons: training points", **at_least(2), flags=("--train-size",)),
        Option("test_size", int, 1000, "two moons: held-out test points", **at_least(2), flags=("--test-size",)),
        Option("data_seed", int, 0, "seed of the generated data and of splits", **SEED, flags=("--data-seed",)),
    ),
    "model": (
        Option("network", str, "mlp", "dense (mlp) or convolutional network", choices=NETWORKS, flags=("--model",)),
        Option("hidden", int, [256, 256], "mlp: hidden layer widths", many=True, min_items=1, **at_least(1),
               flags=("--hidden",)),
        Option("conv_preset", str, "small", "conv: layers (small: 16, 32 ch; paper: 64, 128, 128 ch)",
               choices=tuple(sorted(CONV_PRESETS)), flags=("--conv-preset",)),
        Option("kernel_size", int, None, "conv: odd kernel size (default: the preset's)", optional=True,
               check=lambda v: v >= 1 and v % 2 == 1, expect="an odd integer >= 1 ('same' padding)",
               flags=("--kernel-size",)),
        Option("dense", int, [], "conv: dense layer widths after the convolutions", many=True, **at_least(1),
               flags=("--dense",)),
        Option("learning", str, "local", "local: each layer from its own readout (DECOLLE); end-to-end: through all",
               choices=LEARNING, flags=("--learning",)),
        Option("surrogate", str, "boxcar", "surrogate gradient of the spike", choices=tuple(SURROGATES),
               flags=("--surrogate",)),
        Option("tau_mem", float, None, "membrane time constant in steps (default: the data set's)", optional=True,
               **positive(), flags=("--tau-mem",)),
        Option("tau_syn", float, None, "synaptic time constant in steps (default: the data set's)", optional=True,
               **positive(), flags=("--tau-syn",)),
        Option("tau_ref", float, None, "refractory time constant in steps (default: the data set's)", optional=True,
               **positive(), flags=("--tau-ref",)),
        Option("readout_gain", float, None, "scale of the readout logits (default: the data set's)", optional=True,
               **positive(), flags=("--readout-gain",)),
    ),
    "training": (
        Option("rule", str, "bayes", "preset of prior, guide, likelihood and optimiser", choices=RULES,
               flags=("--rule",)),
        Option("loss", str, "auto", "the ELBO (auto: the guide's)", choices=("auto", *LOSSES), flags=("--loss",)),
        Option("epochs", int, 60, "epochs", **at_least(1), flags=("--epochs",)),
        Option("batch_size", int, 40, "sequences per minibatch", **at_least(1), flags=("--batch-size",)),
        Option("schedule", str, "sequence",
               "sequence: a step per minibatch; online: a step per time step (the paper's)",
               choices=SCHEDULES, flags=("--schedule",)),
        Option("seed", int, 0, "seed of the run", **SEED, flags=("--seed",)),
        Option("kl_weight", float, 1.0, "KL weight beta", **non_negative(), flags=("--kl-weight",)),
        Option("particles", int, 1, "ELBO particles per step (one batched draw)", **at_least(1),
               flags=("--particles",)),
        Option("samples", int, 10, "ensemble size K for the summary", **at_least(1), flags=("--samples",)),
        Option("engine", str, "auto", "svi, direct, fused, or auto (the fastest that runs the parts)", choices=ENGINES,
               flags=("--engine",)),
        Option("device", str, "cpu", "cpu, cuda or cuda:N", flags=("--device",)),
    ),
}
def _option(section: str, name: str) -> Option:
    return next(option for option in SECTIONS[section] if option.name == name)


PLUGINS = Option("plugins", str, [], "modules that register parts of one's own", many=True, flags=("--plugin",))
MAY_CHANGE = ("epochs", "device", "samples")  # [training] options that may differ between a run's sessions
FLAT_NAMES = {option.name: section for section, options in SECTIONS.items() for option in options}


class ExperimentConfig:
    """Everything that defines a run, resolved and checked: ``config.<option>`` for the options of
    the data, model and training sections, ``config.prior`` / ``guide`` / ``likelihood`` / ``optim``
    (the resolved part: its name and every option), ``config.plugins``.

    ``ExperimentConfig(values)`` takes the sectioned form of a configuration file; keyword
    arguments take single options by name (``ExperimentConfig(rule="ste", hidden=[48])``), as do
    the flat ``config.json`` files of version 0.1.  A bad value raises a one-line ConfigError.
    """

    def __init__(self, values: Mapping[str, Any] | None = None, /, **flat: Any):
        raw = sectioned(values or {})
        for section, settings in sectioned(flat, flat=True).items():
            raw[section] = settings if section == "plugins" else {**raw.get(section, {}), **settings}
        self._resolve(raw)

    def _resolve(self, raw: dict[str, Any]) -> None:
        unknown = sorted(set(raw) - {"plugins", *SECTIONS, *KINDS})
        if unknown:
            known = ["plugins", *SECTIONS, *KINDS]
            raise ConfigError(
                f"unknown section {unknown[0]!r}{closest(unknown[0], known)}; expected {', '.join(known)}"
            )
        self.plugins = PLUGINS.parse(raw.get("plugins", []), "plugins")
        load_plugins(self.plugins)
        model = raw.get("model", {})
        if isinstance(model, dict) and model.get("learning") == "end-to-end-output":  # version 0.1's spelling
            raw["model"] = {**model, "learning": "end-to-end"}
            if raw.get("likelihood", {}).get("name", "decolle") == "decolle":  # last-readout reads only the last
                raw["likelihood"] = overlay({"name": "decolle"}, {"readouts": "last", **raw.get("likelihood", {})})
        for section, options in SECTIONS.items():
            settings = raw.get(section, {})
            if not isinstance(settings, dict):
                raise ConfigError(f"[{section}] must be a table of options, got {settings!r}")
            names = [option.name for option in options]
            for key in settings:
                if key not in names:
                    elsewhere = f" (it is {FLAT_NAMES[key]}.{key})" if key in FLAT_NAMES else closest(key, names)
                    raise ConfigError(
                        f"{section}.{key}: unknown option{elsewhere}; [{section}] takes {', '.join(names)}"
                    )
            for option in options:
                where = f"{section}.{option.name}"
                value = option.parse(settings[option.name], where) if option.name in settings else option.default
                setattr(self, option.name, list(value) if option.many else value)
        presets = preset(self.rule, "training.rule")
        for kind in KINDS:
            spec = raw.get(kind, {})
            if not isinstance(spec, dict):
                raise ConfigError(f"[{kind}] must be a table (name and options), got {spec!r}")
            setattr(self, kind, resolve_part(kind, overlay(presets.get(kind), spec), kind))
        self._defaults_of_the_data_set()
        self._check()
        used = {part(kind, getattr(self, kind)).module for kind in KINDS}
        self.plugins = sorted(set(self.plugins) | {module for module in used if not module.startswith("bisnn_pyro.")})

    def _defaults_of_the_data_set(self) -> None:
        """Fill the options left to the data set (recorded as such: none in ``to_dict``, so that a
        configuration read back and given another data set takes that set's defaults)."""
        spec = SPECS[self.dataset]
        defaults = {
            "steps": spec.steps,
            "burn_in": spec.burn_in,
            "readout_gain": spec.readout_gain,
            **dict(zip(("tau_mem", "tau_syn", "tau_ref"), spec.time_constants)),
        }
        self._of_the_data_set = {name for name in defaults if getattr(self, name) is None}
        for name in self._of_the_data_set:
            setattr(self, name, defaults[name])

    def _check(self) -> None:
        spec = SPECS[self.dataset]
        if "data_dir" not in spec.uses:
            self.data_dir = None  # where data sets live, not a setting: one file serves every set
        for option in SECTIONS["data"]:
            if option.name not in (*spec.uses, "dataset") and getattr(self, option.name) != option.default:
                raise ConfigError(
                    f"data.{option.name}: {self.dataset} does not use it (its options: {', '.join(spec.uses)})"
                )
        checks = [
            (self.burn_in < self.steps, f"data.burn_in must lie in [0, steps={self.steps}), got {self.burn_in}"),
            (
                (not self.dense and self.kernel_size is None) or self.network == "conv",
                "model.dense and model.kernel_size shape a conv network (--model conv); an mlp takes model.hidden",
            ),
            (
                self.network == "mlp" or self.hidden == _option("model", "hidden").default,
                "model.hidden shapes an mlp; a conv network takes model.conv_preset, model.kernel_size and model.dense",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        try:
            check_device(self.device)
        except ConfigError as error:
            raise ConfigError(f"training.device: {error}") from None

    def fingerprint(self) -> str:
        """A hash of everything that shapes the run's model and training (not the epochs, which a
        resume may raise, nor the device or ensemble size of an evaluation)."""
        values = self.to_dict()
        for name in MAY_CHANGE:
            values["training"].pop(name)
        return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]

    def validate(self) -> "ExperimentConfig":
        """Itself: a configuration is checked when it is made."""
        return self

    @property
    def parts(self) -> dict[str, dict[str, Any]]:
        """The resolved parts by kind."""
        return {kind: dict(getattr(self, kind)) for kind in KINDS}

    @property
    def label(self) -> str:
        """The rule's name where the parts are the rule's, else the parts' names."""
        presets = preset(self.rule)
        if all(spec["name"] == getattr(self, kind)["name"] for kind, spec in presets.items()):
            return self.rule
        return " + ".join(getattr(self, kind)["name"] for kind in KINDS)

    def replaced(self, **options: Any) -> "ExperimentConfig":
        """This configuration with the options named (by name, as keyword arguments) changed."""
        return ExperimentConfig(merge(self.to_dict(), sectioned(options, flat=True)))

    def to_dict(self) -> dict[str, Any]:
        """The configuration as ``config.json`` records it: every section, resolved."""
        values: dict[str, Any] = {"plugins": list(self.plugins)}
        for section, options in SECTIONS.items():
            values[section] = {
                option.name: None if option.name in self._of_the_data_set else getattr(self, option.name)
                for option in options
            }
        values.update(self.parts)
        return values

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], *, saved: bool = False) -> "ExperimentConfig":
        """The configuration ``values`` name, sectioned or flat; ``saved``: read from a run folder,
        where version 0.1 recorded every rule option in its flat form, used or not (those the
        rule's parts do not take are dropped)."""
        if not isinstance(values, Mapping):
            raise ConfigError(f"a configuration must be a table of sections, got {type(values).__name__}")
        if saved and not is_sectioned(values):
            values = _drop_unused_rule_options(dict(values))
        return cls(values) if is_sectioned(values) else cls(**values)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ExperimentConfig) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"ExperimentConfig({self.to_dict()!r})"


def merge(earlier: Mapping[str, Any], later: Mapping[str, Any]) -> dict[str, Any]:
    """Two sectioned configurations, ``later`` winning: its options replace the earlier ones; a rule
    it names replaces the parts named earlier (a rule is a preset of parts); a part it names other
    than the earlier one drops the earlier part's options; plugins add up."""
    merged = {key: dict(value) if isinstance(value, Mapping) else value for key, value in earlier.items()}
    if "rule" in later.get("training", {}):
        for kind in KINDS:
            merged.pop(kind, None)
    for key, value in later.items():
        if key == "plugins":
            merged["plugins"] = [*merged.get("plugins", []), *value]
        elif key in KINDS and isinstance(value, Mapping):
            merged[key] = overlay(merged.get(key), dict(value))
        elif isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def is_sectioned(values: Mapping[str, Any]) -> bool:
    """Whether ``values`` is in sections (today's form) rather than flat (version 0.1's)."""
    return any(isinstance(value, Mapping) for value in values.values()) or not values


def sectioned(values: Mapping[str, Any], flat: bool = False) -> dict[str, Any]:
    """``values`` as sections: a sectioned mapping is copied; a flat one (``flat``, or version
    0.1's config.json) has each key put in its section (``lr`` -> optim.lr, ``model`` -> model.network)."""
    if not flat and is_sectioned(values):
        return {key: dict(value) if isinstance(value, Mapping) else value for key, value in values.items()}
    shortcuts = part_flags()
    raw: dict[str, Any] = {}
    for key, value in values.items():
        if key in ("plugins", "plugin"):
            raw["plugins"] = value
        elif key in (*SECTIONS, *KINDS) and isinstance(value, Mapping):
            raw[key] = {**raw.get(key, {}), **value}
        elif key in (*SECTIONS, *KINDS) and key not in ("model", "likelihood"):
            raise ConfigError(f"[{key}] must be a table of options, got {value!r}")
        elif key == "model":
            raw.setdefault("model", {})["network"] = value
        elif key == "likelihood":
            raw.setdefault("likelihood", {})["name"] = value
        elif key in FLAT_NAMES:
            raw.setdefault(FLAT_NAMES[key], {})[key] = value
        elif key in shortcuts:
            kind, option = shortcuts[key]
            if value is not None:
                raw.setdefault(kind, {})[option] = value
        else:
            known = [*FLAT_NAMES, *shortcuts, "model", "likelihood", "plugins"]
            raise ConfigError(f"unknown configuration key {key!r}{closest(key, known)}")
    return raw


def _drop_unused_rule_options(values: dict[str, Any]) -> dict[str, Any]:
    """A flat configuration of version 0.1 without the rule options its rule's parts do not take."""
    parts = preset(values.get("rule", "bayes")) if values.get("rule", "bayes") in RULES else {}
    shortcuts = part_flags()
    kept = {}
    for key, value in values.items():
        if key in shortcuts:
            kind, option = shortcuts[key]
            spec = parts.get(kind)
            if spec is None or not any(o.name == option for o in REGISTRY.get(kind, spec["name"], kind).options):
                continue
        kept[key] = value
    return kept


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


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A configuration file: TOML, or JSON (a run's ``config.json``), by its suffix."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"no configuration file {path}") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path} is not UTF-8 text (byte {error.start})") from None
    except OSError as error:
        raise ConfigError(f"cannot read configuration file {path}: {error.strerror}") from None
    if path.suffix == ".json":
        try:
            values = json.loads(text)
        except json.JSONDecodeError as error:
            raise ConfigError(f"{path} is not valid JSON ({error.msg} at line {error.lineno})") from None
    else:
        try:
            values = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"{path} is not valid TOML: {str(error).splitlines()[0]}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path} must hold a table of sections")
    return values
