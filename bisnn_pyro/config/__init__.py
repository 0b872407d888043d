"""Configuration: options defined once, parts (priors, guides, likelihoods, optimisers) by name, and
the registration of parts of one's own (see ``components``)."""

from .components import KINDS, REGISTRY, Component, load_plugins, register
from .options import ConfigError, Option

__all__ = ["Component", "ConfigError", "KINDS", "Option", "REGISTRY", "load_plugins", "register"]
