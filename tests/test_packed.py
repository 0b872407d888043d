"""The packed 1-bit engine gives the float network's spikes and readouts bit for bit; the packed
file round-trips a run's predictions exactly; what cannot be packed is refused in one line."""

import json
import zipfile

import numpy as np
import pytest
import torch
from pyro import poutine

from bisnn_pyro.cli import main
from bisnn_pyro.errors import CompositionError, ConfigError, DataError
from bisnn_pyro.experiment import ExperimentConfig, create_run
from bisnn_pyro.models import BinaryPrior, ConvSpikingNet, LIFParameters, SpikingMLP
from bisnn_pyro.packed import PackedFileError, PackedNetwork, export_packed, load_packed
from bisnn_pyro.packed.network import weights_problem

METHODS = ("changes", "popcount", "events")


def _signs(net, draws, generator):
    return [torch.randint(0, 2, (draws, *layer.weight.shape), generator=generator).float() * 2 - 1
            for layer in net.layers]


def _float_readouts(net, weights, x, loop="steps"):
    """The float network without gradients (its drive filtered after the synapse), one time loop."""
    net.time_loop = loop
    with torch.no_grad():
        return poutine.condition(net, data={f"layers.{i}.weight": w for i, w in enumerate(weights)})(x).readouts


def _assert_packed_equals_float(net, x, draws, seed=0):
    generator = torch.Generator().manual_seed(seed)
    net = BinaryPrior().apply_(net)
    weights = _signs(net, draws, generator)
    expected = _float_readouts(net, weights, x)
    assert torch.equal(_float_readouts(net, weights, x, "layers"), expected)  # the two loops agree
    packed = PackedNetwork.from_network(net, weights)
    for method in METHODS if packed.all_dense and x.max() <= 1 else ("auto", "events"):
        out = packed.readouts(x, batch_size=7, method=method)
        assert out.dtype == torch.float32 and out.shape == expected.shape
        assert torch.equal(out, expected), method
    return expected


@pytest.mark.parametrize("draws", [1, 3])
def test_dense_network_of_odd_sizes_matches_the_float_path(draws):
    """Fan-ins of 13 and 65 fill no whole word; a threshold and biases; K = 1 (MAP) and K = 3."""
    torch.manual_seed(0)
    net = SpikingMLP(13, (65, 7), 3, neuron=LIFParameters(8.0, 4.0, 2.0, 0.05), bias=True)
    with torch.no_grad():
        for layer in net.layers:
            layer.bias = torch.randn(layer.out_features) * 0.2
    x = torch.bernoulli(torch.full((20, 30, 13), 0.3))
    readouts = _assert_packed_equals_float(net, x, draws)
    assert readouts.abs().sum() > 0


def test_default_shape_network_matches_at_threshold_zero():
    """256-256 from 20 inputs, threshold 0: drives of exactly zero are common ties, decided alike."""
    net = SpikingMLP(20, (256, 256), 2)
    x = torch.bernoulli(torch.full((30, 50, 20), 0.15))
    _assert_packed_equals_float(net, x, 2)


def test_whole_words_and_long_runs_of_spikes_match_the_float_path():
    """64 and 128 units fill their words exactly; inputs held on for several steps at a time, so
    that most steps change few inputs (the ``changes`` method's case) and some change many."""
    generator = torch.Generator().manual_seed(4)
    net = SpikingMLP(64, (128, 64), 2, neuron=LIFParameters(6.0, 3.0, 4.0, 0.0))
    held = torch.bernoulli(torch.full((10, 8, 1, 64), 0.4), generator=generator)
    x = held.expand(10, 8, 5, 64).reshape(10, 40, 64)
    _assert_packed_equals_float(net, x, 2)


def test_a_fan_in_beyond_int16_carries_its_sums_in_int32():
    """The changes method keeps each drive as a whole number: int16 while no sum can pass 32,767,
    int32 past that (here 40,000 inputs all on)."""
    net = SpikingMLP(40_000, (3,), 2)
    packed = PackedNetwork.from_network(BinaryPrior().apply_(net), [torch.ones(1, 3, 40_000)])
    assert packed._change_layout().sums_dtype is np.int32
    x = torch.ones(1, 3, 40_000)
    readouts = packed.readouts(x, method="changes")
    assert torch.equal(readouts, _float_readouts(net, [torch.ones(1, 3, 40_000)], x))
    for inputs, dtype in [(32_767, np.int16), (32_768, np.int32)]:  # the boundary
        wide = PackedNetwork.from_network(SpikingMLP(inputs, (1,), 2), [torch.ones(1, 1, inputs)])
        assert wide._change_layout().sums_dtype is dtype


