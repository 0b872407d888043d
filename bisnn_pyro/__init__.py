"""bisnn-pyro: binary-weight spiking neural networks trained by Bayesian learning, in Pyro.

Importing the package turns on Pyro's module-local parameters
(``pyro.settings.set(module_local_params=True)``): every network and guide keeps its parameters
in its own ``state_dict`` instead of Pyro's global parameter store, so two models in one process
never share parameters by name and a saved model reloads exactly.
"""

import pyro

from .inference import BayesianSNN, Trainer, make_rule
from .models import BinaryPrior, GaussianPrior, LIFParameters, ReadoutCategorical, SpikingMLP

pyro.settings.set(module_local_params=True)

__version__ = "0.1.0"

__all__ = [
    "BayesianSNN",
    "BinaryPrior",
    "GaussianPrior",
    "LIFParameters",
    "ReadoutCategorical",
    "SpikingMLP",
    "Trainer",
    "make_rule",
]
