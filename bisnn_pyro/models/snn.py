"""The spiking network: LIF layers with DECOLLE local readouts, the whole time loop in one forward."""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import torch
from pyro.nn import PyroModule

from ..adapters.pyro_internals import LocalPyroModule
from .conv import BinaryConv2d, max_pool
from .layers import BinaryLinear
from .neurons import (
    LIFParameters,
    LIFState,
    input_traces,
    leak,
    lif_drive_step_,
    lif_initial_state,
    lif_step,
    membrane_from_drive,
    owned_state,
    subtract_refractory_,
)
from .surrogates import SpikeFunction, spikes_with_gradient, surrogate


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


class DecolleNetwork(LocalPyroModule):
    """Layers of LIF neurons, each with a fixed random readout (DECOLLE); subclasses make the layers.

    Readout logits are ``readout_gain / sqrt(fan_in)`` times the +-1 projection of the spikes.
    ``forward(x)`` takes spikes (B, T, *input_shape) and runs all T steps in one call (so Pyro
    draws the weights once per sequence).  With ``local_learning=True`` (the paper's form) each
    layer's input is detached and the state is detached between steps, so each layer learns only
    from its own readout; ``False`` lets gradients flow through layers and time.

    ``time_loop`` chooses how the T steps run: ``"steps"`` advances every layer one step at a time;
    ``"layers"`` runs each layer over all T before the next (one synaptic map over all steps, a
    short element-wise recurrence, a small autograd graph), exact only under local learning;
    ``"auto"`` (default) takes ``"layers"`` when gradients are recorded, learning is local and
    T > 1, and ``"steps"`` otherwise (without gradients the step loop updates small buffers in place).

    Without gradients (prediction) either loop filters each layer's synaptic drive $W s$ rather than
    its input spikes (``lif_drive_step_``; for layers of exactly ``BinaryLinear`` and
    ``BinaryConv2d``: a layer of one's own runs its ``synapse`` as with gradients): the same model
    by linearity, whose drives are whole
    numbers for ±1 weights and 0/1 spikes, so that the packed 1-bit engine reproduces its spikes
    and readouts exactly.  With gradients the traces filter the inputs, as DECOLLE's local gradient
    needs them.  The state returned holds the input traces either way, so a state from a run without
    gradients (a burn-in) continues in one with them.
    """

    TIME_LOOPS = ("auto", "layers", "steps")

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
        time_loop: str = "auto",
    ):
        super().__init__()
        self.input_shape = tuple(input_shape)
        self.flatten_input = False  # a dense network reads image frames as one vector
        self.num_classes = num_classes
        self.neuron = LIFParameters(*neuron)
        self.spike = surrogate(spike)
        self.local_learning = local_learning
        self.time_loop = time_loop
        self.layers = PyroModule[torch.nn.ModuleList](list(layers))
        self.pools = list(pools)
        self.output_shapes = [tuple(shape) for shape in output_shapes]
        generator = torch.Generator().manual_seed(readout_seed)
        sizes = [math.prod(shape) for shape in self.output_shapes]
        for index, size in enumerate(sizes):
            self.register_buffer(f"readout_{index}", random_sign_readout(num_classes, size, generator))
        self.readout_scales = [readout_gain / math.sqrt(size) for size in sizes]

    @property
    def time_loop(self) -> str:
        """How the layers run over time: step by step, or each layer over all steps in turn."""
        return self._time_loop

    @time_loop.setter
    def time_loop(self, value: str) -> None:
        if value not in self.TIME_LOOPS:
            raise ValueError(f"unknown time loop {value!r}; expected one of {self.TIME_LOOPS}")
        if value == "layers" and not getattr(self, "local_learning", True):
            raise ValueError("time_loop='layers' is exact only with local_learning=True")
        self._time_loop = value

    def forward(self, x: torch.Tensor, state: list[LIFState] | None = None) -> SNNOutput:
        return self.run(x, [layer.weight for layer in self.layers], state)

    def run(self, x: torch.Tensor, weights: Sequence[torch.Tensor], state: list[LIFState] | None = None) -> SNNOutput:
        """The network with explicit weights, one tensor per layer (each may carry leading sample
        dimensions): what ``forward`` does once Pyro has drawn the weight sites."""
        if len(weights) != len(self.layers):
            raise ValueError(f"expected {len(self.layers)} weight tensors, one per layer, got {len(weights)}")
        if x.dim() != 2 + len(self.input_shape) or tuple(x.shape[2:]) != self.input_shape:
            raise ValueError(
                f"expected spikes of shape (batch, time, {', '.join(map(str, self.input_shape))}), got {tuple(x.shape)}"
            )
        if self.flatten_input:
            x = x.flatten(2)
        loop = self.time_loop
        if loop == "auto":
            whole_layers = self.local_learning and torch.is_grad_enabled() and x.shape[1] > 1
            loop = "layers" if whole_layers else "steps"
        states = list(state) if state is not None else [None] * len(self.layers)
        merged = self._merged_input_dims(x)
        if not torch.is_grad_enabled() and all(type(layer) in (BinaryLinear, BinaryConv2d) for layer in self.layers):
            drives = [_drive(layer, weight, dims, len(shape))
                      for layer, weight, dims, shape in zip(self.layers, weights, merged, self.output_shapes)]
            return (self._run_layers_on_drive if loop == "layers" else self._run_steps_on_drive)(x, drives, states)
        synapses = []
        for layer, weight, dims in zip(self.layers, weights, merged):
            synapse = layer.synapse(weight, layer.bias)
            synapses.append(_flattening(synapse, dims) if dims > 1 else synapse)
        return (self._run_layers if loop == "layers" else self._run_steps)(x, synapses, states)

    def _input_dims(self, x: torch.Tensor) -> list[int]:
        """Feature dimensions of each layer's input (the flattened frame, then each layer's output)."""
        return [x.dim() - 2] + [len(shape) for shape in self.output_shapes[:-1]]

    def _merged_input_dims(self, x: torch.Tensor) -> list[int]:
        """Per layer, how many trailing input dims its synapse must merge into one (1: none); a dense
        layer after a convolution reads the (C, H, W) spikes as one vector."""
        return [dims if isinstance(layer, BinaryLinear) else 1 for layer, dims in zip(self.layers, self._input_dims(x))]

    def _readout(self, index: int, outputs: torch.Tensor) -> torch.Tensor:
        features = len(self.output_shapes[index])
        flat = outputs.flatten(-features) if features > 1 else outputs
        return torch.matmul(flat, getattr(self, f"readout_{index}").t()) * self.readout_scales[index]

    def _pool(self, index: int, spikes: torch.Tensor) -> torch.Tensor:
        return max_pool(spikes, self.pools[index]) if self.pools[index] > 1 else spikes

    def _run_steps(self, x: torch.Tensor, synapses: list, states: list) -> SNNOutput:
        per_step, counts = [], [0.0] * len(synapses)
        for t in range(x.shape[1]):
            inputs = x[:, t]
            step_readouts = []
            for index, synapse in enumerate(synapses):
                layer_state = states[index] if states[index] is not None else lif_initial_state(inputs)
                spikes, _, layer_state = lif_step(inputs, layer_state, synapse, self.neuron, self.spike)
                outputs = self._pool(index, spikes)
                step_readouts.append(self._readout(index, outputs))
                features = len(self.output_shapes[index])
                counts[index] = counts[index] + spikes.detach().flatten(-features - 1).sum(-1)
                if self.local_learning:
                    layer_state = layer_state.detach()
                    outputs = outputs.detach()
                states[index] = layer_state
                inputs = outputs
            per_step.append(torch.stack(torch.broadcast_tensors(*step_readouts), dim=-2))
        return SNNOutput(torch.stack(per_step, dim=-2), states, _stack_counts(counts))

    def _run_layers(self, x: torch.Tensor, synapses: list, states: list) -> SNNOutput:
        inputs = x.detach().transpose(0, 1)  # time first: (T, *S, B, *features) throughout
        readouts, counts = [], []
        for index, (synapse, in_features) in enumerate(zip(synapses, self._input_dims(x))):
            features = len(self.output_shapes[index])
            state = states[index] if states[index] is not None else lif_initial_state(inputs[0])
            traces, p, q = input_traces(inputs, state.p, state.q, self.neuron)
            # U = W P - R, made in place from the drive W P: R carries no gradient, so the drive's
            # autograd history (dU/d drive = identity) serves U.  The time-first view that autograd
            # sees is taken after the change (a view taken before would have its history rebuilt).
            drive = _merged_drive(synapse, traces, in_features)
            steps = traces.shape[0]
            decided, r = subtract_refractory_(
                _time_first(drive.detach(), steps, features), state.r, state.s, self.neuron
            )
            potential = _time_first(drive, steps, features)
            # the spikes decided in the recurrence, with the surrogate gradient of U - threshold
            u = potential - self.neuron.threshold if self.neuron.threshold else potential
            spikes = spikes_with_gradient(self.spike, u, decided)
            outputs = self._pool(index, spikes)
            readouts.append(self._readout(index, outputs).movedim(0, -2))
            counts.append(spikes.detach().flatten(-features - 1).sum((0, -1)))
            states[index] = LIFState(p, q, r, decided[-1].clone())  # not a view pinning every step's spikes
            inputs = outputs.detach()
        return SNNOutput(torch.stack(torch.broadcast_tensors(*readouts), dim=-3), states, _stack_counts(counts))


    def _run_steps_on_drive(self, x: torch.Tensor, drives: list, states: list) -> SNNOutput:
        """The step loop without gradients, each layer's filters after its synapse (``lif_drive_step_``);
        the input traces move on beside them for the state returned."""
        a, b, _ = self.neuron.decays()
        per_step, counts = [], [0.0] * len(drives)
        inputs_traces, drive_states = list(states), [None] * len(drives)
        for t in range(x.shape[1]):
            inputs = x[:, t]
            step_readouts = []
            for index, (drive, scale, bias) in enumerate(drives):
                step_drive = drive(inputs)
                if t == 0:
                    given = states[index] if states[index] is not None else lif_initial_state(inputs)
                    inputs_traces[index] = owned_state(given, inputs)
                    drive_states[index] = _drive_state(given, states[index] is None, drive, step_drive)
                p, q = inputs_traces[index][:2]
                leak(p, a, q, out=p)
                leak(q, b, inputs, out=q)
                drive_states[index] = lif_drive_step_(step_drive, drive_states[index], scale, bias, self.neuron)
                spikes = drive_states[index].s
                outputs = self._pool(index, spikes)
                step_readouts.append(self._readout(index, outputs))
                features = len(self.output_shapes[index])
                counts[index] = counts[index] + spikes.flatten(-features - 1).sum(-1)
                inputs = outputs
            per_step.append(torch.stack(torch.broadcast_tensors(*step_readouts), dim=-2))
        states = [LIFState(p, q, d.r, d.s) for (p, q, _, _), d in zip(inputs_traces, drive_states)]
        return SNNOutput(torch.stack(per_step, dim=-2), states, _stack_counts(counts))

    def _run_layers_on_drive(self, x: torch.Tensor, drives: list, states: list) -> SNNOutput:
        """The whole-layer loop without gradients, each layer's filters after its synapse: one
        synaptic map over all steps, then the drive's traces and the refractory recurrence."""
        inputs = x.transpose(0, 1)
        readouts, counts = [], []
        for index, ((drive, scale, bias), in_features) in enumerate(zip(drives, self._input_dims(x))):
            features, steps = len(self.output_shapes[index]), inputs.shape[0]
            given = states[index] if states[index] is not None else lif_initial_state(inputs[0])
            _, p, q = input_traces(inputs, given.p, given.q, self.neuron)  # for the state returned
            drive_all = _time_first(_merged_drive(drive, inputs, in_features), steps, features)
            start = _drive_state(given, states[index] is None, drive, drive_all[0])
            filtered, _, _ = input_traces(drive_all, start.p, start.q, self.neuron)
            potential = membrane_from_drive(filtered, scale, bias)
            spikes, r = subtract_refractory_(potential, start.r, start.s, self.neuron)
            outputs = self._pool(index, spikes)
            readouts.append(self._readout(index, outputs).movedim(0, -2))
            counts.append(spikes.flatten(-features - 1).sum((0, -1)))
            states[index] = LIFState(p, q, r, spikes[-1].clone())
            inputs = outputs
        return SNNOutput(torch.stack(torch.broadcast_tensors(*readouts), dim=-3), states, _stack_counts(counts))