def test_one_step_and_frames_as_inputs_match_the_float_path():
    """Sequences of a single step, and an MLP whose inputs are 2-D frames (flattened by the network)."""
    generator = torch.Generator().manual_seed(5)
    one_step = torch.bernoulli(torch.full((5, 1, 9), 0.5), generator=generator)
    _assert_packed_equals_float(SpikingMLP(9, (70,), 2), one_step, 2)
    frames = torch.bernoulli(torch.full((4, 12, 2, 5, 7), 0.3), generator=generator)
    _assert_packed_equals_float(SpikingMLP((2, 5, 7), (40, 8), 3), frames, 2)


@pytest.mark.parametrize("pool, dense", [(1, ()), (2, ()), (2, (5,))])
def test_conv_network_matches_the_float_path(pool, dense):
    """9 x 9 frames: pooling by 2 drops the last row and column, as max_pool2d does."""
    torch.manual_seed(1)
    net = ConvSpikingNet((2, 9, 9), channels=(4, 6), num_classes=3, pool=pool, dense=dense)
    x = torch.bernoulli(torch.full((6, 15, 2, 9, 9), 0.3))
    _assert_packed_equals_float(net, x, 2)


@pytest.mark.parametrize("value", [0.0, 1.0])
def test_all_zero_and_all_one_inputs(value):
    net = SpikingMLP(70, (33,), 2)
    x = torch.full((4, 12, 70), value)
    _assert_packed_equals_float(net, x, 2)
    conv = ConvSpikingNet((1, 5, 5), channels=(3,), num_classes=2, pool=1)
    _assert_packed_equals_float(conv, torch.full((3, 8, 1, 5, 5), value), 2)


def test_event_counts_above_one_match_the_float_path():
    """Binned events may count more than one per step: the drive is still a whole number."""
    generator = torch.Generator().manual_seed(3)
    net = ConvSpikingNet((2, 6, 6), channels=(3,), num_classes=2, pool=2)
    x = torch.randint(0, 4, (4, 10, 2, 6, 6), generator=generator).float()
    _assert_packed_equals_float(net, x, 2)


@pytest.mark.parametrize("conv", [True, False])
def test_counts_held_for_runs_move_the_carried_drive_exactly(conv):
    """Counts that stay for several steps and then change by any amount (3 -> 1, 0 -> 2, ...): the
    event kernels carry the drive from the step before and add the changes times the weights."""
    generator = torch.Generator().manual_seed(7)
    held = torch.randint(0, 4, (5, 6, 1, 2, 6, 6), generator=generator).float().expand(5, 6, 4, 2, 6, 6)
    steps = [torch.randint(0, 4, (5, 2, 6, 6), generator=generator).float()]
    for _ in range(23):  # a tenth of the counts change at each step, by any amount: the carry path every step
        fresh = torch.randint(0, 4, (5, 2, 6, 6), generator=generator).float()
        steps.append(torch.where(torch.rand(5, 2, 6, 6, generator=generator) < 0.1, fresh, steps[-1]))
    x = torch.cat([held.reshape(5, 24, 2, 6, 6), torch.stack(steps, dim=1)])
    if conv:
        net = ConvSpikingNet((2, 6, 6), channels=(3, 4), num_classes=2, pool=1, dense=(6,))
    else:
        net, x = SpikingMLP(72, (30, 20), 2), x.flatten(2)
    _assert_packed_equals_float(net, x, 2)


def test_inputs_of_any_whole_number_dtype_and_none_at_all():
    """Counts as uint8, bool, int64 or a numpy array give the float32 spikes' readouts; no
    sequences give none; what is not spikes is refused in one line."""
    net = BinaryPrior().apply_(SpikingMLP(5, (4,), 2))
    packed = PackedNetwork.from_network(net, [torch.ones(2, 4, 5)])
    x = torch.bernoulli(torch.full((3, 6, 5), 0.4), generator=torch.Generator().manual_seed(6))
    expected = packed.readouts(x)
    for same in (x.to(torch.uint8), x.bool(), x.long(), x.numpy()):
        assert torch.equal(packed.readouts(same), expected)
    assert packed.readouts(x[:0]).shape == (2, 0, 1, 6, 2)
    with pytest.raises(DataError, match="torch.Tensor or numpy array, got list"):
        packed.readouts(x.tolist())
    with pytest.raises(DataError, match="whole numbers 0..255"):
        packed.readouts(x.long() + 300)
    with pytest.raises(ConfigError, match="batch_size must be >= 1, got 0"):
        packed.readouts(x, batch_size=0)


