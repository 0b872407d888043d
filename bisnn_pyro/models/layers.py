"""Synapses whose weight comes from outside: a Pyro sample site under a prior, or a parameter.

The weight may carry leading sample dimensions (an ensemble of K draws, or vectorised particles);
they are flattened into one leading dimension S, so inputs of shape (B, in) or (S, B, in) give
outputs of shape (S, B, out).  Drives are scaled by 1/sqrt(fan_in) so that +-1 weights keep the
membrane potential of order one.
"""

from __future__ import annotations

import math

import torch
from pyro.nn import PyroParam

from ..adapters.pyro_internals import LocalPyroModule


def linear_synapse(
    inputs: torch.Tensor,
    weight: torch.Tensor,
    scale: float,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """inputs @ (scale * weight)^T (+ bias), broadcasting any leading sample dimensions of weight.
    (The weight is the smaller tensor, so it takes the scale.)"""
    if weight.dim() > 2:
        weight = weight.reshape(-1, *weight.shape[-2:])
    if scale != 1.0:
        weight = weight * scale
    out = torch.matmul(inputs, weight.transpose(-1, -2))
    return out if bias is None else out + bias


class BinaryLinear(LocalPyroModule):
    """Dense synapses; the weights are +-1 once a binary prior turns ``weight`` into a sample site."""

    def __init__(self, in_features: int, out_features: int, bias: bool = False):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.scale = 1.0 / math.sqrt(in_features)
        self.weight = torch.nn.Parameter(torch.randn(out_features, in_features))
        self.bias = PyroParam(torch.zeros(out_features)) if bias else None

    @property
    def weight_shape(self) -> tuple[int, int]:
        """(out, in): the weight's shape, read without drawing it (under a prior, ``weight`` is a sample site)."""
        return (self.out_features, self.in_features)

    def synapse(self, weight: torch.Tensor, bias: torch.Tensor | None = None):
        """The map p -> W p / sqrt(fan_in) for a fixed draw of the weight (scaled once, not per step)."""
        scaled = weight * self.scale
        return lambda inputs: linear_synapse(inputs, scaled, 1.0, bias)

    def drive(self, weight: torch.Tensor):
        """The map s -> W s: the synapse before its 1/sqrt(fan_in) scale and bias (whole numbers, exact
        in float32, for +-1 weights and 0/1 spikes)."""
        return lambda inputs: linear_synapse(inputs, weight, 1.0)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return linear_synapse(inputs, self.weight, self.scale, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"