def _drive(layer, weight: torch.Tensor, merged_dims: int, out_features: int) -> tuple:
    """(the map s -> W s of ``layer``, its scale, its bias shaped to broadcast over the output's
    trailing dimensions) for the run without gradients."""
    drive = layer.drive(weight)
    bias = layer.bias
    if bias is not None:
        bias = bias.view(-1, *(1,) * (out_features - 1))
    return _flattening(drive, merged_dims) if merged_dims > 1 else drive, layer.scale, bias


def _drive_state(given: LIFState, at_rest: bool, drive, step_drive: torch.Tensor) -> LIFState:
    """Buffers shaped like one step's drive for ``lif_drive_step_``: the traces of the drive of the
    input traces in ``given`` (W P and W Q, by linearity), zeros at rest, and copies of r and s."""
    shape = step_drive.shape
    if at_rest:
        p, q = torch.zeros_like(step_drive), torch.zeros_like(step_drive)
    else:
        p, q = (drive(trace).expand(shape).clone() for trace in given[:2])
    return LIFState(p, q, given.r.expand(shape).clone(), given.s.expand(shape).clone())


def _merged_drive(synapse, traces: torch.Tensor, in_features: int) -> torch.Tensor:
    """``synapse`` applied to every step of time-first ``traces`` (T, *S, B, *in) as one call on
    (*S, T * B, *in); returns the drive in that merged layout, (*S, T * B, *out)."""
    steps = traces.shape[0]
    merged = traces.movedim(0, -in_features - 2)
    batch = merged.shape[-in_features - 1]
    return synapse(merged.reshape(*merged.shape[: -in_features - 2], steps * batch, *merged.shape[-in_features:]))