def test_what_cannot_be_packed_is_named():
    net = BinaryPrior().apply_(SpikingMLP(5, (4,), 2))
    good = [torch.ones(2, 4, 5)]
    assert weights_problem(net, good) == ""
    assert "not all +-1" in weights_problem(net, [torch.full((2, 4, 5), 0.5)])
    assert "expected (K, *(4, 5))" in weights_problem(net, [torch.ones(2, 5, 4)])
    assert "float32 on the CPU" in weights_problem(net, [torch.ones(2, 4, 5, dtype=torch.float64)])
    packed = PackedNetwork.from_network(net, good)
    with pytest.raises(ValueError, match="whole numbers 0..255"):
        packed.readouts(torch.full((1, 3, 5), 0.5))
    with pytest.raises(ValueError, match=r"shape \(batch, time, 5\)"):
        packed.readouts(torch.zeros(1, 3, 6))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    config = ExperimentConfig(hidden=[40, 24], steps=25, burn_in=4, train_size=60, test_size=80, samples=4, epochs=2)
    made = create_run(config, tmp_path_factory.mktemp("packed") / "run")
    made.fit(progress=False)
    return made


@pytest.mark.parametrize("mode", ["map", "ensemble"])
def test_engines_score_a_run_alike(run, mode):
    scores = {engine: run.evaluate(mode, engine=engine) for engine in ("float", "packed", "auto")}
    assert [scores[engine].pop("engine") for engine in ("float", "packed", "auto")] == ["float", "packed", "packed"]
    assert scores["float"] == scores["packed"] == scores["auto"]


def test_no_points_predict_nothing_on_either_engine(run):
    for engine in ("float", "packed", "auto"):
        assert run.bsnn.predict(run.test.x[:0], "ensemble", samples=3, engine=engine).shape == (0, 2)


@pytest.mark.parametrize("mode", ["map", "ensemble"])
def test_export_load_predict_reproduces_evaluate(run, tmp_path, mode):
    from bisnn_pyro.analysis.metrics import summary

    written = export_packed(run, tmp_path / "net", mode)
    assert written.path == tmp_path / "net.npz" and written.draws == (4 if mode == "ensemble" else 1)
    model = load_packed(written.path)
    with np.load(written.path, allow_pickle=False) as archive:  # nothing in it needs unpickling
        header = json.loads(str(archive["header"]))
        bits = archive["layer1.plus_bits"]
    assert header["mode"] == mode and bits.dtype == np.uint8 and bits.shape == (written.draws, 24, 5)  # 40 bits
    probs = model.predict(run.test.x)
    scores = run.evaluate(mode, engine="float")
    expected = {**summary(probs, run.test.y), "mode": mode, "samples": scores["samples"], "n": 80, "engine": "float"}
    assert expected == scores
    weights = run.prediction_weights(mode, 4)
    assert torch.equal(model.network.readouts(run.test.x), run.bsnn.readouts_with(weights, run.test.x, engine="float"))
    assert written.weight_bytes == written.draws * (40 * 3 + 24 * 5)  # rows of ceil(fan-in / 8) bytes
    assert written.float_weight_bytes == written.draws * 4 * (40 * 20 + 24 * 40)  # two-moons: 20 inputs


