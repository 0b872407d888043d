import pytest
import torch
from pyro import poutine

from bisnn_pyro.models import BinaryPrior, GaussianPrior, RelaxedBinaryPrior, SignBernoulli, SpikingMLP
from bisnn_pyro.models.distributions import RelaxedSignBernoulli, natural_from_probs


def sites(net):
    trace = poutine.trace(net).get_trace(torch.zeros(1, 2, 3))
    return {name: site for name, site in trace.nodes.items() if site["type"] == "sample"}


def test_binary_prior_turns_weights_into_sign_sites():
    found = sites(BinaryPrior(0.3).apply_(SpikingMLP(3, (4, 5), 2)))
    assert set(found) == {"layers.0.weight", "layers.1.weight"}
    site = found["layers.1.weight"]
    assert isinstance(site["fn"].base_dist, SignBernoulli)
    assert site["fn"].event_shape == (5, 4)
    assert set(site["value"].unique().tolist()) <= {-1.0, 1.0}
    torch.testing.assert_close(site["fn"].base_dist.probs, torch.full((5, 4), 0.3))


def test_per_layer_and_per_weight_probabilities():
    p1 = torch.rand(5, 4) * 0.8 + 0.1
    net = BinaryPrior({"layers.0": 0.9, "layers.1.weight": p1}).apply_(SpikingMLP(3, (4, 5), 2))
    torch.testing.assert_close(net.layers[0].weight_prior, natural_from_probs(torch.full((4, 3), 0.9)))
    torch.testing.assert_close(net.layers[1].weight_prior, natural_from_probs(p1))
    assert "layers.1.weight_prior" in net.state_dict()  # saved with the model


def test_selector_decides_which_parameters_become_random():
    net = BinaryPrior(select=lambda name, module: name == "layers.1.weight").apply_(SpikingMLP(3, (4, 5), 2))
    assert set(sites(net)) == {"layers.1.weight"}
    assert isinstance(net.layers[0].weight, torch.nn.Parameter)


def test_relaxed_and_gaussian_priors():
    site = sites(RelaxedBinaryPrior(0.5, temperature=0.3).apply_(SpikingMLP(3, (4,), 2)))["layers.0.weight"]
    assert isinstance(site["fn"].base_dist, RelaxedSignBernoulli)
    assert torch.isfinite(site["fn"].log_prob(site["value"]))
    site = sites(GaussianPrior(2.0).apply_(SpikingMLP(3, (4,), 2)))["layers.0.weight"]
    torch.testing.assert_close(site["fn"].base_dist.scale, torch.full((4, 3), 2.0))


@pytest.mark.parametrize("p", [0.0, 1.0, -0.2, {"layers.0": 1.2}])
def test_invalid_probabilities(p):
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        BinaryPrior(p)


def test_mismatched_shapes_and_missing_layers_are_named():
    with pytest.raises(ValueError, match="layers.0.weight"):
        BinaryPrior(torch.full((7,), 0.5)).apply_(SpikingMLP(3, (4,), 2))
    with pytest.raises(KeyError, match="layers.0.weight"):
        BinaryPrior({"layers.9": 0.5}).apply_(SpikingMLP(3, (4,), 2))
