"""Operation and energy accounting (``bisnn_pyro.analysis.cost``, ``bisnn-pyro cost``): counts checked
by hand on tiny networks whose spikes follow from the LIF equations, the spike loop against the
network's own spike counts, and the command's JSON and one-line errors."""

import json
import math

import pytest
import torch

from bisnn_pyro.analysis.cost import (
    ENERGY_PJ,
    SpikeTotals,
    count_spikes,
    energy_constants,
    layer_counts,
    network_cost,
    parse_energy,
)
from bisnn_pyro.cli import main
from bisnn_pyro.errors import ConfigError
from bisnn_pyro.models import BinaryPrior, ConvSpikingNet, SpikingMLP

LIF = 4 * 3.7 + 4 * 0.9  # pJ per LIF update: 4 float32 multiplies, 4 float32 adds
MAC = 3.7 + 0.9 + 32 * 10 / 64  # pJ per float32 MAC reading a 32-bit weight from 8 KB SRAM


def rows_by_name(cost):
    return {row["name"]: row for row in cost["layers"]}


def hand_mlp():
    """4 inputs -> 3 -> 2 neurons, 2 classes; input 0 spikes once, at t = 0, in the first of two
    sequences of 3 steps (the second is silent).

    By the LIF equations (P_t = a P_{t-1} + Q_{t-1}, Q_t = b Q_{t-1} + W s_t, U_t = P_t / sqrt(fan_in) - R_t):
    layer 0's neurons with w = +1 from input 0 (neurons 0, 1) spike at t = 1 (U = 1/2 > 0) and not at
    t = 2 (U = (a + b)/2 - 1 = -0.12); neuron 2 (w = -1) never.  Layer 1 then sees drives 2 (neuron 0:
    +1, +1) and 0 (neuron 1: +1, -1) at t = 1, so its neuron 0 alone spikes, at t = 2."""
    net = BinaryPrior().apply_(SpikingMLP(4, hidden=(3, 2), num_classes=2))
    w0 = torch.tensor([[1.0, -1, 1, 1], [1, 1, -1, 1], [-1, 1, 1, -1]])
    w1 = torch.tensor([[1.0, 1, 1], [1, -1, 1]])
    x = torch.zeros(2, 3, 4)
    x[0, 0, 0] = 1
    return net, [w0, w1], x


def test_operation_counts_by_hand_on_a_tiny_dense_network():
    net, weights, x = hand_mlp()
    assert net.run(x, weights).spike_counts.tolist() == [2, 1]  # the spikes derived in hand_mlp
    cost = network_cost(net, weights, x)
    rows = rows_by_name(cost)
    assert list(rows) == ["layer 0", "readout 0", "layer 1", "readout 1"]
    # per sequence: half of what the one active sequence does
    expected = {
        # input spikes, synops = input spikes x fan-out, connections, neurons, spikes / (neurons x T x N)
        "layer 0": (0.5, 0.5 * 3, 4 * 3, 3, 2 / (3 * 3 * 2)),
        "readout 0": (1.0, 1.0 * 2, 3 * 2, 2, None),
        "layer 1": (1.0, 1.0 * 2, 3 * 2, 2, 1 / (2 * 3 * 2)),
        "readout 1": (0.5, 0.5 * 2, 2 * 2, 2, None),
    }
    for name, (inputs, synops, connections, neurons, rate) in expected.items():
        row = rows[name]
        assert row["input_spikes"] == pytest.approx(inputs), name
        assert row["synops"] == pytest.approx(synops), name
        assert row["connections"] == row["weights"] == row["weight_bits"] == connections, name
        assert row["fp_snn_macs"] == connections * 3 and row["ann_macs"] == connections, name
        assert row["neuron_updates"] == neurons * 3, name
        assert row["spikes_per_neuron_step"] == (None if rate is None else pytest.approx(rate)), name
    assert [row["in_total"] for row in cost["layers"]] == [True, False, True, True]  # prediction reads readout 1
    assert cost["totals"] == {"synops": pytest.approx(4.5), "fp_snn_macs": 66, "ann_macs": 22, "weights": 22,
                              "weight_bits": 22, "neuron_updates": 21}
    assert (cost["weights"], cost["sequences"], cost["steps"], cost["samples"]) == ("binary", 2, 3, 1)
    # energy = counts . constants: 22 binary bits and 704 float bits both fit 8 KB SRAM (10 pJ / 64 bits)
    neurons = (3 + 2) * 3 * LIF + 2 * 3 * 3.7  # LIF updates, then the last readout's scale per class and step
    energy = cost["energy_by_network_pj"]
    assert energy["binary_snn"] == pytest.approx(4.5 * (0.1 + 10 / 64) + neurons)
    assert energy["float_snn"] == pytest.approx(4.5 * (0.9 + 32 * 10 / 64) + neurons)
    assert energy["dense_fp_snn"] == pytest.approx(66 * MAC + neurons)
    assert energy["ann"] == pytest.approx(22 * MAC + (3 + 2) * 0.9)
    assert cost["energy_pj"] == cost["prediction_energy_pj"] == energy["binary_snn"]
    assert sum(row["energy_pj"]["binary_snn"] for row in cost["layers"] if row["in_total"]) == pytest.approx(
        energy["binary_snn"]
    )
    assert cost["weight_memory"]["binary"] == {"bits": 22, "memory": "sram_8kb_read_64b"}
    # batches of (x, y), as a DataLoader over a data set read from files gives them: the same figures
    batches = [(x[:1], torch.zeros(1)), (x[1:], torch.zeros(1))]
    assert network_cost(net, weights, batches)["layers"] == cost["layers"]


