"""The packed file: a run's MAP network, or K posterior draws, with one bit per synapse.

``export_packed(run, path, mode, samples)`` writes a ``.npz`` archive (numpy's zip of arrays, read
with ``allow_pickle=False``: no code runs on loading) holding, per layer, the +1 weights as bits
(``numpy.packbits`` of the (K, out, fan-in) signs, little bit order), the bias if any and the fixed
readout's signs as bits, and a JSON header with the shapes, the neuron constants, the synapse and
readout scales and the run's configuration (for its likelihood: how readouts become class
probabilities).  ``load_packed(path)`` gives a ``PackedModel`` that predicts with the packed engine,
needing neither the run folder nor PyTorch's checkpoint.
"""

from __future__ import annotations

import json
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import BisnnError, ConfigError, one_line
from ..models.neurons import LIFParameters
from .network import PackedLayer, PackedNetwork

FORMAT, VERSION = "bisnn-pyro-packed", 1


class PackedFileError(BisnnError, ValueError):
    """A packed file is missing, unreadable, damaged or not one this version reads."""


@dataclass(repr=False)
class PackedModel:
    """A packed network with the likelihood that turns its readouts into class probabilities."""

    def __repr__(self) -> str:
        return f"PackedModel({self.mode}, {self.network!r}, {type(self.likelihood).__name__})"

    network: PackedNetwork
    likelihood: Any
    header: dict

    @property
    def mode(self) -> str:
        """'map' (one network) or 'ensemble' (K posterior draws)."""
        return self.header["mode"]

    def probs(self, x: torch.Tensor, batch_size: int = 250) -> torch.Tensor:
        """Class probabilities per draw (K, N, classes) for input spikes ``x`` (N, T, *input_shape)."""
        return self.likelihood.probs(self.network.readouts(x, batch_size))

    def predict(self, x: torch.Tensor, batch_size: int = 250) -> torch.Tensor:
        """Posterior-predictive class probabilities (N, classes): the draws averaged in probability."""
        return self.probs(x, batch_size).mean(0)


