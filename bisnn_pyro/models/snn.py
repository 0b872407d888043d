"""The spiking network: LIF layers with DECOLLE local readouts, the whole time loop in one forward."""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import torch
from pyro.nn import PyroModule

from .layers import BinaryLinear
from .neurons import LIFParameters, LIFState, lif_initial_state, lif_step
from .surrogates import SpikeFunction, surrogate


class SNNOutput(NamedTuple):
    """readouts: logits of every layer's readout at every step, shape (*S, B, layers, T, classes);
    state: the per-layer LIF states after the last step (to continue a sequence);
    spike_counts: total spikes per layer over the call, shape (*S, layers)."""

    readouts: torch.Tensor
    state: list[LIFState]
    spike_counts: torch.Tensor


def random_sign_readout(num_classes: int, fan_in: int, generator: torch.Generator) -> torch.Tensor:
    """A fixed random +-1 readout matrix (classes, fan_in)."""
    return torch.randint(0, 2, (num_classes, fan_in), generator=generator).float() * 2.0 - 1.0


class SpikingMLP(PyroModule):
    """Fully connected spiking network with one fixed random readout per layer (DECOLLE).

    ``forward(x)`` takes spikes of shape (B, T, in_features) and runs all T steps.  With
    ``local_learning=True`` (the paper's form) each layer's input is detached and the state is
    detached between steps, so each layer learns only from its own readout.
    """

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int] = (256, 256),
        num_classes: int = 2,
        *,
        neuron: LIFParameters = LIFParameters(),
        spike: str | SpikeFunction = "boxcar",
        local_learning: bool = True,
        readout_seed: int = 0,
        bias: bool = False,
    ):
        super().__init__()
        if not hidden:
            raise ValueError("hidden must list at least one layer width")
        sizes = [in_features, *hidden]
        self.in_features = in_features
        self.num_classes = num_classes
        self.neuron = LIFParameters(*neuron)
        self.spike = surrogate(spike)
        self.local_learning = local_learning
        self.layers = PyroModule[torch.nn.ModuleList](
            [BinaryLinear(i, o, bias=bias) for i, o in zip(sizes[:-1], sizes[1:])]
        )
        generator = torch.Generator().manual_seed(readout_seed)
        for index, width in enumerate(hidden):
            self.register_buffer(f"readout_{index}", random_sign_readout(num_classes, width, generator))
        self.readout_scales = [1.0 / math.sqrt(width) for width in hidden]

    def readout_matrices(self) -> list[torch.Tensor]:
        return [getattr(self, f"readout_{i}") for i in range(len(self.layers))]

    def forward(self, x: torch.Tensor, state: list[LIFState] | None = None) -> SNNOutput:
        if x.dim() != 3 or x.shape[-1] != self.in_features:
            raise ValueError(f"expected spikes of shape (batch, time, {self.in_features}), got {tuple(x.shape)}")
        synapses = [layer.synapse(layer.weight, layer.bias) for layer in self.layers]
        readouts = self.readout_matrices()
        states: list[LIFState | None] = list(state) if state is not None else [None] * len(synapses)
        per_step, counts = [], [0.0] * len(synapses)
        for t in range(x.shape[1]):
            inputs = x[:, t]
            step_readouts = []
            for index, synapse in enumerate(synapses):
                layer_state = states[index] if states[index] is not None else lif_initial_state(inputs)
                spikes, _, layer_state = lif_step(inputs, layer_state, synapse, self.neuron, self.spike)
                step_readouts.append(torch.matmul(spikes, readouts[index].t()) * self.readout_scales[index])
                counts[index] = counts[index] + spikes.detach().sum((-1, -2))
                if self.local_learning:
                    layer_state = layer_state.detach()
                    spikes = spikes.detach()
                states[index] = layer_state
                inputs = spikes
            per_step.append(torch.stack(torch.broadcast_tensors(*step_readouts), dim=-2))
        return SNNOutput(
            readouts=torch.stack(per_step, dim=-2),
            state=states,
            spike_counts=torch.stack(torch.broadcast_tensors(*[torch.as_tensor(c) for c in counts]), -1),
        )
