"""The online schedule's step for Bayes-BiSNN fused into a few compiled passes.

An online step (one optimiser step per time step, the paper's schedule) does little arithmetic on
many small tensors: through autograd it is a few hundred PyTorch operations, each with a fixed
cost, and about thirty passes over every weight, so it costs 4-5 ms here however it is traced.
``FusedOnline`` takes the same step for the ``bayes`` rule's parts with the gradient written
out by hand (DECOLLE's local learning makes every layer's gradient its own readout's): per layer,
one pass draws the relaxed weights and their slopes, two matrix products and three small kernels
run the layer and its readout, and one pass takes the natural-gradient step and the KL.  The same
loss and the same update as ``DirectSVI`` for the same uniforms (tested), from its
own counter-based uniforms (``uniform32``), whose keys come from PyTorch's
generator.

It applies to a ``SpikingMLP`` without biases and with local learning
and the boxcar surrogate, a ``ReadoutCategorical`` on every
layer's readout, a relaxed ``SignBernoulliGuide`` under a fixed sign-Bernoulli prior,
a ``MeanFieldELBO`` with one particle, and ``BayesianLearningRule`` without
gradient clipping, in float32 on the CPU; ``unsupported_reason`` says what else stops it.  It
finds the layers' sites, priors and natural parameters in the model's description
(``bsnn.sites``).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from pyro.infer.elbo import ELBO
from pyro.optim import PyroOptim

from ..adapters.pyro_internals import clips_gradients
from ..errors import TrainingDiverged
from ..models.distributions import SignBernoulli, log_two_cosh
from ..models.layers import BinaryLinear
from ..models.likelihoods import ReadoutCategorical
from ..models.snn import DecolleNetwork
from .bnn import BayesianSNN
from .elbo import MeanFieldELBO
from .guides import SignBernoulliGuide
from .optim import LearningRule, parameter_optimizer
from .sites import CompositionError


def unsupported_reason(bsnn: BayesianSNN, optim: PyroOptim, loss: ELBO) -> str:
    """Why ``FusedOnline`` cannot take ``bsnn``'s online steps with ``optim`` and ``loss``
    ('' when it can)."""
    try:
        from . import fused_kernels  # noqa: F401
    except ImportError:
        return "numba is not installed"
    net = bsnn.net
    if not isinstance(net, DecolleNetwork) or not all(isinstance(layer, BinaryLinear) for layer in net.layers):
        return "its network is not a SpikingMLP"
    if any(layer.bias is not None for layer in net.layers) or any(pool != 1 for pool in net.pools):
        return "its layers have biases or pooling"
    if not net.local_learning:
        return "its learning is not local (DECOLLE)"
    if getattr(net.spike, "boxcar_width", None) is None:
        return "its surrogate is not the boxcar"
    likelihood = bsnn.likelihood
    if type(likelihood) is not ReadoutCategorical or likelihood.readouts != "all":
        return "its likelihood is not ReadoutCategorical on every layer's readout"
    guide, sites = bsnn.guide, bsnn.sites
    if type(guide) is not SignBernoulliGuide or not isinstance(guide.temperature, (int, float)):
        return "its guide is not a SignBernoulliGuide with a fixed relaxation temperature"
    if None in sites.layer_weights or sites.hyper or sites.parameters:
        return "its latent sites are not exactly the layers' weights"
    for name, prior in bsnn.prior_distributions().items():
        base = getattr(prior, "base_dist", prior)
        if type(base) is not SignBernoulli or base.natural.requires_grad:
            return f"the prior of {name} is not a fixed SignBernoulli"
    if not isinstance(loss, MeanFieldELBO) or getattr(loss, "num_particles", 1) != 1:
        return "its loss is not MeanFieldELBO with one particle"
    if not isinstance(optim, LearningRule) or clips_gradients(optim):
        return "its optimiser is not BayesianLearningRule without gradient clipping"
    for lam in guide.natural().values():
        if lam.device.type != "cpu" or lam.dtype != torch.float32:
            return "its parameters are not float32 on the CPU"
    return ""


class _Layer:
    """One layer's parameters and work buffers, with flat numpy views of them for the kernels."""

    def __init__(self, name: str, natural: torch.Tensor, readout: torch.Tensor, gain: float, scale: float):
        self.name, self.natural = name, natural
        self.readout = readout.detach().contiguous().numpy()
        self.gain, self.scale = np.float32(gain), np.float32(scale)
        self.weight = torch.empty_like(natural)
        self.kl = np.empty(natural.shape, np.float32)
        self.row = np.empty(natural.shape[1], np.float32)
        self.natural_array, self.weight_array = natural.detach().numpy(), self.weight.numpy()
        self.flat_natural, self.flat_weight = self.natural_array.ravel(), self.weight_array.ravel()
        self.weight_t = self.weight.t()

    def set_prior(self, natural: torch.Tensor) -> None:
        """The prior's natural parameters, one per weight, and the sum of their log 2cosh."""
        prior = natural.detach().to(torch.float32).expand(self.natural.shape).contiguous()
        self.prior = prior.numpy()
        self.prior_normalizer = float(log_two_cosh(prior).sum(dtype=torch.float64))

    def set_batch(self, batch: int) -> None:
        """Resting state and work buffers for ``batch`` sequences."""
        outputs, inputs = self.natural.shape
        self.p, self.q = torch.zeros(batch, inputs), torch.zeros(batch, inputs)
        self.potential = torch.empty(batch, outputs)
        self.grad_potential = np.empty((batch, outputs), np.float32)
        self.r, self.s = np.zeros((batch, outputs), np.float32), np.zeros((batch, outputs), np.float32)
        self.window = np.empty((batch, outputs), np.float32)
        self.flat_p, self.flat_q = self.p.numpy().ravel(), self.q.numpy().ravel()
        self.flat_r, self.flat_s, self.flat_window = self.r.ravel(), self.s.ravel(), self.window.ravel()
        self.flat_potential = self.potential.numpy().ravel()


