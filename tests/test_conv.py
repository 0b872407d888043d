import pytest
import torch
import torch.nn.functional as F
from pyro import poutine

from bisnn_pyro.experiment import ExperimentConfig, create_run
from bisnn_pyro.models import BinaryPrior, ConvSpikingNet, LIFParameters
from bisnn_pyro.models.conv import BinaryConv2d, conv_synapse, max_pool


def test_conv_synapse_matches_conv2d_for_one_and_many_draws():
    torch.manual_seed(0)
    x = torch.rand(4, 3, 6, 6)
    w = torch.randn(5, 3, 3, 3)
    torch.testing.assert_close(conv_synapse(x, w, 0.5, 1), 0.5 * F.conv2d(x, w, padding=1))
    draws = torch.randn(2, 1, 5, 3, 3, 3)  # sample dims as Pyro's vectorised plates give them
    out = conv_synapse(x, draws, 1.0, 1)
    assert out.shape == (2, 4, 5, 6, 6)
    for k in range(2):
        torch.testing.assert_close(out[k], F.conv2d(x, draws[k, 0], padding=1))
    per_draw_input = torch.rand(2, 4, 3, 6, 6)
    out = conv_synapse(per_draw_input, draws, 1.0, 1)
    for k in range(2):
        torch.testing.assert_close(out[k], F.conv2d(per_draw_input[k], draws[k, 0], padding=1))


def test_pooling_keeps_leading_dims():
    spikes = torch.zeros(2, 3, 4, 6, 6)
    spikes[1, 2, 3, 5, 5] = 1.0
    pooled = max_pool(spikes, 2)
    assert pooled.shape == (2, 3, 4, 3, 3) and pooled[1, 2, 3, 2, 2] == 1 and pooled.sum() == 1


def _small_net_and_draws(samples: int, dense: tuple[int, ...] = ()):
    """A float64 conv network (so that convolutions summing in different orders cannot flip a spike
    that sits on the threshold), with ``dense`` layers after its convolutions, and ``samples``
    random +-1 draws of its weights.  Its threshold is 0.1: at 0, a drive of exactly zero would be a
    tie that the network with gradients, which scales the weights before summing, resolves by rounding."""
    net = ConvSpikingNet(
        (2, 8, 8), channels=(4, 6), num_classes=3, pool=2, dense=dense, neuron=LIFParameters(threshold=0.1)
    )
    net = BinaryPrior().apply_(net).double()
    draws = {
        f"layers.{i}.weight": torch.sign(torch.randn(samples, *layer.weight_prior.shape, dtype=torch.float64))
        for i, layer in enumerate(net.layers)
    }
    return net, draws


@pytest.mark.parametrize("dense", [(), (5,)])
def test_conv_network_batched_draws_equal_separate_passes(dense):
    torch.manual_seed(1)
    net, draws = _small_net_and_draws(4, dense)
    x = torch.bernoulli(torch.full((3, 6, 2, 8, 8), 0.2, dtype=torch.float64))
    batched = poutine.condition(net, data=draws)(x).readouts
    assert batched.shape == (4, 3, 2 + len(dense), 6, 3)
    for k in range(4):
        single = poutine.condition(net, data={n: v[k] for n, v in draws.items()})(x).readouts
        torch.testing.assert_close(batched[k], single)


def test_bad_conv_configuration():
    with pytest.raises(ValueError, match="odd"):
        BinaryConv2d(2, 3, 4)
    with pytest.raises(ValueError, match="too small"):
        ConvSpikingNet((2, 2, 2), channels=(4, 4), pool=2)
    with pytest.raises(ValueError, match="one per convolution"):
        ConvSpikingNet((2, 8, 8), channels=(4, 4), pool=(2,))


def test_per_layer_pooling_and_dense_layers_shape_the_network():
    net = ConvSpikingNet((2, 8, 8), channels=(4, 6), num_classes=3, pool=(2, 1), dense=(7, 5))
    assert net.output_shapes == [(4, 4, 4), (6, 4, 4), (7,), (5,)]
    assert [layer.weight.shape for layer in net.layers[2:]] == [(7, 96), (5, 7)]
    out = net(torch.bernoulli(torch.full((3, 4, 2, 8, 8), 0.3)))
    assert out.readouts.shape == (3, 4, 4, 3) and out.spike_counts.shape == (4,)


def test_conv_model_trains_on_the_offline_digits(tmp_path):
    config = ExperimentConfig(dataset="digits-dvs", model="conv", rule="bayes", epochs=1, lr=2e-3, steps=10, burn_in=2)
    run = create_run(config, tmp_path / "digits")
    assert run.train.x.shape[1:] == (10, 2, 12, 12)
    run.fit(progress=False)
    scores = run.evaluate("ensemble", 3)
    assert scores["n"] == 359 and scores["accuracy"] > 0.15  # ten classes: chance is 0.1


@pytest.mark.parametrize("dense", [(), (5,)])
def test_conv_time_loops_agree(dense):
    """With and without gradients (the traces filtering the inputs, or the drive), also with a dense
    layer reading the last feature map (flattened inside its synapse)."""
    torch.manual_seed(2)
    net, draws = _small_net_and_draws(2, dense)
    x = torch.bernoulli(torch.full((3, 10, 2, 8, 8), 0.3, dtype=torch.float64))
    outputs = []
    for loop, grad in (("steps", True), ("steps", False), ("layers", True)):
        net.time_loop = loop
        with torch.set_grad_enabled(grad):
            outputs.append(poutine.condition(net, data=draws)(x))
    assert outputs[0].spike_counts.min() > 0
    for out in outputs[1:]:
        assert torch.equal(out.spike_counts, outputs[0].spike_counts)
        torch.testing.assert_close(out.readouts, outputs[0].readouts, rtol=0, atol=1e-12)


@pytest.mark.parametrize("samples", [0, 2])
def test_conv_layer_loop_gradients_equal_the_step_loop(samples):
    """The layer loop changes each drive into the potential in place; gradients must not notice,
    with one weight or a leading dimension of draws (a grouped convolution)."""
    torch.manual_seed(3)
    net, draws = _small_net_and_draws(max(samples, 1), (5,))
    weights = [draw if samples else draw[0] for draw in draws.values()]
    x = torch.bernoulli(torch.full((3, 10, 2, 8, 8), 0.3, dtype=torch.float64))
    grads = {}
    for loop in ("steps", "layers"):
        net.time_loop = loop
        leaves = [w.clone().requires_grad_() for w in weights]
        net.run(x, leaves).readouts.square().sum().backward()
        grads[loop] = [w.grad for w in leaves]
    for a, b in zip(grads["steps"], grads["layers"]):
        assert a.abs().sum() > 0
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_config_dense_layers_and_kernel_size_reach_the_network():
    from bisnn_pyro.experiment import build_network

    config = ExperimentConfig(dataset="digits-dvs", model="conv", dense=[16], kernel_size=5).validate()
    net = build_network(config, (2, 12, 12))
    assert net.output_shapes[-1] == (16,) and net.layers[-1].weight.shape == (16, 32 * 12 * 12)
    assert net.layers[0].weight.shape == (16, 2, 5, 5)
    assert ExperimentConfig.from_dict(config.to_dict()).dense == [16]
