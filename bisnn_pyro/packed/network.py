"""A spiking network with +-1 weights held as integers and bits, run by the packed engine.

``PackedNetwork.from_network(net, weights)`` takes a ``DecolleNetwork`` and K draws of its
weights (each +-1); ``readouts(x)`` gives the DECOLLE readouts (K, N, layers, T, classes) of the
float network without gradients, bit for bit: the same drives (whole numbers, summed here
without multiplications), the same filters and thresholds (``kernels``), the same fixed +-1
readouts and their scales.  ``network_problem``, ``weights_problem`` and ``inputs_problem`` say
what keeps a network, its weights or its inputs from this engine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple, Sequence

import numpy as np
import torch

from ..errors import CompositionError, ConfigError, DataError
from ..models.conv import BinaryConv2d
from ..models.layers import BinaryLinear
from ..models.neurons import LIFParameters

METHODS = ("auto", "changes", "popcount", "events")
MAX_COUNT = 255  # inputs are held as uint8 counts
SPIKE_BYTES = 64 * 2**20  # the event path's spikes of one layer over a chunk of sequences, at most


@dataclass
class PackedLayer:
    """One layer: its +-1 weights as int8 in the engine's layout (dense (K, in, out); conv
    (K, in, k, k, out)), the synapse's scale and bias, max pooling, and its DECOLLE readout (int8
    (classes, features after pooling)) with the readout's scale."""

    kind: str
    weights: np.ndarray
    scale: float
    bias: np.ndarray
    pool: int
    readout: np.ndarray
    readout_scale: float

    def bias_or_zeros(self) -> np.ndarray:
        """The bias per output (channel), zeros where the layer has none (float32)."""
        return self.bias if self.bias.size else np.zeros(self.weights.shape[-1], np.float32)

    @property
    def fan_in(self) -> int:
        """Synapses per output neuron."""
        return math.prod(self.weights.shape[1:-1])

    def plus_bits(self) -> np.ndarray:
        """The +1 weights of a dense layer as words, (K, ceil(in / 64) * out) uint64: bit i of word
        w * out + o is the weight from input 64 w + i to output o (``kernels.dense_network_popcount``)."""
        draws, fan_in, fan_out = self.weights.shape
        words = -(-fan_in // 64)
        plus = np.zeros((draws, words * 64, fan_out), np.uint8)
        plus[:, :fan_in] = self.weights > 0
        packed = np.packbits(plus.reshape(draws, words, 64, fan_out), axis=2, bitorder="little")
        return np.ascontiguousarray(packed.transpose(0, 1, 3, 2)).view(np.uint64).reshape(draws, -1)

    def readout_plus_bits(self) -> np.ndarray:
        """The +1 entries of each readout row as words, (classes * ceil(features / 64),) uint64."""
        classes, features = self.readout.shape
        plus = np.zeros((classes, -(-features // 64) * 64), np.uint8)
        plus[:, :features] = self.readout > 0
        return np.packbits(plus, axis=-1, bitorder="little").view(np.uint64).reshape(-1)


@dataclass(repr=False)
class PackedNetwork:
    """A ``DecolleNetwork`` with K draws of +-1 weights, for the packed engine."""

    def __repr__(self) -> str:
        layers = ", ".join(f"{layer.kind} {layer.fan_in}->{layer.weights.shape[-1]}" for layer in self.layers)
        return f"PackedNetwork(input {self.input_shape}, {self.draws} draw(s), {layers}, {self.num_classes} classes)"

    input_shape: tuple[int, ...]
    neuron: LIFParameters
    layers: list[PackedLayer]
    num_classes: int

    @property
    def draws(self) -> int:
        """K: how many weight draws the network holds (1 for a point estimate)."""
        return self.layers[0].weights.shape[0]

    @classmethod
    def from_network(cls, net: torch.nn.Module, weights: Sequence[torch.Tensor]) -> "PackedNetwork":
        """``net`` (a ``DecolleNetwork``) with ``weights``, one tensor per layer with a leading draw
        dimension K, every entry +-1; ``CompositionError`` naming what does not fit."""
        reason = network_problem(net) or weights_problem(net, weights)
        if reason:
            raise CompositionError(reason)
        layers = []
        for index, (layer, weight) in enumerate(zip(net.layers, weights)):
            signs = weight.detach().cpu().reshape(-1, *layer.weight_shape).to(torch.int8)
            kind = "conv" if isinstance(layer, BinaryConv2d) else "dense"
            if kind == "conv":
                signs = signs.permute(0, 2, 3, 4, 1)  # (K, in, k, k, out)
            else:
                signs = signs.reshape(signs.shape[0], signs.shape[1], -1).transpose(1, 2)  # (K, in, out)
            bias = layer.bias.detach().cpu().float().numpy() if layer.bias is not None else np.zeros(0, np.float32)
            readout = getattr(net, f"readout_{index}").detach().cpu().to(torch.int8).numpy()
            layers.append(
                PackedLayer(kind, np.ascontiguousarray(signs.numpy()), layer.scale, bias, net.pools[index], readout,
                            net.readout_scales[index])
            )
        return cls(tuple(net.input_shape), LIFParameters(*net.neuron), layers, net.num_classes)

    @property
    def all_dense(self) -> bool:
        """Whether every layer is dense (the changes and bit-count kernels run the whole network)."""
        return all(layer.kind == "dense" for layer in self.layers)

    def method_for(self, x: torch.Tensor) -> str:
        """The method ``readouts(x)`` takes by default: ``"changes"`` for a network of dense layers
        on 0/1 spikes, else ``"events"``."""
        return "changes" if self.all_dense and bool(x.numel() == 0 or x.max() <= 1) else "events"

    def readouts(self, x: torch.Tensor, batch_size: int = 250, method: str = "auto") -> torch.Tensor:
        """DECOLLE readouts (K, N, layers, T, classes) for input spikes ``x`` (N, T, *input_shape), a
        tensor or numpy array of whole numbers 0..255 of any real or bool dtype, ``batch_size``
        sequences at a time (``DataError`` or ``ConfigError`` in one line for what does not fit).
        ``method`` (``kernels`` describes each):
        ``"changes"`` runs a network of dense layers on 0/1 spikes, all its layers at each step,
        with each layer's drive carried from step to step and moved by the inputs whose spike
        changed; ``"popcount"`` runs the same networks by bit counts; ``"events"`` runs each layer
        over all steps in turn, summing the drives over the inputs that spiked, or moving the last
        step's by those that changed where they are fewer (dense or conv layers; inputs may count
        events); ``"auto"`` takes changes where they apply, else events."""
        x = torch.from_numpy(x) if isinstance(x, np.ndarray) else x
        reason = inputs_problem(x, self.input_shape)
        if reason:
            raise DataError(reason)
        if method not in METHODS:
            raise ConfigError(f"unknown method {method!r}; expected one of {METHODS}")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        counts = x.detach().cpu().to(torch.uint8).numpy()
        chosen = self.method_for(x)
        if method in ("changes", "popcount") and chosen != "changes":
            raise ConfigError(f"method {method!r} runs networks of dense layers on 0/1 spikes; use method='events'")
        if method == "auto":
            method = chosen
        if method == "changes":
            run = partial(self._by_changes, self._change_layout())
        elif method == "popcount":
            run = partial(self._by_bit_counts, self._bits())
        else:
            run = self._by_events
        if method == "events":  # it holds every step's spikes of a layer: keep that near SPIKE_BYTES
            widest = max(layer.weights.shape[-1] * _spatial(layer, self.input_shape) for layer in self.layers)
            batch_size = max(1, min(batch_size, SPIKE_BYTES // max(1, self.draws * x.shape[1] * widest)))
        chunks = [run(counts[i : i + batch_size]) for i in range(0, len(counts), batch_size)]
        if not chunks:
            return torch.zeros((self.draws, 0, len(self.layers), x.shape[1], self.num_classes))
        return torch.from_numpy(np.concatenate(chunks, axis=1))

    def _constants(self) -> tuple:
        """(a, b, c, threshold) as float32, as the float network rounds them."""
        return (*(np.float32(decay) for decay in self.neuron.decays()), np.float32(self.neuron.threshold))

    def _readouts_array(self, counts: np.ndarray) -> np.ndarray:
        """An empty float32 array for the readouts (K, B, layers, T, classes) of ``counts``."""
        return np.empty((self.draws, counts.shape[0], len(self.layers), counts.shape[1], self.num_classes), np.float32)

    def _by_bit_counts(self, layout: tuple, counts: np.ndarray) -> np.ndarray:
        from . import kernels

        out = self._readouts_array(counts)
        kernels.dense_network_popcount(
            counts.reshape(*counts.shape[:2], -1), *layout[:4], *self._constants(), *layout[4:], out
        )
        return out

    def _by_changes(self, layout: tuple, counts: np.ndarray) -> np.ndarray:
        from . import kernels

        out = self._readouts_array(counts)
        kernels.dense_network_changes(
            counts.reshape(*counts.shape[:2], -1), layout.rows, layout.negated, layout.sources, layout.layers_at,
            layout.scales, layout.biases, *self._constants(), layout.readout_scales, layout.sums_dtype,
            layout.sums_size, out,
        )
        return out

    def _change_layout(self) -> "ChangeLayout":
        """The arrays of ``kernels.dense_network_changes``.  Each source of spikes (the inputs, then
        each layer) has one int8 row per unit: its +-1 weights to the next layer's neurons and then,
        for a layer, its readout's entries; each row adds to consecutive whole numbers in ``sums``:
        layer 0's drive, then per layer the next layer's drive and its own readout.  The rows are
        followed by their negation (an input that turns off adds that) and a row of zeros."""
        classes, draws = self.num_classes, self.draws
        fan_in = self.layers[0].weights.shape[1]
        blocks = [self.layers[0].weights.reshape(draws, -1)]
        sources = [(fan_in, 0, self.layers[0].weights.shape[2], 0, 0)]
        rows_at, sums_at, words_at, neurons_at, drive_at = blocks[0].shape[1], sources[0][2], -(-fan_in // 64), 0, 0
        layers_at = []
        for index, layer in enumerate(self.layers):
            fan_out = layer.weights.shape[2]
            last = index + 1 == len(self.layers)
            following = np.zeros((draws, fan_out, 0), np.int8) if last else self.layers[index + 1].weights
            readout = np.broadcast_to(layer.readout.T, (draws, fan_out, classes))
            block = np.concatenate([following, readout], axis=2)
            width = block.shape[2]
            sources.append((fan_out, rows_at, width, sums_at, words_at))
            layers_at.append((fan_out, neurons_at, drive_at, sums_at + width - classes))
            blocks.append(block.reshape(draws, -1))
            drive_at, rows_at, sums_at = sums_at, rows_at + fan_out * width, sums_at + width
            words_at, neurons_at = words_at + -(-fan_out // 64), neurons_at + fan_out
        widest = max(fan_in, *(layer.weights.shape[2] for layer in self.layers))
        scales, biases, readout_scales = self._synapses()
        rows = np.concatenate(blocks, axis=1)
        widest_row = max(source[2] for source in sources)
        return ChangeLayout(
            np.concatenate([rows, -rows, np.zeros((draws, widest_row), np.int8)], axis=1),
            rows.shape[1],
            np.array(sources, np.int64),
            np.array(layers_at, np.int64),
            scales,
            biases,
            readout_scales,
            np.int16 if widest <= np.iinfo(np.int16).max else np.int32,  # |sum| <= the units a row comes from
            sums_at,
        )

    def _synapses(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every layer's synapse scale, every neuron's bias (zeros where a layer has none) and every
        readout's scale, as float32 arrays."""
        return (
            np.array([layer.scale for layer in self.layers], np.float32),
            np.concatenate([layer.bias_or_zeros() for layer in self.layers]),
            np.array([layer.readout_scale for layer in self.layers], np.float32),
        )

    def _bits(self) -> tuple:
        """The arrays of ``kernels.dense_network_popcount``: the weights' and readouts' words, each
        layer's shapes and offsets, the scales and biases."""
        shapes, weights_at, neurons_at, readout_at = [], 0, 0, 0
        for layer in self.layers:
            fan_in, fan_out = layer.weights.shape[1:]
            shapes.append((fan_in, fan_out, weights_at, neurons_at, readout_at))
            weights_at += -(-fan_in // 64) * fan_out
            neurons_at += fan_out
            readout_at += self.num_classes * -(-fan_out // 64)
        scales, biases, readout_scales = self._synapses()
        return (
            np.concatenate([layer.plus_bits() for layer in self.layers], axis=1),
            np.array(shapes, np.int64),
            scales,
            biases,
            np.concatenate([layer.readout_plus_bits() for layer in self.layers]),
            readout_scales,
        )

    def _by_events(self, counts: np.ndarray) -> np.ndarray:
        from . import kernels

        constants = self._constants()
        batch, steps = counts.shape[:2]
        inputs = counts[None]  # (1, B, T, *input_shape): one input for every draw
        out = self._readouts_array(counts)
        for index, layer in enumerate(self.layers):
            synapse = (np.float32(layer.scale), layer.bias_or_zeros(), *constants)
            flat = inputs.reshape(*inputs.shape[:3], -1)  # (S_in, B, T, features)
            if layer.kind == "conv":
                height, width = inputs.shape[-2:]
                spikes = np.empty((self.draws, batch, steps, layer.weights.shape[-1], height, width), np.uint8)
                kernels.conv_events(flat, height, width, layer.weights, layer.weights.shape[2] // 2, *synapse, spikes)
            else:
                spikes = np.empty((self.draws, batch, steps, layer.weights.shape[-1]), np.uint8)
                kernels.dense_events(flat, layer.weights, *synapse, spikes)
            pooled = _max_pool(spikes, layer.pool)
            logits = np.empty((self.draws, batch, steps, self.num_classes), np.int32)
            kernels.readout_counts(pooled.reshape(*pooled.shape[:3], -1), layer.readout, logits)
            out[:, :, index] = logits.astype(np.float32) * np.float32(layer.readout_scale)
            inputs = pooled
        return out


class ChangeLayout(NamedTuple):
    """The arrays of ``kernels.dense_network_changes`` (its docstring says what each holds)."""

    rows: np.ndarray
    negated: int
    sources: np.ndarray
    layers_at: np.ndarray
    scales: np.ndarray
    biases: np.ndarray
    readout_scales: np.ndarray
    sums_dtype: type
    sums_size: int


def _spatial(layer: PackedLayer, input_shape: tuple[int, ...]) -> int:
    """Positions per output channel, at most: H x W of the network's input for a convolution (a
    later one, after pooling, has fewer), 1 for dense."""
    return math.prod(input_shape[-2:]) if layer.kind == "conv" else 1


def _max_pool(spikes: np.ndarray, size: int) -> np.ndarray:
    """2-D max pooling of (..., C, H, W) spikes over size x size windows, the rows and columns
    that do not fill a window dropped (as ``torch.nn.functional.max_pool2d``)."""
    if size == 1:
        return spikes
    height, width = spikes.shape[-2] // size, spikes.shape[-1] // size
    cropped = spikes[..., : height * size, : width * size]
    return cropped.reshape(*spikes.shape[:-2], height, size, width, size).max(axis=(-3, -1))


def network_problem(net: torch.nn.Module) -> str:
    """Why the packed engine cannot run ``net`` ('' when it can)."""
    from ..models.snn import ConvSpikingNet, SpikingMLP

    # exactly these classes: a subclass may change what the network computes, which this engine would not see
    if type(net) not in (SpikingMLP, ConvSpikingNet):
        return f"the packed engine runs a SpikingMLP or ConvSpikingNet, not {type(net).__name__}"
    for index, layer in enumerate(net.layers):
        if type(layer) not in (BinaryLinear, BinaryConv2d):
            return f"layer {index} is a {type(layer).__name__}, not a BinaryLinear or BinaryConv2d"
    if any(getattr(net, f"readout_{i}").dtype != torch.float32 for i in range(len(net.layers))):
        return "the packed engine reproduces float32 networks; this one is not float32"
    try:
        import numba  # noqa: F401
    except ImportError:
        return "numba is not installed"
    return ""


def weights_problem(net: torch.nn.Module, weights: Sequence[torch.Tensor]) -> str:
    """Why ``weights`` (one tensor per layer of ``net``, each with leading draw dimensions) cannot
    be packed ('' when they can): the wrong count or shape, another dtype or device, or an entry
    that is not +-1."""
    if len(weights) != len(net.layers):
        return f"expected {len(net.layers)} weight tensors, one per layer, got {len(weights)}"
    shapes = [layer.weight_shape for layer in net.layers]
    draws = {math.prod(weight.shape[: weight.dim() - len(shape)]) for weight, shape in zip(weights, shapes)}
    for index, (shape, weight) in enumerate(zip(shapes, weights)):
        if weight.dim() <= len(shape) or tuple(weight.shape[-len(shape) :]) != shape or len(draws) != 1:
            return (
                f"layer {index}'s weights have shape {tuple(weight.shape)}; "
                f"expected (K, *{shape}), K alike in every layer"
            )
        if weight.device.type != "cpu" or weight.dtype != torch.float32:
            return (
                f"layer {index}'s weights are {weight.dtype} on {weight.device}; "
                "the packed engine takes float32 on the CPU"
            )
        if not bool((weight.abs() == 1).all()):
            return f"layer {index}'s weights are not all +-1 (full-precision weights, relaxed draws or mean weights)"
    return ""


def inputs_problem(x: torch.Tensor, input_shape: tuple[int, ...]) -> str:
    """Why the packed engine cannot take input ``x`` ('' when it can): a tensor of spikes
    (N, T, *input_shape) whose entries are whole numbers from 0 to 255 (event counts)."""
    if not isinstance(x, torch.Tensor):
        return f"expected the input spikes as a torch.Tensor or numpy array, got {type(x).__name__}"
    if x.dim() != 2 + len(input_shape) or tuple(x.shape[2:]) != tuple(input_shape):
        return f"expected spikes of shape (batch, time, {', '.join(map(str, input_shape))}), got {tuple(x.shape)}"
    if x.dtype.is_complex:
        return f"the inputs are {x.dtype}; spikes are real numbers"
    if x.shape[1] == 0:
        return "the inputs have no time steps"
    # every uint8 converts back to a whole number 0..255: any other entry (NaN too) comes back changed
    if not torch.equal(x.to(torch.uint8).to(x.dtype), x):
        return f"the packed engine takes spikes or event counts (whole numbers 0..{MAX_COUNT}); these inputs are not"
    return ""