class FusedOnline:
    """Online sequences of a ``BayesianSNN`` under ``optim`` (``BayesianLearningRule``) and
    ``loss`` (``MeanFieldELBO``), each step fused; see the module's docstring."""

    def __init__(self, bsnn: BayesianSNN, optim: PyroOptim, loss: ELBO):
        reason = unsupported_reason(bsnn, optim, loss)
        if reason:
            raise CompositionError(f"the fused engine cannot train this model: {reason}")
        from . import fused_kernels

        self.kernels = fused_kernels
        self.bsnn, self.optim = bsnn, optim
        sizes = [lam.numel() for lam in bsnn.guide.natural().values()]
        self.offsets = np.cumsum([0] + sizes[:-1]).astype(np.uint64)  # each layer's first uniform

    def _layers(self) -> list[_Layer]:
        """Views of the parameters as they are now (a loaded state dict or a moved model may have
        replaced the tensors), with the prior's natural parameters."""
        net, naturals, priors = self.bsnn.net, self.bsnn.guide.natural(), self.bsnn.prior_distributions()
        layers = []
        for index, (layer, name) in enumerate(zip(net.layers, self.bsnn.sites.layer_weights)):
            readout = getattr(net, f"readout_{index}")
            made = _Layer(name, naturals[name], readout, net.readout_scales[index], layer.scale)
            made.set_prior(getattr(priors[name], "base_dist", priors[name]).natural)
            layers.append(made)
        return layers

    def _steppers(self, layers: list[_Layer], kl_coef: float) -> list:
        """Per layer, a function taking its natural-gradient step with this sequence's hyper-parameters
        (and the optimiser's momentum buffer, where it has momentum)."""
        steppers = []
        for layer in layers:
            optimizer = parameter_optimizer(self.optim, layer.natural)  # its state checkpoints as SVI's
            group, state = optimizer.param_groups[0], optimizer.state[layer.natural]
            hyper = (
                layer.natural_array,
                layer.grad_potential,
                layer.p.numpy(),
                layer.weight_array,
                np.float32(layer.scale * layer.scale),
                np.float32(1.0 / (layer.scale * self.bsnn.guide.temperature)),
                layer.prior,
                np.float32(kl_coef),
                np.float32(group["lr"]),
                np.float32(group["min_fisher"]),
                np.float32(group["max_natural"]),
                np.float32(group["momentum"]),
                np.float32(group["dampening"]),
            )
            steppers.append(self._stepper(layer, hyper, state if group["momentum"] > 0 else None))
        return steppers

    def _stepper(self, layer: _Layer, hyper: tuple, state: dict | None):
        """Without momentum (``state`` None) every step is fresh, into a scratch buffer; with it the
        buffer is the optimiser's ``momentum_buffer``, made on the first step as SVI's would be."""
        kernel = self.kernels.natural_gradient_step
        if state is None:
            scratch = np.empty(layer.natural.shape, np.float32)
            return lambda: kernel(*hyper, scratch, True, layer.kl, layer.row)

        def step() -> None:
            fresh = "momentum_buffer" not in state
            if fresh:
                state["momentum_buffer"] = torch.empty_like(layer.natural)
            kernel(*hyper, state["momentum_buffer"].numpy(), fresh, layer.kl, layer.row)

        return step

    @torch.no_grad()
    def sequence(self, x: torch.Tensor, y: torch.Tensor, kl_scale: float) -> float:
        """Every step of the sequences ``x`` (B, T, ...) with labels ``y``: the first ``burn_in``
        steps move the state on with fresh weights, each later one takes an optimiser step on the
        -ELBO with the KL scaled by ``kl_scale``; returns the sum of those steps' losses."""
        k, net, likelihood = self.kernels, self.bsnn.net, self.bsnn.likelihood
        layers = self._layers()
        batch, steps = x.shape[:2]
        inputs = x.reshape(batch, steps, -1).transpose(0, 1).to(torch.float32).contiguous().numpy()
        if inputs.shape[2] != layers[0].natural.shape[1]:
            raise ValueError(f"expected {layers[0].natural.shape[1]} input features a step, got {tuple(x.shape)}")
        labels = y.long().numpy()
        if labels.shape != (batch,) or labels.min() < 0 or labels.max() >= net.num_classes:
            raise ValueError(f"expected {batch} labels in [0, {net.num_classes}), got {y.tolist()}")
        data_scale = np.float32(likelihood.num_data / batch)
        kl_coef = self.bsnn.kl_weight * kl_scale
        if not abs(kl_coef) <= float(np.finfo(np.float32).max):
            raise TrainingDiverged(
                "the gradient of the natural parameters is not finite: "
                f"the KL coefficient {kl_coef:g} overflows float32"
            )
        for layer in layers:
            layer.set_batch(batch)
        steppers = self._steppers(layers, kl_coef)
        a, b, c = (np.float32(decay) for decay in net.neuron.decays())
        threshold, width = np.float32(net.neuron.threshold), np.float32(net.spike.boxcar_width)
        inv_temperature = np.float32(1.0 / self.bsnn.guide.temperature)
        draw = k.draw_reciprocal_temperature if inv_temperature in (1.0, 2.0) else k.draw
        logits = np.empty(net.num_classes, np.float32)
        keys = torch.randint(-(2**63), 2**63 - 1, (steps,), dtype=torch.int64).numpy().view(np.uint64)
        total = 0.0
        for t in range(steps):
            for layer, first in zip(layers, self.offsets):
                draw(layer.flat_natural, keys[t], first, inv_temperature, layer.scale, layer.flat_weight)
            layer_input = inputs[t].ravel()
            for layer, step in zip(layers, steppers):
                k.advance_traces(layer.flat_p, layer.flat_q, layer.flat_r, layer.flat_s, layer_input, a, b, c)
                torch.matmul(layer.p, layer.weight_t, out=layer.potential)
                k.fire(layer.flat_potential, layer.flat_r, layer.flat_s, threshold, width, layer.flat_window)
                layer_input = layer.flat_s
                if t < likelihood.burn_in:
                    continue
                log_likelihood = k.readout_loss(
                    layer.s, layer.window, layer.readout, layer.gain, labels, data_scale, layer.grad_potential, logits
                )
                if not math.isfinite(log_likelihood):
                    raise TrainingDiverged(
                        f"the gradient of the natural parameters of {layer.name} is not finite at step {t} "
                        f"(its readout's log-likelihood is {log_likelihood})"
                    )
                step()
                divergence = float(layer.kl.sum()) + layer.prior_normalizer
                total += kl_coef * divergence - log_likelihood
        return total
