"""Options: one definition each (name, type, default, range, help), from which the configuration
file's schema, the command line's flags, validation and ``config.json`` are all derived."""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

from ..errors import ConfigError


class Text(str):
    """A value as typed on the command line: read as its option's type (in a file, a number
    written as a string is refused)."""


def closest(name: str, known: Iterable[str]) -> str:
    """' (did you mean X?)' for the known name closest to ``name``, or ''."""
    match = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


@dataclass(frozen=True)
class Option:
    """One option: ``kind`` is int, float, str or bool (``many``: a list of them, at least
    ``min_items``); ``optional``
    allows None (a default taken from elsewhere, said in ``help``); ``choices`` (names, or a
    function giving them), ``check`` and ``expect`` (the range in words) bound its values;
    ``flags`` are short command-line spellings beside ``--<section>.<name>``."""

    name: str
    kind: type
    default: Any
    help: str
    many: bool = False
    min_items: int = 0
    optional: bool = False
    choices: Sequence[str] | Callable[[], Sequence[str]] | None = None
    check: Callable[[Any], bool] | None = None
    expect: str = ""
    flags: tuple[str, ...] = ()

    def allowed(self) -> Sequence[str] | None:
        """The values the option takes, when it takes a fixed set (evaluated now: plugins add parts)."""
        return self.choices() if callable(self.choices) else self.choices

    def parse(self, value: Any, where: str) -> Any:
        """``value`` (from a file, or a string from the command line) as this option's type,
        checked; a one-line ``ConfigError`` naming ``where`` otherwise."""
        if value is None or (isinstance(value, Text) and value.lower() in ("none", "null") and self.optional):
            if self.optional:
                return None
            raise ConfigError(f"{where} needs a value ({self.describe()})")
        if self.many:
            items = [Text(item) for item in value.replace(",", " ").split()] if isinstance(value, Text) else value
            if not isinstance(items, (list, tuple)):
                raise ConfigError(f"{where} must be a list of {self.kind.__name__}, got {value!r}")
            if len(items) < self.min_items:
                raise ConfigError(
                    f"{where} needs at least {self.min_items} value{'s' if self.min_items > 1 else ''}, got {value!r}"
                )
            return [self._one(item, where) for item in items]
        return self._one(value, where)

    def _one(self, value: Any, where: str) -> Any:
        parsed = _convert(value, self.kind)
        if parsed is None:
            raise ConfigError(f"{where} must be {_article(self.kind)}, got {value!r}")
        allowed = self.allowed()
        if allowed is not None and parsed not in allowed:
            raise ConfigError(
                f"{where}: unknown value {parsed!r}{closest(str(parsed), allowed)}; "
                f"expected one of {', '.join(allowed)}"
            )
        if self.check is not None and not self.check(parsed):
            raise ConfigError(f"{where} must be {self._value_words()}, got {parsed!r}")
        return parsed

    def _value_words(self) -> str:
        """What one value must be, in words: 'an integer >= 1', 'a number in (0, 1)', ..."""
        if not self.expect:
            return _article(self.kind)
        if self.expect.startswith(("a ", "an ")):
            return self.expect
        return f"{_article(self.kind)} {self.expect}"

    def describe(self) -> str:
        """What the option takes, in words."""
        allowed = self.allowed()
        words = "one of " + ", ".join(allowed) if allowed is not None else self._value_words()
        if self.many:
            words = f"a list, each {words}"
        return f"{words}, or none" if self.optional else words


def _article(kind: type) -> str:
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}[kind]


def _convert(value: Any, kind: type) -> Any:
    """``value`` as ``kind``, or None where it is not one (a bool is not a number; an integer-valued
    float is an integer; ``Text`` from the command line is read, other strings are not)."""
    if kind is str:
        return str(value) if isinstance(value, str) else None
    if isinstance(value, str) and not isinstance(value, Text):
        return None
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, Text) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        return None
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value) if kind is float else int(value)
        except ValueError:
            try:
                value = float(value)
            except ValueError:
                return None
    if kind is int:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value if isinstance(value, int) else None
    if isinstance(value, (int, float)):
        return float(value)
    return None


# checks with their words
def at_least(low: float) -> dict:
    return {"check": lambda v: v >= low and math.isfinite(v), "expect": f">= {low:g}"}


def positive() -> dict:
    return {"check": lambda v: v > 0 and math.isfinite(v), "expect": "a finite number > 0"}


def non_negative() -> dict:
    return {"check": lambda v: v >= 0 and math.isfinite(v), "expect": "a finite number >= 0"}


def between(low: float, high: float, why: str = "") -> dict:
    """A number in [low, high]; ``why`` says what lies outside."""
    return {"check": lambda v: low <= v <= high, "expect": f"in [{low:g}, {high:g}]{f' ({why})' if why else ''}"}


def unit_interval_right_open() -> dict:
    return {"check": lambda v: 0 <= v < 1, "expect": "in [0, 1)"}
