"""Data sets as spike tensors; no module here knows a network or a learning rule."""

from .encoding import bernoulli_spikes, raised_cosine_rates
from .two_moons import SpikeDataset, make_moons, two_moons

__all__ = ["SpikeDataset", "bernoulli_spikes", "make_moons", "raised_cosine_rates", "two_moons"]