def test_packed_engine_refuses_a_full_precision_run(tmp_path, capsys):
    config = ExperimentConfig(hidden=[8], steps=10, burn_in=2, train_size=20, test_size=20, epochs=1, rule="fp")
    fp = create_run(config, tmp_path / "fp")
    fp.fit(progress=False)
    fp.close()
    assert fp.evaluate("map", engine="auto") == fp.evaluate("map", engine="float")  # auto falls back
    assert fp.evaluate("map")["engine"] == "float"
    with pytest.raises(CompositionError, match="not all \\+-1"):
        fp.bsnn.readouts_with(fp.prediction_weights("map", 1), fp.test.x, engine="packed")
    assert main(["evaluate", str(tmp_path / "fp"), "--mode", "map", "--engine", "packed"]) == 2
    assert main(["export", str(tmp_path / "fp"), "--out", str(tmp_path / "fp.npz")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("bisnn-pyro: error: ") and "+-1" in line for line in err)
    assert "engine 'packed': the packed engine cannot run this" in err[0]
    assert not (tmp_path / "fp.npz").exists()


def test_export_command(run, tmp_path, capsys):
    assert main(["export", str(run.directory), "--samples", "3", "--out", str(tmp_path / "three.npz")]) == 0
    out = capsys.readouterr().out
    assert "three.npz: 3 draw(s) of 1-bit weights" in out and "in float32" in out
    assert load_packed(tmp_path / "three.npz").network.draws == 3
    folder = str(run.directory)
    assert main(["export", folder, "--mode", "ensemble", "--samples", "2", "--out", str(tmp_path / "2")]) == 0
    assert load_packed(tmp_path / "2.npz").network.draws == 2 and "2.npz: 2 draw(s)" in capsys.readouterr().out
    for argv in (["--samples", "0"], ["--format", "onnx"], ["--mode", "mean"]):
        with pytest.raises(SystemExit) as exited:  # argparse's one-line refusal
            main(["export", str(run.directory), *argv, "--out", str(tmp_path / "x.npz")])
        assert exited.value.code == 2
        assert capsys.readouterr().err.startswith("bisnn-pyro: error:")
    assert main(["export", folder, "--mode", "map", "--samples", "2", "--out", str(tmp_path / "x.npz")]) == 2
    assert "samples=2 counts an ensemble's draws, but mode 'map'" in capsys.readouterr().err
    assert not (tmp_path / "x.npz").exists()


def test_damaged_packed_files_are_refused_in_one_line(run, tmp_path):
    good = export_packed(run, tmp_path / "good.npz").path
    with pytest.raises(PackedFileError, match="no packed file"):
        load_packed(tmp_path / "missing.npz")
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(PackedFileError, match="not a packed file \\(not an .npz archive\\)"):  # no pickle hint
        load_packed(tmp_path / "text.npz")
    with np.load(good) as archive:
        arrays = {name: archive[name] for name in archive.files}
    broken = dict(arrays)
    broken["layer0.plus_bits"] = arrays["layer0.plus_bits"][:, :3]
    np.savez(tmp_path / "short.npz", **broken)
    with pytest.raises(PackedFileError, match="damaged: array layer0.plus_bits is uint8"):
        load_packed(tmp_path / "short.npz")
    header = json.loads(str(arrays["header"]))
    np.savez(tmp_path / "future.npz", **{**arrays, "header": np.array(json.dumps({**header, "version": 99}))})
    with pytest.raises(PackedFileError, match="version 99"):
        load_packed(tmp_path / "future.npz")
    with zipfile.ZipFile(tmp_path / "other.npz", "w") as archive:
        archive.writestr("header.npy", b"")
    with pytest.raises(PackedFileError):
        load_packed(tmp_path / "other.npz")


def test_a_subclass_or_a_layer_of_ones_own_runs_on_the_float_path():
    """The packed engine would not see what a subclass changes: auto leaves it to the float network,
    and a layer without drive() runs its synapse without gradients too."""
    from bisnn_pyro.models.layers import BinaryLinear
    from bisnn_pyro.packed.network import network_problem

    class Doubled(SpikingMLP):
        def _readout(self, index, outputs):
            return 2 * super()._readout(index, outputs)

    class Gain(BinaryLinear):
        def synapse(self, weight, bias=None):
            return lambda inputs: 2 * super(Gain, self).synapse(weight, bias)(inputs)

    assert "not Doubled" in network_problem(Doubled(5, (4,), 2))
    net = SpikingMLP(5, (4,), 2)
    net.layers[0] = Gain(5, 4)
    assert "Gain" in network_problem(net)
    x = torch.bernoulli(torch.full((3, 6, 5), 0.5))
    with torch.no_grad():
        without = net(x).readouts
    torch.testing.assert_close(net(x).readouts.detach(), without)  # the gain counts with and without gradients


def test_packing_leaves_the_global_generator_alone():
    net = BinaryPrior().apply_(SpikingMLP(5, (4,), 2))  # its weights are sample sites
    state = torch.get_rng_state()
    PackedNetwork.from_network(net, [torch.ones(1, 4, 5)])
    assert torch.equal(torch.get_rng_state(), state)


def test_inconsistent_or_plugin_naming_packed_files_are_refused(run, tmp_path):
    good = export_packed(run, tmp_path / "good.npz").path
    with np.load(good) as archive:
        arrays = {name: archive[name] for name in archive.files}
    header = json.loads(str(arrays["header"]))

    def tampered(name, **changes):
        np.savez(tmp_path / name, **{**arrays, "header": np.array(json.dumps({**header, **changes}))})
        return tmp_path / name

    with pytest.raises(PackedFileError, match="readout is"):
        load_packed(tampered("classes.npz", num_classes=5))
    layers = [dict(header["layers"][0]), {**header["layers"][1], "weight_shape": [30, 24]}]
    with pytest.raises(PackedFileError, match="damaged"):
        load_packed(tampered("chain.npz", layers=layers))
    with pytest.raises(PackedFileError, match="time constants"):
        load_packed(tampered("tau.npz", neuron={**header["neuron"], "tau_mem": 0.0}))
    plugin = {**header["config"], "plugins": ["a_module_that_must_not_be_imported"]}
    assert load_packed(tampered("plugin.npz", config=plugin)).predict(run.test.x[:2]).shape == (2, 2)
    likelihood = {**header["config"], "likelihood": {"name": "a-plugin-likelihood"}}
    with pytest.raises(PackedFileError, match="plugins"):
        load_packed(tampered("likelihood.npz", config=likelihood))