def test_every_readout_and_other_constants_can_be_counted():
    net, weights, x = hand_mlp()
    base = network_cost(net, weights, x)
    cost = network_cost(net, weights, x, all_readouts=True, ann_passes=3, energies={"int_add": 0.03})
    assert all(row["in_total"] for row in cost["layers"]) and cost["readouts"] == "all"
    assert cost["totals"]["synops"] == pytest.approx(4.5 + 2)
    assert cost["totals"]["ann_macs"] == 3 * (22 + 6)
    assert cost["energy_constants_pj"]["int_add"] == 0.03 and ENERGY_PJ["int_add"] == 0.1
    readout_0 = rows_by_name(cost)["readout 0"]
    assert readout_0["energy_pj"]["binary_snn"] == pytest.approx(2 * (0.03 + 10 / 64) + 2 * 3 * 3.7)
    assert cost["energy_pj"] == pytest.approx(base["energy_pj"] - 4.5 * 0.07 + readout_0["energy_pj"]["binary_snn"])


def test_operation_counts_by_hand_on_a_tiny_conv_network_with_pooling():
    """A 1x4x4 input, a 3x3 convolution to one channel, 2x2 max pooling, a dense layer of 2.  The input
    spikes once, at (0, 0) at t = 0: it reaches the 2 x 2 outputs inside the map (n(0) = 2 per axis), which
    spike at t = 1 (U = 1/3) and not at t = 2 (U = (a + b)/3 - 1); pooled, they are one spike of unit
    (0, 0, 0), whose dense weights +1, -1 make dense neuron 0 spike at t = 2."""
    net = BinaryPrior().apply_(ConvSpikingNet((1, 4, 4), channels=(1,), num_classes=2, kernel_size=3, pool=2,
                                              dense=(2,)))
    weights = [torch.ones(1, 1, 3, 3), torch.tensor([[1.0, 1, -1, 1], [-1, 1, 1, -1]])]
    x = torch.zeros(1, 3, 1, 4, 4)
    x[0, 0, 0, 0, 0] = 1
    assert net.run(x, weights).spike_counts.tolist() == [4, 1]
    rows = rows_by_name(network_cost(net, weights, x))
    conv = rows["layer 0"]
    assert conv["kind"] == "conv" and conv["shape"] == [1, 1, 3, 3] and conv["weights"] == 9
    assert conv["synops"] == 4 and conv["neurons"] == 16  # neurons before pooling
    assert conv["connections"] == (2 + 3 + 3 + 2) ** 2 and conv["fp_snn_macs"] == 300 and conv["ann_macs"] == 100
    assert conv["spikes_per_neuron_step"] == pytest.approx(4 / (16 * 3))
    # after pooling the four spikes are one: the readout's and the dense layer's input
    assert rows["readout 0"]["input_spikes"] == 1 and rows["readout 0"]["synops"] == 2
    assert rows["readout 0"]["weights"] == 2 * 4
    dense = rows["layer 1"]
    assert (dense["input_spikes"], dense["synops"], dense["connections"], dense["neurons"]) == (1, 2, 8, 2)
    assert dense["spikes_per_neuron_step"] == pytest.approx(1 / (2 * 3))
    assert (rows["readout 1"]["input_spikes"], rows["readout 1"]["synops"]) == (1, 2)


