"""Convolutional synapses with the same weight contract as the dense ones.

The weight (out, in, k, k) may carry leading sample dimensions, flattened into one dimension S;
the input then has shape (B, in, H, W) or (S, B, in, H, W) and the output (S, B, out, H', W').
The S weight draws run as one grouped convolution.  Drives are scaled by 1/sqrt(in * k * k).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pyro.nn import PyroParam

from ..adapters.pyro_internals import LocalPyroModule


def conv_synapse(
    inputs: torch.Tensor, weight: torch.Tensor, scale: float, padding: int, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """scale * conv2d(inputs, weight) (+ bias) for one weight or a stack of weight draws."""
    if weight.dim() == 4:
        out = F.conv2d(inputs.reshape(-1, *inputs.shape[-3:]), weight, padding=padding)
        if inputs.dim() != 4:  # no view when none is needed: the network changes the drive in place
            out = out.reshape(*inputs.shape[:-3], *out.shape[-3:])
    else:
        weight = weight.reshape(-1, *weight.shape[-4:])
        samples, out_channels = weight.shape[:2]
        if inputs.dim() == 4:
            inputs = inputs.unsqueeze(0)
        inputs = inputs.expand(samples, *inputs.shape[1:])
        batch = inputs.shape[1]
        stacked = inputs.transpose(0, 1).reshape(batch, -1, *inputs.shape[-2:])  # (B, S * in, H, W)
        out = F.conv2d(stacked, weight.reshape(-1, *weight.shape[-3:]), padding=padding, groups=samples)
        out = out.reshape(batch, samples, out_channels, *out.shape[-2:]).transpose(0, 1)
    if scale != 1.0:
        out = out * scale
    return out if bias is None else out + bias.view(-1, 1, 1)


def max_pool(spikes: torch.Tensor, size: int) -> torch.Tensor:
    """2-D max pooling over the last two dims of (..., C, H, W): a pooled unit spikes if any did."""
    if size == 1:
        return spikes
    pooled = F.max_pool2d(spikes.reshape(-1, *spikes.shape[-3:]), size)
    return pooled.reshape(*spikes.shape[:-3], *pooled.shape[-3:])


class BinaryConv2d(LocalPyroModule):
    """Convolutional synapses ("same" padding, stride 1); +-1 weights under a binary prior."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = False):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel size must be odd for 'same' padding, got {kernel_size}")
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.padding = kernel_size // 2
        self.scale = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.weight = torch.nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = PyroParam(torch.zeros(out_channels)) if bias else None

    @property
    def weight_shape(self) -> tuple[int, int, int, int]:
        """(out, in, k, k): the weight's shape, read without drawing it (under a prior, ``weight`` is a
        sample site)."""
        return (self.out_channels, self.in_channels, self.kernel_size, self.kernel_size)

    def synapse(self, weight: torch.Tensor, bias: torch.Tensor | None = None):
        """The map p -> W * p / sqrt(fan_in) for a fixed draw of the weight (scaled once, not per step)."""
        scaled = weight * self.scale
        return lambda inputs: conv_synapse(inputs, scaled, 1.0, self.padding, bias)

    def drive(self, weight: torch.Tensor):
        """The map s -> W * s: the synapse before its 1/sqrt(fan_in) scale and bias (whole numbers,
        exact in float32, for +-1 weights and 0/1 spikes)."""
        return lambda inputs: conv_synapse(inputs, weight, 1.0, self.padding)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return conv_synapse(inputs, self.weight, self.scale, self.padding, self.bias)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}"