def _time_first(merged: torch.Tensor, steps: int, out_features: int) -> torch.Tensor:
    """A view of a merged drive (*S, T * B, *out) time first: (T, *S, B, *out)."""
    batch = merged.shape[-out_features - 1] // steps
    split = merged.view(*merged.shape[: -out_features - 1], steps, batch, *merged.shape[-out_features:])
    return split.movedim(-out_features - 2, 0)


def _flattening(synapse, dims: int):
    """``synapse`` on inputs whose last ``dims`` dimensions are merged into one feature vector."""
    return lambda inputs: synapse(inputs.flatten(-dims))


def _stack_counts(counts: list) -> torch.Tensor:
    return torch.stack(torch.broadcast_tensors(*[torch.as_tensor(c) for c in counts]), -1)


class SpikingMLP(DecolleNetwork):
    """Fully connected layers: spikes (B, T, in_features), or (B, T, *frame) flattened, -> readouts."""

    def __init__(
        self,
        in_features: int | Sequence[int],
        hidden: Sequence[int] = (256, 256),
        num_classes: int = 2,
        *,
        neuron: LIFParameters = LIFParameters(),  # noqa: B008  an immutable NamedTuple
        spike: str | SpikeFunction = "boxcar",
        local_learning: bool = True,
        readout_seed: int = 0,
        readout_gain: float = 1.0,
        bias: bool = False,
        time_loop: str = "auto",
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
            time_loop=time_loop,
        )
        self.in_features = in_features
        self.flatten_input = len(input_shape) > 1