@pytest.mark.parametrize("kernel_size, reach", [(3, [[4, 6, 4], [6, 9, 6], [4, 6, 4]]), (5, [[9] * 3] * 3)])
def test_a_convolution_counts_the_outputs_inside_the_map(kernel_size, reach):
    """On a 3x3 map, a spike at (i, j) reaches n(i) x n(j) outputs per output channel."""
    net = ConvSpikingNet((2, 3, 3), channels=(4,), num_classes=2, kernel_size=kernel_size, pool=1)
    spikes = torch.zeros(2, 3, 3, dtype=torch.float64)
    spikes[1, 1, 2] = 5  # five spikes at one place
    totals = SpikeTotals(spikes, [torch.zeros(4, 3, 3, dtype=torch.float64)], [0.0], [36], 1, 1, 1)
    row = layer_counts(net, totals)[0]
    assert row["synops"] == 5 * 4 * reach[1][2]
    assert row["connections"] == 2 * 4 * sum(map(sum, reach))


@pytest.mark.parametrize("kind", ["mlp", "conv"])
def test_the_spikes_counted_are_the_networks_own(kind):
    torch.manual_seed(1)
    if kind == "mlp":
        net = SpikingMLP((2, 3, 3), hidden=(16, 8), num_classes=3)  # image frames, flattened
        shapes = [(16, 18), (8, 16)]
    else:
        net = ConvSpikingNet((2, 6, 6), channels=(4, 5), num_classes=3, kernel_size=3, pool=(2, 1), dense=(6,))
        shapes = [(4, 2, 3, 3), (5, 4, 3, 3), (6, 5 * 3 * 3)]
    draws = [torch.randint(0, 2, (2, *shape)).float() * 2 - 1 for shape in shapes]  # K = 2
    x = (torch.rand(5, 12, *net.input_shape) < 0.3).float()
    totals = count_spikes(net, draws, x, batch_size=2)
    with torch.no_grad():  # the network's prediction loop (with gradients, the traces filter the inputs)
        own = net.run(x, draws).spike_counts.sum(0)
    assert totals.outputs == own.tolist() and min(totals.outputs) > 0
    assert (totals.draws, totals.sequences, totals.steps) == (2, 5, 12)
    assert totals.inputs.sum() == 2 * x.sum()
    # each draw on its own: the ensemble's figures are the mean over its draws
    cost = network_cost(net, draws, x)
    one = [network_cost(net, [w[k] for w in draws], x) for k in range(2)]
    for index, row in enumerate(cost["layers"]):
        assert row["synops"] == pytest.approx(sum(c["layers"][index]["synops"] for c in one) / 2)
    assert cost["energy_pj"] == pytest.approx(sum(c["energy_pj"] for c in one) / 2)
    assert cost["prediction_energy_pj"] == pytest.approx(2 * cost["energy_pj"])


def test_float_weights_are_counted_at_32_bits():
    net, weights, x = hand_mlp()
    floats = [w * 0.5 for w in weights]
    cost = network_cost(net, floats, x)
    assert cost["weights"] == "float32" and cost["totals"]["weight_bits"] == 32 * 22
    assert cost["energy_pj"] == cost["energy_by_network_pj"]["float_snn"]


