"""Parts by name: priors, guides, likelihoods and optimisers a configuration can name, the library's
and the user's own, with their options.

A part is a build function registered under a kind and a name with its options::

    from bisnn_pyro.config import Option, register

    @register("prior", "dale", Option("a", float, 0.5, "Beta a per input neuron", check=lambda v: v > 0, expect="> 0"))
    def dale(a):
        return DalePrior(a, a)

The build function takes the options by name and returns, by kind: a prior (a
``Prior``), a guide builder (model -> guide module; it may also take
``seed``), a likelihood (it also takes ``num_data`` and ``burn_in``) or a ``pyro.optim`` optimiser.
A guide says which loss suits it (``loss=``: ``mean-field``, ``trace`` or ``trace-graph``) and
whether its posterior is a point mass (``point_estimate=True``: its ensemble is its MAP).

User modules register parts when imported: name them with ``--plugin MODULE`` (or ``plugins`` in
the configuration file), or publish them as an entry point of the ``bisnn_pyro.components`` group,
which is imported when a name is first looked up.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

from .options import ConfigError, Option, closest

KINDS = ("prior", "guide", "likelihood", "optim")
LOSSES = ("mean-field", "trace", "trace-graph")
ENTRY_POINTS = "bisnn_pyro.components"


@dataclass(frozen=True)
class Component:
    """A part a configuration names: its kind, name, build function and options."""

    kind: str
    name: str
    build: Callable[..., Any]
    options: tuple[Option, ...] = ()
    loss: str = "mean-field"  # guides: the loss that suits them
    point_estimate: bool = False  # guides: a point-mass posterior
    module: str = ""  # where it was defined (recorded so that a run reopens with its plugins)

    @property
    def help(self) -> str:
        """The first paragraph of the builder's docstring, on one line (what ``parts`` prints)."""
        doc = inspect.getdoc(self.build) or ""
        return doc.split("\n\n")[0].replace("\n", " ")

    def option(self, key: str, where: str) -> Option:
        """The option named ``key``; a ``ConfigError`` naming ``where`` and the options there are
        when there is none."""
        for option in self.options:
            if option.name == key:
                return option
        names = [option.name for option in self.options]
        takes = f"its options: {', '.join(names)}" if names else "it takes no options"
        raise ConfigError(
            f"{where}.{key}: {self.kind} {self.name!r} has no option {key!r}{closest(key, names)}; {takes}"
        )

    def create(self, options: dict[str, Any], **context: Any) -> Any:
        """Build the part from its resolved ``options``, handing the build function whichever of
        ``context`` (seed, num_data, burn_in) it names."""
        accepted = inspect.signature(self.build).parameters
        extra = {key: value for key, value in context.items() if key in accepted}
        return self.build(**options, **extra)


@dataclass
class Registry:
    """Every registered part by kind and name (entry points are imported on the first lookup)."""

    parts: dict[str, dict[str, Component]] = field(default_factory=lambda: {kind: {} for kind in KINDS})
    entry_points_loaded: bool = False

    def add(self, component: Component) -> None:
        if component.kind not in KINDS:
            raise ValueError(f"unknown kind of part {component.kind!r}; expected one of {', '.join(KINDS)}")
        if component.kind == "guide" and component.loss not in LOSSES:
            raise ValueError(f"a guide's loss must be one of {', '.join(LOSSES)}, got {component.loss!r}")
        known = self.parts[component.kind].get(component.name)
        if known is not None and known.module != component.module:
            raise ValueError(
                f"{component.kind} {component.name!r} is registered twice: in {known.module} and in {component.module}"
            )
        for option in component.options:
            for flag in option.flags:
                owner = self.flag_owner(flag)
                if owner not in (None, (component.kind, option.name)):
                    raise ValueError(
                        f"{component.kind} {component.name!r}: flag {flag} already sets {'.'.join(owner)}; "
                        f"reach {component.kind}.{option.name} as --{component.kind}.{option.name}"
                    )
        self.parts[component.kind][component.name] = component

    def flag_owner(self, flag: str) -> tuple[str, str] | None:
        """(kind, option) that the short flag ``flag`` sets among the parts registered so far."""
        for kind, parts in self.parts.items():
            for component in parts.values():
                if any(flag in option.flags for option in component.options):
                    return kind, next(o.name for o in component.options if flag in o.flags)
        return None

    def names(self, kind: str) -> list[str]:
        self._load_entry_points()
        return sorted(self.parts[kind])

    def get(self, kind: str, name: str, where: str) -> Component:
        self._load_entry_points()
        found = self.parts[kind].get(name)
        if found is None:
            known = sorted(self.parts[kind])
            raise ConfigError(
                f"{where}: unknown {kind} {name!r}{closest(name, known)}; known: {', '.join(known)} "
                "(a part of your own needs its module: --plugin MODULE)"
            )
        return found

    def _load_entry_points(self) -> None:
        if self.entry_points_loaded:
            return
        self.entry_points_loaded = True
        for entry in importlib.metadata.entry_points(group=ENTRY_POINTS):
            try:
                entry.load()
            except Exception as error:  # a broken plugin: one line naming it
                raise ConfigError(
                    f"entry point {entry.name} ({entry.value}) of {ENTRY_POINTS} failed to load: {error}"
                ) from error


