"""Learning rules by name: presets of parts (prior, guide, likelihood, optimiser) with their options.

========== ================ ========================= ================== =============
rule       prior            guide                     loss (the guide's) optimiser
========== ================ ========================= ================== =============
bayes      binary           sign-bernoulli (relaxed)  mean-field         learning-rule
bayes-adam binary           sign-bernoulli            mean-field         adam
bayes-sf   binary           sign-bernoulli-exact      trace-graph        adam
ste        binary           straight-through          trace              adam
fp         gaussian         auto-delta                trace              adam
fp-bayes   gaussian         auto-normal               mean-field         adam
========== ================ ========================= ================== =============

Every rule's likelihood is ``decolle``; the step sizes are in ``RULE_PRESETS``.  The parts are
those of ``parts`` (named as in a configuration file); the learning rule steps the natural
parameters and hands any other
parameter to its companion (Adam).  An option the rule's parts do not take is refused, so nothing
given to a rule is silently ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from pyro.infer.elbo import ELBO
from pyro.optim import PyroOptim

from ..config.components import overlay, part, part_flags, resolve_part
from ..config.options import ConfigError, closest
from ..models.priors import Prior
from .parts import make_loss

RULE_PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "bayes": {"prior": {"name": "binary"}, "guide": {"name": "sign-bernoulli"}, "optim": {"name": "learning-rule"}},
    "bayes-adam": {
        "prior": {"name": "binary"}, "guide": {"name": "sign-bernoulli"}, "optim": {"name": "adam", "lr": 5e-2}
    },
    "bayes-sf": {
        "prior": {"name": "binary"},
        "guide": {"name": "sign-bernoulli-exact"},
        "optim": {"name": "adam", "lr": 5e-2},
    },
    "ste": {"prior": {"name": "binary"}, "guide": {"name": "straight-through"}, "optim": {"name": "adam", "lr": 1e-3}},
    "fp": {"prior": {"name": "gaussian"}, "guide": {"name": "auto-delta"}, "optim": {"name": "adam", "lr": 2e-2}},
    "fp-bayes": {
        "prior": {"name": "gaussian"}, "guide": {"name": "auto-normal"}, "optim": {"name": "adam", "lr": 1e-2}
    },
}
RULES = tuple(RULE_PRESETS)
DEFAULT_LIKELIHOOD = {"name": "decolle"}


def preset(rule: str, where: str = "rule") -> dict[str, dict[str, Any]]:
    """The parts of rule ``rule`` (a copy), the likelihood included."""
    if rule not in RULE_PRESETS:
        raise ConfigError(f"{where}: unknown rule {rule!r}{closest(rule, RULES)}; expected one of {', '.join(RULES)}")
    return {"likelihood": dict(DEFAULT_LIKELIHOOD), **{kind: dict(spec) for kind, spec in RULE_PRESETS[rule].items()}}


@dataclass
class Rule:
    """The parts of a learning rule (any of them may be replaced by the user's own) and the resolved
    part specifications they were built from."""

    name: str
    prior: Prior
    guide: Callable[[Callable], object]
    loss: ELBO
    optim: PyroOptim
    parts: dict[str, dict[str, Any]]


def make_rule(name: str, *, num_particles: int = 1, seed: int | None = None, **options: float | None) -> Rule:
    """Build rule ``name``; ``options`` (``lr``, ``temperature``, ``prior_p``, ``prior_scale``,
    ``init_scale``, ``momentum``: the parts' options with a flag of their own; None takes the
    default) set options of its parts, and an option none of its parts takes is a ValueError
    (``make_rule("ste", temperature=0.7)``)."""
    keywords = part_flags()
    try:
        parts = preset(name)
        for keyword, value in options.items():
            if keyword not in keywords:
                raise TypeError(f"make_rule() got an unexpected keyword argument {keyword!r}")
            if value is None:
                continue
            kind, key = keywords[keyword]
            if not any(option.name == key for option in part(kind, parts[kind]).options):
                raise ConfigError(
                    f"rule {name!r} does not use {keyword}: its {kind} {parts[kind]['name']!r} has no {key}"
                )
            parts[kind] = overlay(parts[kind], {key: value})
        parts = {kind: resolve_part(kind, spec, kind) for kind, spec in parts.items()}
    except ConfigError as error:
        raise ValueError(str(error)) from None
    if num_particles < 1:
        raise ValueError(f"num_particles must be >= 1, got {num_particles}")
    return build_rule(name, parts, num_particles=num_particles, seed=seed)


def build_rule(
    name: str, parts: dict[str, dict[str, Any]], *, num_particles: int = 1, seed: int | None = None, loss: str = "auto"
) -> Rule:
    """A ``Rule`` from resolved part specifications; ``loss="auto"`` takes the guide's."""
    guide = part("guide", parts["guide"])
    loss_name = guide.loss if loss == "auto" else loss
    return Rule(
        name,
        prior=build(parts, "prior"),
        guide=build(parts, "guide", seed=seed),
        loss=make_loss(loss_name, num_particles),
        optim=build(parts, "optim"),
        parts=parts,
    )


def build(parts: dict[str, dict[str, Any]], kind: str, **context: Any) -> Any:
    """The part ``kind`` of resolved ``parts``, built (``context``: seed, num_data, burn_in)."""
    spec = parts[kind]
    return part(kind, spec).create({k: v for k, v in spec.items() if k != "name"}, **context)
