"""A study file: a base configuration, the arms that vary it, and the seeds each arm runs with.

.. code-block:: toml

    seeds = 5                          # or a list: [0, 1, 2]
    base = "run.toml"                  # a run configuration (a path, relative to this file) ...
    [base_config.training]             # ... and/or its sections written here (they win)
    epochs = 30

    ensemble_sizes = [1, 3, 30]        # also score the ensemble of each of these many draws

    [[arms]]                           # named arms, each a set of options (default: one arm)
    name = "bayes"
    set = { "training.rule" = "bayes" }
    seeds = 3                          # this arm's own seeds (default: the study's)
    [[arms]]
    name = "ste"
    set = { "training.rule" = "ste" }

    [grid]                             # every combination of these values, within each arm
    "training.kl_weight" = [0.5, 1.0]

    [zip]                              # lists of one length, varied together
    "data.steps" = [50, 100]
    "data.burn_in" = [5, 10]

An arm is a named arm x a grid combination x a zip row; a run is an arm x a seed (the seed is
``training.seed``; the data's seed stays the base's, so arms share their data seed by seed and
compare in pairs).  Options are named as ``--set`` names them (``section.option``), and layer
onto the base as ``--set`` does (``merge``).  Every run's
configuration is resolved and checked when the study is read: a bad one is a one-line
``ConfigError`` naming its arm.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ..config.run import ExperimentConfig, merge, read_config_file, sectioned
from ..errors import ConfigError

KEYS = ("seeds", "base", "base_config", "ensemble_sizes", "arms", "grid", "zip")


@dataclass(frozen=True)
class Arm:
    """A named setting of the study: the options it sets over the base, by ``section.option``."""

    name: str
    options: dict[str, Any]
    seeds: tuple[int, ...] | None = None  # None: the study's


@dataclass(frozen=True)
class StudyRun:
    """One run of a study: its arm, its seed, its resolved configuration and its folder (relative)."""

    arm: str
    seed: int
    config: ExperimentConfig
    folder: str


@dataclass(frozen=True)
class StudySpec:
    base: dict[str, Any]
    arms: tuple[Arm, ...]
    seeds: tuple[int, ...]
    ensemble_sizes: tuple[int, ...] = ()

    def runs(self) -> list[StudyRun]:
        """Every arm x seed, resolved and checked."""
        folders: dict[str, str] = {}
        for arm in self.arms:
            folder = _folder_name(arm.name)
            if folder in folders:
                other = folders[folder]
                raise ConfigError(
                    f"arm {arm.name!r} appears twice (does a grid or zip list repeat a value?)" if other == arm.name
                    else f"arms {other!r} and {arm.name!r} would share the folder {folder!r}; rename one"
                )
            folders[folder] = arm.name
        runs = []
        for arm in self.arms:
            for seed in arm.seeds or self.seeds:
                layer = _layer({**arm.options, "training.seed": seed}, f"arm {arm.name!r}")
                try:
                    config = ExperimentConfig(merge(self.base, layer))
                except ConfigError as error:
                    raise ConfigError(f"arm {arm.name!r}, seed {seed}: {error}") from None
                runs.append(StudyRun(arm.name, seed, config, f"{_folder_name(arm.name)}/seed-{seed}"))
        return runs


def read_study(path: str | Path) -> StudySpec:
    """The study that the TOML file ``path`` describes (one-line ConfigError for anything wrong)."""
    path = Path(path)
    values = read_config_file(path)
    unknown = sorted(set(values) - set(KEYS))
    if unknown:
        raise ConfigError(f"{path}: unknown key {unknown[0]!r}; a study file takes {', '.join(KEYS)}")
    base: dict[str, Any] = {}
    if "base" in values:
        if not isinstance(values["base"], str):
            raise ConfigError(f"{path}: base must name a configuration file, got {values['base']!r}")
        base = sectioned(read_config_file(path.parent / values["base"]))
    if "base_config" in values:
        base = merge(base, sectioned(_table(values["base_config"], "base_config", path)))
    sizes = values.get("ensemble_sizes", [])
    if not isinstance(sizes, list) or not all(isinstance(k, int) and not isinstance(k, bool) and k >= 1 for k in sizes):
        raise ConfigError(f"{path}: ensemble_sizes must be a list of draw counts >= 1, got {sizes!r}")
    seeds = _seeds(values.get("seeds", [0]), path)
    return StudySpec(base, tuple(_arms(values, path)), seeds, tuple(sorted(set(sizes))))


def _seeds(value: Any, path: Path | str) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return tuple(range(value))
    if isinstance(value, list) and value and all(isinstance(s, int) and not isinstance(s, bool) for s in value):
        if not all(0 <= s < 2**63 for s in value):
            raise ConfigError(f"{path}: seeds must lie in [0, 2**63), got {value}")
        if len(set(value)) != len(value):
            raise ConfigError(f"{path}: seeds repeat: {value}")
        return tuple(value)
    raise ConfigError(f"{path}: seeds must be a count >= 1 or a list of integers, got {value!r}")


def _arms(values: Mapping[str, Any], path: Path) -> list[Arm]:
    named = [Arm("", {})]
    if "arms" in values:
        if not isinstance(values["arms"], list) or not values["arms"]:
            raise ConfigError(f"{path}: arms must be a list of tables ([[arms]] with name and set)")
        named = [_named_arm(arm, path) for arm in values["arms"]]
        names = [arm.name for arm in named]
        if len(set(names)) != len(names):
            raise ConfigError(f"{path}: arm names repeat: {names}")
    grid = _table(values.get("grid", {}), "grid", path)
    for key, options in grid.items():
        if not isinstance(options, list) or not options:
            raise ConfigError(f"{path}: grid.{key} must be a non-empty list of values, got {options!r}")
    rows = _zip_rows(_table(values.get("zip", {}), "zip", path), path)
    arms = []
    for arm in named:
        for combination in itertools.product(*grid.values()):
            for row in rows:
                varied = {**dict(zip(grid, combination)), **row}
                label = "-".join(f"{key.rpartition('.')[2]}={value}" for key, value in varied.items())
                name = "-".join(part for part in (arm.name, label) if part) or "base"
                arms.append(Arm(name, {**arm.options, **varied}, arm.seeds))
    return arms


def _named_arm(arm: Any, path: Path) -> Arm:
    if not isinstance(arm, dict) or not isinstance(arm.get("name"), str) or not arm["name"]:
        raise ConfigError(f"{path}: each [[arms]] needs a name, got {arm!r}")
    extra = sorted(set(arm) - {"name", "set", "seeds"})
    if extra:
        raise ConfigError(f"{path}: arm {arm['name']!r}: unknown key {extra[0]!r}; an arm takes name, set and seeds")
    seeds = _seeds(arm["seeds"], f"{path}: arm {arm['name']!r}") if "seeds" in arm else None
    return Arm(arm["name"], dict(_table(arm.get("set", {}), f"arm {arm['name']!r} set", path)), seeds)


def _zip_rows(table: Mapping[str, Any], path: Path) -> list[dict[str, Any]]:
    if not table:
        return [{}]
    lengths = {key: len(value) if isinstance(value, list) else -1 for key, value in table.items()}
    if min(lengths.values()) < 1 or len(set(lengths.values())) != 1:
        raise ConfigError(f"{path}: zip takes non-empty lists of one length, got lengths {lengths}")
    return [dict(zip(table, values)) for values in zip(*table.values())]


def _table(value: Any, what: str, path: Path) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: {what} must be a table, got {value!r}")
    return value


def _layer(options: Mapping[str, Any], where: str) -> dict[str, Any]:
    """``section.option`` settings as a sectioned configuration layer."""
    layer: dict[str, Any] = {}
    for key, value in options.items():
        section, dot, name = key.partition(".")
        if not dot or not name:
            raise ConfigError(f"{where}: expected SECTION.OPTION (e.g. training.epochs), got {key!r}")
        layer.setdefault(section, {})[name] = value
    return layer


def _folder_name(arm: str) -> str:
    """The arm's name as a folder name (letters, digits, '.', '-', '_', '=')."""
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", arm)
