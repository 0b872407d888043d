"""Leaky integrate-and-fire neurons with input, synaptic and refractory traces (DECOLLE form).

Per step, with decays a = exp(-1/tau_mem), b = exp(-1/tau_syn), c = exp(-1/tau_ref):

    P[t] = a P[t-1] + Q[t-1]        Q[t] = b Q[t-1] + s_in[t]
    R[t] = c R[t-1] + S[t-1]        U[t] = synapse(P[t]) - R[t]        S[t] = spike(U[t] - theta)

The step is a pure function of (input, state, synapse): the synapse closes over the weight, which may
carry a leading sample dimension, and the state broadcasts against it.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import torch

from .surrogates import SpikeFunction


class LIFParameters(NamedTuple):
    """Time constants (in steps) and firing threshold of a LIF layer."""

    tau_mem: float = 10.0
    tau_syn: float = 6.0
    tau_ref: float = 2.0
    threshold: float = 0.0

    def decays(self) -> tuple[float, float, float]:
        """(a, b, c): per-step decay factors of the P, Q and R traces."""
        return math.exp(-1.0 / self.tau_mem), math.exp(-1.0 / self.tau_syn), math.exp(-1.0 / self.tau_ref)


class LIFState(NamedTuple):
    """Traces of one layer: p, q have the input's shape; r and s the output's."""

    p: torch.Tensor
    q: torch.Tensor
    r: torch.Tensor
    s: torch.Tensor

    def detach(self) -> "LIFState":
        return LIFState(*(x.detach() for x in self))


def lif_initial_state(inputs: torch.Tensor) -> LIFState:
    """A resting state for inputs shaped like ``inputs``; r and s broadcast to any output shape."""
    zero = inputs.new_zeros(())
    return LIFState(torch.zeros_like(inputs), torch.zeros_like(inputs), zero, zero)


def lif_step(
    inputs: torch.Tensor,
    state: LIFState,
    synapse: Callable[[torch.Tensor], torch.Tensor],
    params: LIFParameters,
    spike: SpikeFunction,
) -> tuple[torch.Tensor, torch.Tensor, LIFState]:
    """One time step: returns (spikes, membrane potential U, new state)."""
    a, b, c = params.decays()
    p = a * state.p + state.q
    q = b * state.q + inputs
    r = c * state.r + state.s
    u = synapse(p) - r
    s = spike(u - params.threshold)
    return s, u, LIFState(p, q, r, s)