REGISTRY = Registry()


def register(kind: str, name: str, *options: Option, loss: str = "mean-field", point_estimate: bool = False):
    """Decorator: register ``build`` as the part ``name`` of ``kind`` (prior, guide, likelihood or
    optim) with its ``options``."""

    def decorate(build: Callable[..., Any]) -> Callable[..., Any]:
        REGISTRY.add(Component(kind, name, build, tuple(options), loss, point_estimate, build.__module__))
        return build

    return decorate


def load_plugins(modules: list[str]) -> None:
    """Import each plugin module (which registers its parts); one line naming a module that fails."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as error:
            if error.name and error.name != module and not module.startswith(f"{error.name}."):
                raise ConfigError(
                    f"plugin {module!r} needs {error.name!r}, which cannot be imported ({error})"
                ) from None
            raise ConfigError(
                f"plugin {module!r} cannot be imported ({error}); install it or put it on PYTHONPATH"
            ) from None
        except Exception as error:
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ConfigError(f"plugin {module!r} failed while importing: {reason}") from None


def resolve_part(kind: str, spec: dict[str, Any], where: str) -> dict[str, Any]:
    """``spec`` ({"name": ..., option: value, ...}) checked against its part's options and
    completed with their defaults."""
    if "name" not in spec:
        raise ConfigError(f"{where} names no {kind}: give {where}.name (one of {', '.join(REGISTRY.names(kind))})")
    name = spec["name"]
    if not isinstance(name, str):
        raise ConfigError(f"{where}.name must be a string, got {name!r}")
    component = REGISTRY.get(kind, name, f"{where}.name")
    resolved: dict[str, Any] = {"name": str(name)}  # a plain string, whatever it was read from
    for key, value in spec.items():
        if key != "name":
            resolved[key] = component.option(key, where).parse(value, f"{where}.{key}")
    for option in component.options:
        resolved.setdefault(option.name, option.default)
    return resolved


def overlay(base: dict[str, Any] | None, explicit: dict[str, Any] | None) -> dict[str, Any]:
    """A part's spec from a preset ``base`` and ``explicit`` settings, which win: naming another
    part than the preset's drops the preset's options for it."""
    base, explicit = dict(base or {}), dict(explicit or {})
    if "name" in explicit and explicit["name"] != base.get("name"):
        return explicit
    return {**base, **explicit}


def part(kind: str, resolved: dict[str, Any]) -> Component:
    """The component a resolved spec names."""
    return REGISTRY.get(kind, resolved["name"], kind)


def part_flags() -> dict[str, tuple[str, str]]:
    """The short command-line flags of part options ("--prior-p") as keys of their own
    ("prior_p", the keyword of ``make_rule``) -> (kind, option name)."""
    flags: dict[str, tuple[str, str]] = {}
    for kind in KINDS:
        for name in REGISTRY.names(kind):
            for option in REGISTRY.parts[kind][name].options:
                for flag in option.flags:
                    flags[flag.lstrip("-").replace("-", "_")] = (kind, option.name)
    return flags