def test_the_memory_read_is_the_smallest_that_holds_the_weights():
    """784 x 256 dense weights: 25 KB as bits (32 KB SRAM), 0.8 MB as float32 (1 MB SRAM)."""
    net = SpikingMLP(784, hidden=(256,), num_classes=2)
    w = torch.ones(256, 784)
    cost = network_cost(net, [w], torch.zeros(1, 2, 784))
    assert cost["weight_memory"]["binary"]["memory"] == "sram_32kb_read_64b"
    assert cost["weight_memory"]["float32"]["memory"] == "sram_1mb_read_64b"
    assert cost["pj_per_synop"]["binary_snn"] == pytest.approx(0.1 + 20 / 64)
    assert cost["pj_per_synop"]["float_snn"] == pytest.approx(0.9 + 32 * 100 / 64)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"int_ad": 0.1}, "did you mean 'int_add'"),
        ({"int_add": -1.0}, "finite number of pJ >= 0"),
        ({"float_add": math.nan}, "finite number of pJ >= 0"),
        ({"float_add": True}, "finite number of pJ >= 0"),
    ],
)
def test_bad_energy_constants_are_refused_in_one_line(overrides, message):
    with pytest.raises(ConfigError, match=message):
        energy_constants(overrides)


def test_energy_flags_parse():
    assert parse_energy(["int_add=0.03", "dram_read_64b = 2600"]) == {"int_add": 0.03, "dram_read_64b": 2600.0}
    for item in ("int_add", "int_add=abc", "bogus=1"):
        with pytest.raises(ConfigError):
            parse_energy([item])


TINY = ["--hidden", "12", "--steps", "20", "--burn-in", "4", "--train-size", "40", "--test-size", "40",
        "--epochs", "1", "--quiet"]


def cli(capsys, *argv):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cost")
    for rule in ("bayes", "fp"):
        assert main(["train", "--out", str(folder / rule), "--rule", rule, *TINY]) == 0
    return folder


def test_cost_command_prints_one_json_object(runs, capsys):
    code, out, err = cli(capsys, "cost", runs / "bayes", "--json")
    assert code == 0, err
    cost = json.loads(out)
    assert cost["weights"] == "binary" and cost["mode"] == "map" and cost["sequences"] == 40
    assert [row["name"] for row in cost["layers"]] == ["layer 0", "readout 0"]
    for row in cost["layers"]:
        assert {"synops", "spikes_per_neuron_step", "weight_bits", "fp_snn_macs", "ann_macs", "energy_pj"} <= row.keys()
    assert cost["energy_pj"] > 0 and cost["layers"][0]["weight_bits"] == 20 * 12
    code, out, _ = cli(capsys, "cost", runs / "bayes", "--json", "--samples", "2")
    assert (json.loads(out)["mode"], json.loads(out)["samples"]) == ("ensemble", 2)
    code, out, _ = cli(capsys, "cost", runs / "fp", "--json")
    fp = json.loads(out)
    assert (fp["weights"], fp["samples"], fp["layers"][0]["weight_bits"]) == ("float32", 1, 32 * 20 * 12)
    code, out, _ = cli(capsys, "cost", runs / "bayes", "--energy", "int_add=0.03")
    assert code == 0 and "layer 0" in out and "int_add 0.03" in out and "<- this network" in out


@pytest.mark.parametrize(
    "rule, argv, message",
    [
        ("bayes", ["--energy", "bogus=1"], "unknown energy constant 'bogus'"),
        ("bayes", ["--energy", "int_add=abc"], "is not a number"),
        ("bayes", ["--energy", "int_add"], "expected NAME=PJ"),
        ("bayes", ["--energy", "int_add=-1"], "finite number of pJ >= 0"),
        ("bayes", ["--mode", "ensemble", "--samples", "0"], "argument --samples: expected a whole number >= 1, got 0"),
        ("bayes", ["--ann-passes", "0"], "argument --ann-passes: expected a whole number >= 1, got 0"),
        ("bayes", ["--mode", "mean"], "invalid choice"),
        ("bayes", ["--mode", "map", "--samples", "2"], "samples=2 counts an ensemble's draws, but mode 'map' predicts"),
        ("fp", ["--samples", "2"], "the auto-delta guide is a point estimate, so its draws are all one network"),
    ],
)
def test_cost_command_errors_in_one_line(runs, capsys, rule, argv, message):
    code, out, err = cli(capsys, "cost", runs / rule, *argv)
    assert code == 2 and out == "" and err.startswith("bisnn-pyro: error:") and message in err
    assert len(err.strip().splitlines()) == 1


def test_cost_of_a_folder_without_a_run(tmp_path, capsys):
    code, _, err = cli(capsys, "cost", tmp_path)
    assert code == 2 and "no checkpoint" in err
