"""Network pieces that know no learning rule: neurons, surrogates, synapses, priors, likelihoods."""

from .conv import BinaryConv2d
from .distributions import RelaxedSignBernoulli, SignBernoulli, natural_from_probs
from .likelihoods import LastReadoutCategorical, Likelihood, ReadoutCategorical
from .neurons import LIFParameters, LIFState, lif_initial_state, lif_step
from .priors import BetaBinaryPrior, BinaryPrior, GaussianPrior, Prior, RelaxedBinaryPrior, synapse_weights
from .snn import CONV_PRESETS, ConvSpikingNet, DecolleNetwork, SNNOutput, SpikingMLP
from .surrogates import SURROGATES, boxcar, fast_sigmoid, sigmoid, surrogate

__all__ = [
    "BetaBinaryPrior",
    "BinaryConv2d",
    "CONV_PRESETS",
    "ConvSpikingNet",
    "DecolleNetwork",
    "BinaryPrior",
    "GaussianPrior",
    "LIFParameters",
    "LIFState",
    "LastReadoutCategorical",
    "Likelihood",
    "Prior",
    "ReadoutCategorical",
    "RelaxedBinaryPrior",
    "RelaxedSignBernoulli",
    "SNNOutput",
    "SURROGATES",
    "SignBernoulli",
    "SpikingMLP",
    "boxcar",
    "fast_sigmoid",
    "lif_initial_state",
    "lif_step",
    "natural_from_probs",
    "sigmoid",
    "surrogate",
    "synapse_weights",
]
