"""The spiking network: LIF layers with DECOLLE local readouts, the whole time loop in one forward."""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import torch
from pyro.nn import PyroModule

from .conv import BinaryConv2d, max_pool
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


class DecolleNetwork(PyroModule):
    """Layers of LIF neurons, each with a fixed random readout (DECOLLE); subclasses make the layers.

    Readout logits are ``readout_gain / sqrt(fan_in)`` times the +-1 projection of the spikes.
    ``forward(x)`` takes spikes (B, T, *input_shape) and runs all T steps in one call (so Pyro
    draws the weights once per sequence).  With ``local_learning=True`` (the paper's form) each
    layer's input is detached and the state is detached between steps, so each layer learns only
    from its own readout; ``False`` lets gradients flow through layers and time.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        layers: Sequence[PyroModule],
        output_shapes: Sequence[Sequence[int]],
        pools: Sequence[int],
        num_classes: int,
        *,
        neuron: LIFParameters,
        spike: str | SpikeFunction,
        local_learning: bool,
        readout_seed: int,
        readout_gain: float = 1.0,
    ):
        super().__init__()
        self.input_shape = tuple(input_shape)
        self.flatten_input = False  # a dense network reads image frames as one vector
        self.num_classes = num_classes
        self.neuron = LIFParameters(*neuron)
        self.spike = surrogate(spike)
        self.local_learning = local_learning
        self.layers = PyroModule[torch.nn.ModuleList](list(layers))
        self.pools = list(pools)
        self.output_shapes = [tuple(shape) for shape in output_shapes]
        generator = torch.Generator().manual_seed(readout_seed)
        sizes = [math.prod(shape) for shape in self.output_shapes]
        for index, size in enumerate(sizes):
            self.register_buffer(f"readout_{index}", random_sign_readout(num_classes, size, generator))
        self.readout_scales = [readout_gain / math.sqrt(size) for size in sizes]

    def readout_matrices(self) -> list[torch.Tensor]:
        return [getattr(self, f"readout_{i}") for i in range(len(self.layers))]

    def forward(self, x: torch.Tensor, state: list[LIFState] | None = None) -> SNNOutput:
        if x.dim() != 2 + len(self.input_shape) or tuple(x.shape[2:]) != self.input_shape:
            raise ValueError(
                f"expected spikes of shape (batch, time, {', '.join(map(str, self.input_shape))}), got {tuple(x.shape)}"
            )
        synapses = [layer.synapse(layer.weight, layer.bias) for layer in self.layers]
        readouts = self.readout_matrices()
        states: list[LIFState | None] = list(state) if state is not None else [None] * len(synapses)
        per_step, counts = [], [0.0] * len(synapses)
        for t in range(x.shape[1]):
            inputs = x[:, t].flatten(1) if self.flatten_input else x[:, t]
            step_readouts = []
            for index, synapse in enumerate(synapses):
                layer_state = states[index] if states[index] is not None else lif_initial_state(inputs)
                spikes, _, layer_state = lif_step(inputs, layer_state, synapse, self.neuron, self.spike)
                outputs = max_pool(spikes, self.pools[index]) if self.pools[index] > 1 else spikes
                features = len(self.output_shapes[index])
                flat = outputs.flatten(-features) if features > 1 else outputs
                step_readouts.append(torch.matmul(flat, readouts[index].t()) * self.readout_scales[index])
                counts[index] = counts[index] + spikes.detach().flatten(-features - 1).sum(-1)
                if self.local_learning:
                    layer_state = layer_state.detach()
                    outputs = outputs.detach()
                states[index] = layer_state
                inputs = outputs
            per_step.append(torch.stack(torch.broadcast_tensors(*step_readouts), dim=-2))
        return SNNOutput(
            readouts=torch.stack(per_step, dim=-2),
            state=states,
            spike_counts=torch.stack(torch.broadcast_tensors(*[torch.as_tensor(c) for c in counts]), -1),
        )


class SpikingMLP(DecolleNetwork):
    """Fully connected layers: spikes (B, T, in_features), or (B, T, *frame) flattened, -> readouts."""

    def __init__(
        self,
        in_features: int | Sequence[int],
        hidden: Sequence[int] = (256, 256),
        num_classes: int = 2,
        *,
        neuron: LIFParameters = LIFParameters(),
        spike: str | SpikeFunction = "boxcar",
        local_learning: bool = True,
        readout_seed: int = 0,
        readout_gain: float = 1.0,
        bias: bool = False,
    ):
        if not hidden:
            raise ValueError("hidden must list at least one layer width")
        input_shape = (in_features,) if isinstance(in_features, int) else tuple(in_features)
        in_features = math.prod(input_shape)
        sizes = [in_features, *hidden]
        layers = [BinaryLinear(i, o, bias=bias) for i, o in zip(sizes[:-1], sizes[1:])]
        super().__init__(
            input_shape,
            layers,
            [(width,) for width in hidden],
            [1] * len(hidden),
            num_classes,
            neuron=neuron,
            spike=spike,
            local_learning=local_learning,
            readout_seed=readout_seed,
            readout_gain=readout_gain,
        )
        self.in_features = in_features
        self.flatten_input = len(input_shape) > 1


class ConvSpikingNet(DecolleNetwork):
    """Convolutional layers ("same" padding, then max pooling): spikes (B, T, C, H, W) -> readouts.

    Presets: :data:`CONV_PRESETS` ``small`` (16, 32 channels, 3x3, no pooling: the 12x12 offline
    digits set on a CPU) and ``paper`` (64, 128, 128 channels, 7x7, pool 2, close to the BiSNN/DECOLLE networks).
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        channels: Sequence[int] = (16, 32),
        num_classes: int = 10,
        *,
        kernel_size: int = 3,
        pool: int = 2,
        neuron: LIFParameters = LIFParameters(),
        spike: str | SpikeFunction = "boxcar",
        local_learning: bool = True,
        readout_seed: int = 0,
        readout_gain: float = 1.0,
        bias: bool = False,
    ):
        if len(input_shape) != 3:
            raise ValueError(f"input_shape must be (channels, height, width), got {tuple(input_shape)}")
        if not channels:
            raise ValueError("channels must list at least one layer")
        in_channels, height, width = input_shape
        layers, shapes = [], []
        for out_channels in channels:
            layers.append(BinaryConv2d(in_channels, out_channels, kernel_size, bias=bias))
            height, width = height // pool, width // pool
            if height < 1 or width < 1:
                raise ValueError(f"input {tuple(input_shape)} is too small for {len(channels)} pooling layers")
            shapes.append((out_channels, height, width))
            in_channels = out_channels
        super().__init__(
            input_shape,
            layers,
            shapes,
            [pool] * len(channels),
            num_classes,
            neuron=neuron,
            spike=spike,
            local_learning=local_learning,
            readout_seed=readout_seed,
            readout_gain=readout_gain,
        )


CONV_PRESETS = {
    "small": dict(channels=(16, 32), kernel_size=3, pool=1),
    "paper": dict(channels=(64, 128, 128), kernel_size=7, pool=2),
}
