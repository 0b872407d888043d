"""bisnn-pyro: binary-weight spiking neural networks trained by Bayesian learning, in Pyro.

The library's networks and guides keep their parameters in their own ``state_dict`` (Pyro's
module-local parameters), not in Pyro's global parameter store, so two models in one process
never share parameters by name and a saved model reloads exactly.  They do so inside their own
calls, whatever ``pyro.settings`` says: importing the package changes no global setting.
"""

from .inference import BayesianSNN, Trainer, make_rule
from .models import BinaryPrior, GaussianPrior, LIFParameters, ReadoutCategorical, SpikingMLP

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