def weight_bytes(network: PackedNetwork) -> tuple[int, int]:
    """(bytes of the packed +-1 weights, bytes of the same weights in float32) over all draws."""
    packed = sum(layer.weights.shape[0] * layer.weights.shape[-1] * -(-layer.fan_in // 8) for layer in network.layers)
    return packed, 4 * sum(layer.weights.size for layer in network.layers)


def save_packed(model: PackedModel, path: str | Path) -> Path:
    """Write ``model`` to ``path`` (a ``.npz`` file; the suffix is added if missing), atomically."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path} is a folder; name a file to write")
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    if path.is_dir():
        raise ConfigError(f"{path} is a folder; name a file to write")
    if not path.parent.is_dir():
        raise ConfigError(f"no folder {path.parent} to write {path.name} in")
    network = model.network
    arrays: dict[str, np.ndarray] = {}
    layers = []
    for index, layer in enumerate(network.layers):
        signs = layer.weights.reshape(layer.weights.shape[0], layer.fan_in, -1).transpose(0, 2, 1)  # (K, out, fan-in)
        arrays[f"layer{index}.plus_bits"] = np.packbits(signs > 0, axis=-1, bitorder="little")
        arrays[f"layer{index}.readout_bits"] = np.packbits(layer.readout > 0, axis=-1, bitorder="little")
        if layer.bias.size:
            arrays[f"layer{index}.bias"] = layer.bias
        layers.append({
            "kind": layer.kind,
            "weight_shape": list(layer.weights.shape[1:]),
            "scale": layer.scale,
            "pool": layer.pool,
            "readout_shape": list(layer.readout.shape),
            "readout_scale": layer.readout_scale,
        })
    header = {
        **model.header,
        "format": FORMAT,
        "version": VERSION,
        "draws": network.draws,
        "input_shape": list(network.input_shape),
        "num_classes": network.num_classes,
        "neuron": network.neuron._asdict(),
        "layers": layers,
    }
    arrays["header"] = np.array(json.dumps(header))
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as handle:
        np.savez_compressed(handle, **arrays)
    tmp.replace(path)
    return path


def load_packed(path: str | Path) -> PackedModel:
    """The ``PackedModel`` in ``path``; ``PackedFileError`` in one line for a file that is missing,
    not a packed file, or damaged."""
    path = Path(path)
    if not path.is_file():
        raise PackedFileError(f"no packed file at {path}")
    if not zipfile.is_zipfile(path):  # numpy would read other files as pickles, and suggest allow_pickle
        raise PackedFileError(f"{path} is not a packed file (not an .npz archive)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
        header = json.loads(str(arrays.pop("header")))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as error:
        reason = f"{type(error).__name__}: {one_line(error)}"
        raise PackedFileError(f"{path} is not a readable packed file ({reason})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise PackedFileError(f"{path} is not a bisnn-pyro packed file")
    if header.get("version") != VERSION:
        raise PackedFileError(f"{path} is packed format version {header.get('version')}; this version reads {VERSION}")
    try:
        network = _network(header, arrays)
        _check_chain(network)
        if header.get("mode") not in ("map", "ensemble"):
            raise ValueError(f"its mode {header.get('mode')!r} is neither 'map' nor 'ensemble'")
        likelihood = _likelihood(header)
    except (KeyError, TypeError, ValueError, IndexError, ZeroDivisionError) as error:
        raise PackedFileError(f"{path} is damaged: {one_line(error).strip(chr(39))}") from None
    return PackedModel(network, likelihood, header)


def _network(header: dict, arrays: dict[str, np.ndarray]) -> PackedNetwork:
    draws = int(header["draws"])
    if not header["layers"]:
        raise ValueError("it has no layers")
    layers = []
    for index, spec in enumerate(header["layers"]):
        shape = [int(size) for size in spec["weight_shape"]]  # dense (in, out); conv (in, k, k, out)
        fan_in, fan_out = math.prod(shape[:-1]), shape[-1]
        bits = _array(arrays, f"layer{index}.plus_bits", (draws, fan_out, -(-fan_in // 8)), np.uint8)
        signs = np.unpackbits(bits, axis=-1, count=fan_in, bitorder="little").astype(np.int8) * 2 - 1
        weights = np.ascontiguousarray(signs.transpose(0, 2, 1).reshape(draws, *shape))
        classes, features = (int(size) for size in spec["readout_shape"])
        readout_bits = _array(arrays, f"layer{index}.readout_bits", (classes, -(-features // 8)), np.uint8)
        readout = np.unpackbits(readout_bits, axis=-1, count=features, bitorder="little").astype(np.int8) * 2 - 1
        bias_name = f"layer{index}.bias"
        bias = _array(arrays, bias_name, (fan_out,), np.float32) if bias_name in arrays else np.zeros(0, np.float32)
        if spec["kind"] not in ("dense", "conv"):
            raise ValueError(f"layer {index} is of unknown kind {spec['kind']!r}")
        layers.append(PackedLayer(spec["kind"], weights, float(spec["scale"]), bias, int(spec["pool"]), readout,
                                  float(spec["readout_scale"])))
    neuron = LIFParameters(**{name: float(value) for name, value in header["neuron"].items()})
    return PackedNetwork(tuple(int(s) for s in header["input_shape"]), neuron, layers, int(header["num_classes"]))


def _array(arrays: dict[str, np.ndarray], name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
    if name not in arrays:
        raise ValueError(f"array {name} is missing")
    array = arrays[name]
    if array.dtype != dtype or array.shape != shape:
        raise ValueError(f"array {name} is {array.dtype} {array.shape}; expected {np.dtype(dtype)} {shape}")
    return array


def _likelihood(header: dict):
    """The run's likelihood, built from the header's configuration without importing anything it
    names: a likelihood of a plugin is refused (loading a file runs no code from it)."""
    from ..config.run import ExperimentConfig
    from ..errors import ConfigError
    from ..inference.rules import build

    settings = {key: value for key, value in dict(header["config"]).items() if key != "plugins"}
    try:
        config = ExperimentConfig.from_dict(settings, saved=True)
        return build(config.parts, "likelihood", num_data=1, burn_in=config.burn_in)
    except ConfigError as error:
        raise ValueError(f"its likelihood cannot be built without the run's plugins ({error})") from None


def _check_chain(network: PackedNetwork) -> None:
    """ValueError where the layers do not fit together: each layer's fan-in is what the one before
    gives (after pooling), each readout reads its layer's features, the constants are usable."""
    if network.draws < 1:
        raise ValueError("it holds no weight draws")
    if min(network.neuron[:3]) <= 0 or not all(math.isfinite(v) for v in network.neuron):
        raise ValueError(f"its neuron constants {tuple(network.neuron)} are not positive time constants")
    shape = network.input_shape
    for index, layer in enumerate(network.layers):
        if layer.weights.shape[0] != network.draws:
            raise ValueError(f"layer {index} holds {layer.weights.shape[0]} draws, the others {network.draws}")
        if layer.kind == "conv":
            kernel = layer.weights.shape[2:4]
            if len(shape) != 3 or layer.weights.shape[1] != shape[0] or kernel[0] != kernel[1] or kernel[0] % 2 == 0:
                raise ValueError(f"layer {index} convolves {layer.weights.shape[1]} channels; it receives {shape}")
            out = (layer.weights.shape[-1], shape[1] // layer.pool, shape[2] // layer.pool)
        else:
            if layer.fan_in != math.prod(shape):
                raise ValueError(f"layer {index} reads {layer.fan_in} inputs; it receives {math.prod(shape)}")
            out = (layer.weights.shape[-1],)
        if layer.pool < 1 or (layer.kind == "dense" and layer.pool != 1) or min(out) < 1:
            raise ValueError(f"layer {index} pools by {layer.pool}")
        if layer.readout.shape != (network.num_classes, math.prod(out)):
            raise ValueError(f"layer {index}'s readout is {layer.readout.shape}; its layer gives {math.prod(out)} "
                             f"features to {network.num_classes} classes")
        if not (math.isfinite(layer.scale) and math.isfinite(layer.readout_scale)):
            raise ValueError(f"layer {index}'s scales are not finite")
        shape = out


@dataclass
class Export:
    """What ``export_packed`` wrote: the file, and the sizes to compare."""

    path: Path
    draws: int
    weight_bytes: int
    float_weight_bytes: int
    file_bytes: int
    checkpoint_bytes: int

    def describe(self) -> str:
        """One line: the draws, the weight bytes against float32, the file against the checkpoint."""
        return (
            f"{self.draws} draw(s) of 1-bit weights, {self.weight_bytes:,} bytes "
            f"(1/{self.float_weight_bytes / self.weight_bytes:.1f} of {self.float_weight_bytes:,} in float32); "
            f"file {self.file_bytes:,} bytes, the run's checkpoint {self.checkpoint_bytes:,} bytes"
        )


def export_packed(run, path: str | Path, mode: str = "map", samples: int | None = None) -> Export:
    """Write ``run``'s MAP network (``mode="map"``) or ``samples`` posterior draws (``"ensemble"``;
    default the run's K: the draws ``run.evaluate`` scores) to ``path`` as a packed file
    (``ConfigError`` for what ``Run.prediction_draws`` refuses: K draws of a point estimate, or
    ``samples`` with the MAP)."""
    if mode not in ("map", "ensemble"):
        raise ConfigError(f"unknown export mode {mode!r}; expected 'map' or 'ensemble'")
    weights = run.prediction_weights(*run.prediction_draws(mode, samples))
    network, reason = run.bsnn.packed_network({k: v.cpu() for k, v in weights.items()})
    if network is None:
        raise ConfigError(f"{run.directory} cannot be packed: {reason}")
    header = {"mode": mode, "source": str(run.directory), "config": run.config.to_dict()}
    written = save_packed(PackedModel(network, None, header), path)
    packed, dense = weight_bytes(network)
    return Export(written, network.draws, packed, dense, written.stat().st_size, run.checkpoint.stat().st_size)