class ConvSpikingNet(DecolleNetwork):
    """Convolutional layers ("same" padding, then max pooling), then optional dense layers ``dense``
    reading the last feature map as one vector: spikes (B, T, C, H, W) -> readouts.  Every layer has
    its own readout and local loss.

    Presets: ``CONV_PRESETS`` ``small`` (16, 32 channels, 3x3, no pooling: the 12x12 offline
    digits set on a CPU) and ``paper`` (64, 128, 128 channels, 7x7, pool 2, close to the BiSNN/DECOLLE
    networks; the BiSNN code pools per layer 2, 1, 2: ``pool=(2, 1, 2)``).
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        channels: Sequence[int] = (16, 32),
        num_classes: int = 10,
        *,
        kernel_size: int = 3,
        pool: int | Sequence[int] = 2,
        dense: Sequence[int] = (),
        neuron: LIFParameters = LIFParameters(),  # noqa: B008  an immutable NamedTuple
        spike: str | SpikeFunction = "boxcar",
        local_learning: bool = True,
        readout_seed: int = 0,
        readout_gain: float = 1.0,
        bias: bool = False,
        time_loop: str = "auto",
    ):
        if len(input_shape) != 3:
            raise ValueError(f"input_shape must be (channels, height, width), got {tuple(input_shape)}")
        if not channels:
            raise ValueError("channels must list at least one layer")
        pools = [pool] * len(channels) if isinstance(pool, int) else list(pool)
        if len(pools) != len(channels) or min(pools) < 1:
            raise ValueError(f"pool must be one size >= 1 or one per convolution ({len(channels)}), got {pool}")
        shapes = conv_output_shapes(input_shape, channels, pools, dense)
        inputs = [tuple(input_shape), *shapes[:-1]]
        layers = [
            BinaryConv2d(before[0], after[0], kernel_size, bias=bias) if len(after) == 3
            else BinaryLinear(math.prod(before), after[0], bias=bias)
            for before, after in zip(inputs, shapes)
        ]
        super().__init__(
            input_shape,
            layers,
            shapes,
            pools + [1] * len(dense),
            num_classes,
            neuron=neuron,
            spike=spike,
            local_learning=local_learning,
            readout_seed=readout_seed,
            readout_gain=readout_gain,
            time_loop=time_loop,
        )


def conv_output_shapes(
    input_shape: Sequence[int], channels: Sequence[int], pools: Sequence[int], dense: Sequence[int] = ()
) -> list[tuple[int, ...]]:
    """Each layer's output shape: (channels, H // pool, W // pool) per convolution ("same" padding,
    then pooling), then (units,) per dense layer."""
    _, height, width = input_shape
    shapes: list[tuple[int, ...]] = []
    for out_channels, size in zip(channels, pools):
        height, width = height // size, width // size
        if height < 1 or width < 1:
            raise ValueError(f"input {tuple(input_shape)} is too small for {len(channels)} pooling layers")
        shapes.append((out_channels, height, width))
    return shapes + [(units,) for units in dense]


CONV_PRESETS = {
    "small": dict(channels=(16, 32), kernel_size=3, pool=1),
    "paper": dict(channels=(64, 128, 128), kernel_size=7, pool=2),
}
