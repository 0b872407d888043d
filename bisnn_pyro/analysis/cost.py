r"""Operations, spikes, weight memory and an energy estimate of a spiking network on a test set.

``network_cost(net, weights, x)`` (and ``run_cost(run)``, ``bisnn-pyro cost RUN_DIR``) runs the
network without gradients, exactly as it predicts, counts its spikes, and turns the counts into
operations and energy.  Every figure is **per test sequence and per pass of the network**: the
mean over the sequences and, for an ensemble, over its K weight draws (an ensemble's prediction
costs K passes: ``prediction_energy_pj``).

**What is counted**, per layer and per layer's readout (a row each, the readout after its layer):

* ``spikes_per_neuron_step``: the layer's spikes before pooling / (its neurons x steps); a
  convolution's neurons are out_channels x H x W of its input ("same" padding), before pooling.
* ``input_spikes``: the spikes entering the row: the data's for the first layer, the pooled spikes
  of the layer before for the others (max pooling: a pooled unit spikes when any unit of its
  window does), the pooled spikes of its layer for a readout.
* ``synops``: synaptic operations of the network as it runs, event-driven: each input spike adds
  its weight to every output it reaches, one accumulate per spike per fan-out.  A dense row's input
  reaches ``out_features`` outputs (a readout's: the classes); a convolution's input at (c, i, j)
  reaches out_channels x n(i) x n(j), where n(i) = min(i + k // 2, H - 1) - max(i - k // 2, 0) + 1
  counts the kernel rows inside the map (exact at the borders: the zero padding costs nothing).
* ``connections``: the (input, output) pairs the synapse joins, the sum of those fan-outs over
  every input unit (a dense row: in x out; a convolution: in_ch x out_ch x sum n(i) x sum n(j)).
* ``fp_snn_macs``: a full-precision SNN of the same shape in DECOLLE's order, whose synapse
  multiplies the (real, dense) filtered input traces by W at every step: connections x steps.
* ``ann_macs``: a non-spiking network of the same shape: connections x ``ann_passes`` (forward
  passes per sequence; default 1, one pass per input, as for a static input encoded over T steps).
* ``weights`` and ``weight_bits``: synapses, and their memory at this network's precision (1 bit
  for +-1 weights, 32 for float32).

Readouts: prediction reads the last layer's readout only (averaged after burn-in); the other
readouts serve DECOLLE's local losses in training.  The totals and energies therefore count the
layers and the last readout (``in_total``); ``all_readouts=True`` counts every readout, as the
network's ``forward`` computes them.  Readouts are counted at every step.

**Energy model** (pJ per sequence and pass; the constants are ``ENERGY_PJ``, overridable).  With
$m$ the energy of reading one weight bit, $E_{64} / 64$, where $E_{64}$ is the 64-bit read energy of
the smallest memory of ``ENERGY_PJ`` that holds the network's weights (those of the rows counted,
at its precision: SRAM of 8 KB, 32 KB, 1 MB, else DRAM), each weight read once per operation
(no reuse):

* ``binary_snn`` (+-1 weights, event-driven, as this library predicts): per synop one integer add
  (``int_add``: an int32 add; the accumulator holds whole numbers) and one weight bit read ($m_1$);
* ``float_snn`` (float32 weights, event-driven, the same spikes): per synop ``float_add`` + $32 m_{32}$;
* ``dense_fp_snn`` (float32, DECOLLE's order): per MAC ``float_mult`` + ``float_add`` + $32 m_{32}$;
* ``ann`` (float32, non-spiking): per MAC ``float_mult`` + ``float_add`` + $32 m_{32}$, and one
  ``float_add`` per neuron per pass (the activation, ReLU's compare); a readout adds no neuron cost;
* every spiking network, per neuron per step, the float32 LIF update of ``lif_drive_step_``:
  P = aP + Q, Q = bQ + D, R = cR + S (three multiply-adds), U = scale P (one multiply, plus an add
  with a bias), the compare U > R: 4 ``float_mult`` + 4 ``float_add`` (+1 with a bias); per readout
  class per step one ``float_mult`` (the readout's scale).

Not counted: moving spikes and activations, pooling (a logical OR of spikes, a max in the ANN),
control, leakage.  ``energy_pj`` is the estimate of the network as given: ``binary_snn`` when
every weight is +-1, else ``float_snn``; ``energy_by_network_pj`` holds all four side by side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import torch
from torch.utils.data import DataLoader

from ..adapters.pyro_internals import local_params
from ..config.options import closest
from ..data import SpikeDataset
from ..errors import ConfigError
from ..inference.predict import point_weights
from ..models.conv import BinaryConv2d, max_pool
from ..models.layers import BinaryLinear
from ..models.neurons import LIFState, lif_drive_step_

if TYPE_CHECKING:
    from ..experiment import Run

__all__ = [
    "ENERGY_PJ",
    "ENERGY_SOURCE",
    "SpikeTotals",
    "cost_table",
    "count_spikes",
    "energy_constants",
    "energy_estimates",
    "layer_counts",
    "network_cost",
    "parse_energy",
    "run_cost",
    "weight_memory",
]

ENERGY_SOURCE = (
    "M. Horowitz, 'Computing's energy problem (and what we can do about it)', ISSCC 2014, 45 nm, 0.9 V"
)

ENERGY_PJ: dict[str, float] = {
    "int_add": 0.1,
    "float_add": 0.9,
    "float_mult": 3.7,
    "sram_8kb_read_64b": 10.0,
    "sram_32kb_read_64b": 20.0,
    "sram_1mb_read_64b": 100.0,
    "dram_read_64b": 1300.0,
}
"""Energy per operation in picojoules, from Horowitz, "Computing's energy problem (and what we can
do about it)", ISSCC 2014 (45 nm, 0.9 V): ``int_add`` an int32 add (0.1 pJ; int8: 0.03),
``float_add`` a float32 add (0.9 pJ; float16: 0.4), ``float_mult`` a float32 multiply (3.7 pJ;
float16: 1.1; int32: 3.1; int8: 0.2), and a 64-bit read from SRAM of 8 KB (10 pJ), 32 KB (20 pJ),
1 MB (100 pJ) or from DRAM (1.3 to 2.6 nJ: 1300 pJ, the low end).  Override any of them by name
(``energies={"int_add": 0.03}``, ``--energy int_add=0.03``)."""

MEMORIES = (  # (constant, capacity in bits), smallest first
    ("sram_8kb_read_64b", 8 * 1024 * 8),
    ("sram_32kb_read_64b", 32 * 1024 * 8),
    ("sram_1mb_read_64b", 1024 * 1024 * 8),
    ("dram_read_64b", math.inf),
)
NETWORKS = ("binary_snn", "float_snn", "dense_fp_snn", "ann")
FLOAT_BITS = 32


def energy_constants(overrides: Mapping[str, float] | None = None) -> dict[str, float]:
    """``ENERGY_PJ`` with ``overrides`` (pJ by name); a ``ConfigError`` for an unknown name or a
    value that is not a finite number >= 0."""
    constants = dict(ENERGY_PJ)
    for name, value in (overrides or {}).items():
        if name not in constants:
            raise ConfigError(
                f"unknown energy constant {name!r}{closest(name, constants)}; expected one of {', '.join(constants)}"
            )
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ConfigError(f"energy constant {name} must be a finite number of pJ >= 0, got {value!r}")
        constants[name] = float(value)
    return constants


def parse_energy(items: Sequence[str]) -> dict[str, float]:
    """``NAME=PJ`` strings (``--energy``) as overrides, checked by ``energy_constants``."""
    overrides = {}
    for item in items:
        name, equals, value = item.partition("=")
        if not equals:
            raise ConfigError(f"--energy {item!r}: expected NAME=PJ, e.g. int_add=0.03")
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(f"--energy {item!r}: {value.strip()!r} is not a number of pJ") from None
        overrides[name.strip()] = number
    energy_constants(overrides)
    return overrides


@dataclass(frozen=True)
class SpikeTotals:
    """Spikes of a network's passes over some sequences, summed over the passes (weight draws x
    sequences) and the steps: ``inputs`` the data's per input unit (the first layer's input shape,
    flattened for a dense first layer), ``pooled`` per layer its spikes after pooling per unit
    (``net.output_shapes[l]``: the input of the next layer and of the readout), ``outputs`` per
    layer its spikes before pooling (the network's ``spike_counts``), ``neurons`` per layer its
    neurons before pooling; ``draws`` weight draws, ``sequences`` sequences of ``steps`` steps."""

    inputs: torch.Tensor
    pooled: list[torch.Tensor]
    outputs: list[float]
    neurons: list[int]
    draws: int
    sequences: int
    steps: int

    @property
    def passes(self) -> int:
        """Passes of the network: weight draws x sequences."""
        return self.draws * self.sequences


def _weight_shape(layer: torch.nn.Module) -> tuple[int, ...]:
    if not isinstance(layer, (BinaryLinear, BinaryConv2d)):
        raise TypeError(f"cost counts BinaryLinear and BinaryConv2d layers, got {type(layer).__name__}")
    return layer.weight_shape


def _stacked(net: torch.nn.Module, weights: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """One tensor per layer with one leading draw dimension (K, *weight shape)."""
    if len(weights) != len(net.layers):
        raise ValueError(f"expected {len(net.layers)} weight tensors, one per layer, got {len(weights)}")
    stacked = []
    for index, (layer, weight) in enumerate(zip(net.layers, weights)):
        shape = _weight_shape(layer)
        if tuple(weight.shape[weight.dim() - len(shape):]) != shape:
            raise ValueError(f"layer {index}: expected weights of shape (..., {', '.join(map(str, shape))}), "
                             f"got {tuple(weight.shape)}")
        stacked.append(weight.detach().reshape(-1, *shape))
    draws = {w.shape[0] for w in stacked}
    if len(draws) != 1:
        raise ValueError(f"every layer needs the same number of weight draws, got {sorted(draws)}")
    return stacked


def _batches(data: torch.Tensor | Iterable, batch_size: int) -> Iterable[torch.Tensor]:
    """Spike tensors (B, T, ...) from a tensor (N, T, ...) or an iterable of batches (or of
    (x, y) pairs)."""
    if isinstance(data, torch.Tensor):
        return (data[i : i + batch_size] for i in range(0, data.shape[0], batch_size))
    return (batch[0] if isinstance(batch, (tuple, list)) else batch for batch in data)


@torch.no_grad()
def count_spikes(
    net: torch.nn.Module, weights: Sequence[torch.Tensor], data: torch.Tensor | Iterable, batch_size: int = 200
) -> SpikeTotals:
    """Run ``net`` (a ``DecolleNetwork`` of ``BinaryLinear`` and ``BinaryConv2d`` layers) without
    gradients on ``data`` (spikes (N, T, *input_shape), or an iterable of such batches) with
    ``weights`` (one tensor per layer, optionally with leading draw dimensions) and total its
    spikes layer by layer, before and after pooling.

    The loop is the network's own step loop without gradients (``lif_drive_step_`` on each
    layer's drive ``layer.drive(weight)``, then ``max_pool``), so its spikes are the network's
    (``outputs`` equals the sum of its ``spike_counts``) and it keeps the pooled spikes the
    network does not report.  It counts exactly ``SpikingMLP`` and ``ConvSpikingNet``: a subclass may
    compute something this loop does not."""
    from ..models.snn import ConvSpikingNet, SpikingMLP

    if type(net) not in (SpikingMLP, ConvSpikingNet):
        raise TypeError(f"cost counts a SpikingMLP or ConvSpikingNet, not {type(net).__name__}")
    stacked = _stacked(net, weights)
    draws, device, dtype = stacked[0].shape[0], stacked[0].device, stacked[0].dtype
    first = (math.prod(net.input_shape),) if net.flatten_input else tuple(net.input_shape)
    layer_inputs = [first, *net.output_shapes[:-1]]
    inputs_total, pooled = None, [torch.zeros(shape, device=device, dtype=torch.float64) for shape in net.output_shapes]
    outputs, neurons = [torch.zeros((), device=device, dtype=torch.float64) for _ in stacked], [0] * len(stacked)
    sequences, steps = 0, None
    with local_params():  # a bias is a module-local parameter
        drives = [(layer.drive(weight), _bias(layer)) for layer, weight in zip(net.layers, stacked)]
        for x in _batches(data, batch_size):
            if x.dim() != 2 + len(net.input_shape) or tuple(x.shape[2:]) != tuple(net.input_shape):
                raise ValueError(f"expected spikes of shape (batch, time, {', '.join(map(str, net.input_shape))}), "
                                 f"got {tuple(x.shape)}")
            if steps is not None and x.shape[1] != steps:
                raise ValueError(f"every sequence needs the same number of steps, got {steps} and {x.shape[1]}")
            steps, sequences = x.shape[1], sequences + x.shape[0]
            x = x.to(device=device, dtype=dtype)
            if net.flatten_input:
                x = x.flatten(2)
            inputs_total = _add(inputs_total, x.sum((0, 1)).double() * draws)
            states: list[LIFState | None] = [None] * len(stacked)
            for t in range(steps):
                inputs = x[:, t]
                for index, (layer, (drive, bias)) in enumerate(zip(net.layers, drives)):
                    dims = len(layer_inputs[index])
                    if isinstance(layer, BinaryLinear) and dims > 1:
                        inputs = inputs.flatten(-dims)
                    step_drive = drive(inputs)
                    if states[index] is None:
                        states[index] = LIFState(*(torch.zeros_like(step_drive) for _ in range(4)))
                    states[index] = lif_drive_step_(step_drive, states[index], layer.scale, bias, net.neuron)
                    spikes = states[index].s
                    features = len(net.output_shapes[index])
                    neurons[index] = math.prod(spikes.shape[-features:])
                    outputs[index] += spikes.sum(dtype=torch.float64)
                    inputs = max_pool(spikes, net.pools[index]) if net.pools[index] > 1 else spikes
                    pooled[index] += inputs.reshape(-1, *net.output_shapes[index]).sum(0).double()
    if steps is None:
        raise ValueError("no sequences to count")
    return SpikeTotals(
        inputs_total.cpu(), [p.cpu() for p in pooled], [o.item() for o in outputs], neurons, draws, sequences, steps
    )


def _bias(layer: torch.nn.Module) -> torch.Tensor | None:
    """The layer's bias shaped to broadcast over its output's trailing dimensions (as the network's)."""
    bias = layer.bias
    if bias is None:
        return None
    return bias.detach().view(-1, 1, 1) if isinstance(layer, BinaryConv2d) else bias.detach()


def _add(total: torch.Tensor | None, value: torch.Tensor) -> torch.Tensor:
    return value if total is None else total + value


def _border_counts(size: int, kernel_size: int) -> torch.Tensor:
    """n(i) for i < size: the outputs of a "same", stride-1 convolution along one axis that input i reaches."""
    half = kernel_size // 2
    index = torch.arange(size)
    return ((index + half).clamp(max=size - 1) - (index - half).clamp(min=0) + 1).double()


def _fan_out(layer: torch.nn.Module, input_shape: Sequence[int]) -> torch.Tensor:
    """Per input unit of ``layer`` (its input shape; flattened for a dense layer), how many outputs
    its spike reaches."""
    if isinstance(layer, BinaryConv2d):
        channels, height, width = input_shape
        reach = torch.outer(_border_counts(height, layer.kernel_size), _border_counts(width, layer.kernel_size))
        return (layer.out_channels * reach).expand(channels, height, width)
    return torch.full((math.prod(input_shape),), float(layer.out_features), dtype=torch.float64)


def layer_counts(
    net: torch.nn.Module, totals: SpikeTotals, *, ann_passes: int = 1, all_readouts: bool = False, bits: int = 1
) -> list[dict[str, Any]]:
    """The rows of the cost table (see the module's docstring): per layer, then its readout, the
    counts per sequence and pass from ``totals``; ``bits`` per weight for ``weight_bits``."""
    rows = []
    last = len(net.layers) - 1
    per_pass = 1.0 / totals.passes
    for index, layer in enumerate(net.layers):
        arriving = totals.inputs if index == 0 else totals.pooled[index - 1]
        fan_out = _fan_out(layer, arriving.shape)
        connections = int(fan_out.sum().item())
        weights = math.prod(_weight_shape(layer))
        neurons = totals.neurons[index]
        conv = isinstance(layer, BinaryConv2d)
        rows.append(
            _row(
                f"layer {index}",
                "conv" if conv else "dense",
                list(_weight_shape(layer)) if conv else [layer.in_features, layer.out_features],
                neurons=neurons,
                weights=weights,
                connections=connections,
                input_spikes=arriving.sum().item() * per_pass,
                synops=(arriving.reshape(fan_out.shape) * fan_out).sum().item() * per_pass,
                spikes=totals.outputs[index] / (neurons * totals.steps * totals.passes),
                steps=totals.steps,
                ann_passes=ann_passes,
                neuron_mults=4,
                neuron_adds=4 + (layer.bias is not None),
                ann_neuron_adds=1,
                in_total=True,
                bits=bits,
            )
        )
        fan_in, classes = math.prod(net.output_shapes[index]), net.num_classes
        arriving = totals.pooled[index]
        rows.append(
            _row(
                f"readout {index}",
                "readout",
                [fan_in, classes],
                neurons=classes,
                weights=fan_in * classes,
                connections=fan_in * classes,
                input_spikes=arriving.sum().item() * per_pass,
                synops=arriving.sum().item() * classes * per_pass,
                spikes=None,
                steps=totals.steps,
                ann_passes=ann_passes,
                neuron_mults=1,
                neuron_adds=0,
                ann_neuron_adds=0,
                in_total=all_readouts or index == last,
                bits=bits,
            )
        )
    return rows


def _row(
    name: str, kind: str, shape: list[int], *, neurons: int, weights: int, connections: int, input_spikes: float,
    synops: float, spikes: float | None, steps: int, ann_passes: int, neuron_mults: int, neuron_adds: int,
    ann_neuron_adds: int, in_total: bool, bits: int,
) -> dict[str, Any]:
    return {
        "name": name,
        "kind": kind,
        "shape": shape,
        "neurons": neurons,
        "weights": weights,
        "weight_bits": weights * bits,
        "connections": connections,
        "input_spikes": input_spikes,
        "spikes_per_neuron_step": spikes,
        "synops": synops,
        "fp_snn_macs": connections * steps,
        "ann_macs": connections * ann_passes,
        "neuron_updates": neurons * steps,
        "neuron_mults": neurons * steps * neuron_mults,
        "neuron_adds": neurons * steps * neuron_adds,
        "ann_neuron_adds": neurons * ann_passes * ann_neuron_adds,
        "in_total": in_total,
    }


def weight_memory(bits: float) -> str:
    """The constant of the smallest memory of ``ENERGY_PJ`` that holds ``bits`` bits of weights."""
    return next(name for name, capacity in MEMORIES if bits <= capacity)


def energy_estimates(rows: list[dict[str, Any]], constants: Mapping[str, float]) -> dict[str, Any]:
    """Per row (added to each as ``energy_pj``) and in total over the rows ``in_total``, the energy
    in pJ of the four networks of the module's docstring, and the weight memory each reads."""
    counted = [row for row in rows if row["in_total"]]
    weights = sum(row["weights"] for row in counted)
    memory = {"binary": weight_memory(weights), "float32": weight_memory(weights * FLOAT_BITS)}
    bit_binary = constants[memory["binary"]] / 64
    bit_float = constants[memory["float32"]] / 64
    synop = {
        "binary_snn": constants["int_add"] + bit_binary,
        "float_snn": constants["float_add"] + FLOAT_BITS * bit_float,
    }
    mac = constants["float_mult"] + constants["float_add"] + FLOAT_BITS * bit_float
    totals = dict.fromkeys(NETWORKS, 0.0)
    for row in rows:
        neuron = row["neuron_mults"] * constants["float_mult"] + row["neuron_adds"] * constants["float_add"]
        row["energy_pj"] = {
            "binary_snn": row["synops"] * synop["binary_snn"] + neuron,
            "float_snn": row["synops"] * synop["float_snn"] + neuron,
            "dense_fp_snn": row["fp_snn_macs"] * mac + neuron,
            "ann": row["ann_macs"] * mac + row["ann_neuron_adds"] * constants["float_add"],
        }
        if row["in_total"]:
            for network in NETWORKS:
                totals[network] += row["energy_pj"][network]
    return {
        "energy_by_network_pj": totals,
        "weight_memory": {
            "binary": {"bits": weights, "memory": memory["binary"]},
            "float32": {"bits": weights * FLOAT_BITS, "memory": memory["float32"]},
        },
        "pj_per_synop": synop,
        "pj_per_mac": mac,
    }


def _is_binary(weights: Sequence[torch.Tensor]) -> bool:
    return all(bool(((w == 1) | (w == -1)).all()) for w in weights)


def network_cost(
    net: torch.nn.Module,
    weights: Sequence[torch.Tensor],
    data: torch.Tensor | Iterable,
    *,
    energies: Mapping[str, float] | None = None,
    ann_passes: int = 1,
    all_readouts: bool = False,
    batch_size: int = 200,
) -> dict[str, Any]:
    """Spikes, operations, weight memory and energy of ``net`` with ``weights`` (one tensor per
    layer, optionally with leading draw dimensions: an ensemble) on ``data`` (spikes (N, T, ...)
    or an iterable of batches), per sequence and pass: one JSON-ready dict with ``layers`` (the
    rows of ``layer_counts`` with their ``energy_pj``), ``totals``, ``energy_pj`` (the network as
    given: binary when every weight is +-1, else float32), ``energy_by_network_pj``,
    ``prediction_energy_pj`` (all K passes), the weight memory and the constants used (``ENERGY_PJ``
    with ``energies``).  The model is the module's docstring."""
    constants = energy_constants(energies)
    if ann_passes < 1:
        raise ConfigError(f"ann_passes must be >= 1, got {ann_passes}")
    totals = count_spikes(net, weights, data, batch_size)
    binary = _is_binary(weights)
    rows = layer_counts(net, totals, ann_passes=ann_passes, all_readouts=all_readouts, bits=1 if binary else FLOAT_BITS)
    energy = energy_estimates(rows, constants)
    counted = [row for row in rows if row["in_total"]]
    sums = ("synops", "fp_snn_macs", "ann_macs", "weights", "weight_bits", "neuron_updates")
    own = energy["energy_by_network_pj"]["binary_snn" if binary else "float_snn"]
    return {
        "network": type(net).__name__,
        "weights": "binary" if binary else "float32",
        "sequences": totals.sequences,
        "steps": totals.steps,
        "samples": totals.draws,
        "ann_passes": ann_passes,
        "readouts": "all" if all_readouts else "last",
        "layers": rows,
        "totals": {key: sum(row[key] for row in counted) for key in sums},
        "energy_pj": own,
        **energy,
        "prediction_energy_pj": own * totals.draws,
        "energy_constants_pj": constants,
        "energy_source": ENERGY_SOURCE,
    }


COST_MODES = ("map", "ensemble")


def run_cost(
    run: Run,
    mode: str = "map",
    samples: int | None = None,
    *,
    energies: Mapping[str, float] | None = None,
    ann_passes: int = 1,
    all_readouts: bool = False,
    batch_size: int = 200,
) -> dict[str, Any]:
    """``network_cost`` of a run on its test set with its MAP weights (``mode="map"``) or
    ``samples`` posterior draws (``"ensemble"``; default: the run's K), the draws the run would
    make next (as ``Run.test_predictions``); adds ``run``, ``rule`` and ``mode``.  ``ConfigError``
    for what ``Run.prediction_draws`` refuses (K draws of a point estimate, ``samples`` with the MAP)."""
    if mode not in COST_MODES:
        raise ConfigError(f"cost mode must be one of {', '.join(COST_MODES)}, got {mode!r}")
    mode, draws = run.prediction_draws(mode, samples)
    run.check_prediction_memory(draws, batch_size)
    example = run.test.x[:1] if isinstance(run.test, SpikeDataset) else run.test[0][0].unsqueeze(0)
    if mode == "ensemble":
        with run.trainer.draws.forked():
            sites = run.bsnn.draw_weights(example, draws)
    else:
        sites = point_weights(run.bsnn.guide, "map")
    net = run.bsnn.net
    weights = [sites[f"layers.{index}.weight"] for index in range(len(net.layers))]
    data = run.test.x if isinstance(run.test, SpikeDataset) else DataLoader(run.test, batch_size=batch_size)
    cost = network_cost(
        net, weights, data, energies=energies, ann_passes=ann_passes, all_readouts=all_readouts, batch_size=batch_size
    )
    return {"run": str(run.directory), "rule": run.config.label, "mode": mode, **cost}


def _energy(pj: float) -> str:
    for unit, size in (("mJ", 1e9), ("uJ", 1e6), ("nJ", 1e3)):
        if pj >= size:
            return f"{pj / size:.3g} {unit}"
    return f"{pj:.3g} pJ"


def _count(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def cost_table(cost: Mapping[str, Any]) -> str:
    """``network_cost`` or ``run_cost``'s result as text: one aligned row per layer and readout
    (counts per sequence and pass), then the energy of the four networks."""
    header = ("row", "kind", "shape", "neurons", "spikes/neuron/step", "input spikes", "synops",
              "fp-SNN MACs", "ANN MACs", "weight bits")
    table = [header]
    for row in cost["layers"]:
        rate = row["spikes_per_neuron_step"]
        table.append((
            row["name"] + ("" if row["in_total"] else " *"),
            row["kind"],
            "x".join(map(str, row["shape"])),
            f"{row['neurons']:,}",
            "-" if rate is None else f"{rate:.4f}",
            _count(row["input_spikes"]),
            _count(row["synops"]),
            f"{row['fp_snn_macs']:,}",
            f"{row['ann_macs']:,}",
            f"{row['weight_bits']:,}",
        ))
    totals = cost["totals"]
    table.append(("total", "", "", "", "", "", _count(totals["synops"]), f"{totals['fp_snn_macs']:,}",
                  f"{totals['ann_macs']:,}", f"{totals['weight_bits']:,}"))
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if i < 3 else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths)))
             for line in table]
    source = f"{cost['run']} ({cost['rule']} rule): " if "run" in cost else ""
    mode = f"{cost.get('mode', 'given')} weights" + (f", K={cost['samples']}" if cost["samples"] > 1 else "")
    intro = (f"{source}{cost['network']} with {cost['weights']} weights ({mode}): per test sequence and pass, mean "
             f"over {cost['sequences']:,} sequences of {cost['steps']} steps")
    starred = not all(row["in_total"] for row in cost["layers"])
    skipped = ["* not in the totals: prediction reads the last readout only"] if starred else []
    energy, memory = cost["energy_by_network_pj"], cost["weight_memory"]
    constants = cost["energy_constants_pj"]
    own = "binary_snn" if cost["weights"] == "binary" else "float_snn"
    described = {
        "binary_snn": f"binary SNN, event-driven ({memory['binary']['bits']:,} weight bits in "
                      f"{_memory_name(memory['binary']['memory'])})",
        "float_snn": f"float32 SNN, event-driven, same spikes ({memory['float32']['bits']:,} bits in "
                     f"{_memory_name(memory['float32']['memory'])})",
        "dense_fp_snn": "full-precision SNN, DECOLLE order (W x traces every step)",
        "ann": f"non-spiking network, {cost['ann_passes']} pass{'es' if cost['ann_passes'] > 1 else ''} per sequence",
    }
    energy_lines = [
        f"  {_energy(energy[name]):>10}  {described[name]}{'  <- this network' if name == own else ''}"
        for name in NETWORKS
    ]
    if cost["samples"] > 1:
        energy_lines.append(f"  {_energy(cost['prediction_energy_pj']):>10}  this network's prediction, "
                            f"{cost['samples']} passes")
    return "\n".join([
        intro,
        *lines,
        *skipped,
        "energy per sequence and pass:",
        *energy_lines,
        "constants (pJ): " + ", ".join(f"{name} {value:g}" for name, value in constants.items()),
        f"from {cost['energy_source']}",
    ])


def _memory_name(constant: str) -> str:
    return {"sram_8kb_read_64b": "8 KB SRAM", "sram_32kb_read_64b": "32 KB SRAM",
            "sram_1mb_read_64b": "1 MB SRAM", "dram_read_64b": "DRAM"}[constant]
