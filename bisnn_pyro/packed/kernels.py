"""numba kernels of the packed engine: one layer of binary synapses and LIF neurons over every step
of a batch of sequences, for every weight draw, from 0/1 spikes (or whole-number event counts).

A neuron's drive from input spikes s is D = sum_j w_j s_j, a whole number for +-1 weights.  It is
summed in one of two ways (``dense_events`` and ``dense_popcount``; ``conv_events`` for
convolutions):

* event-driven: for each input that spiked, add its row of +-1 weights (int8, the output neurons
  contiguous, so the additions vectorise across neurons): work proportional to the input spikes;
* bit counts: with the +1 weights of each 64 inputs in one machine word per output neuron,
  D = 2 popcount(b & s) - popcount(s): work proportional to the fan-in / 64.

Then each neuron filters its drive and fires exactly as the float network does without gradients
(``lif_drive_step_``): P = aP + Q, Q = bQ + D and R = cR + S as fused multiply-adds (``_leak``, as
PyTorch's vectorised kernels compute them), U = scale P (+ bias), spike when U - R > threshold, the
multiplication, addition and subtraction each rounded on their own (the kernels are compiled
without contraction), so that the spikes are the same bit for bit.
"""

from __future__ import annotations

import llvmlite.ir
import numpy as np
from numba import prange
from numba.core import types
from numba.extending import intrinsic

from ..inference.fused_kernels import _njit

_JIT = dict(cache=True, error_model="numpy")


@intrinsic
def _popcount(typingctx, x):
    """The number of set bits of a uint64 (LLVM's ctpop; a vector of bit counts where it vectorises)."""

    def codegen(context, builder, signature, args):
        ctpop = builder.module.declare_intrinsic("llvm.ctpop", [llvmlite.ir.IntType(64)])
        return builder.call(ctpop, args)

    return types.uint64(types.uint64), codegen


@intrinsic
def _leak(typingctx, trace, decay, inflow):
    """decay * trace + inflow in float32 as one fused multiply-add, rounded once (LLVM's fma: one
    instruction where the processor has it), as PyTorch's vectorised kernels compute
    ``recurrences.leak``; unlike a contraction the compiler may or may not make, it is always fused
    and still vectorises."""

    def codegen(context, builder, signature, args):
        single = llvmlite.ir.FloatType()
        fma = builder.module.declare_intrinsic("llvm.fma", [single], llvmlite.ir.FunctionType(single, [single] * 3))
        return builder.call(fma, args)

    return types.float32(types.float32, types.float32, types.float32), codegen


@_njit(**_JIT)
def _fire(drive, p, q, r, s, spikes, scale, bias, a, b, c, threshold):
    """One step of a layer's neurons from their whole-number ``drive`` (int32): the traces p, q of
    the drive, the refractory trace r and the last spikes s (float32) move on; ``spikes`` (uint8)
    receives the new spikes.  ``bias`` holds zeros for a layer without one: adding +0 changes at
    most the sign of a zero potential, never a spike, and a loop without branches vectorises.
    Every index runs from 0 over whole (sliced) arrays: numba then needs no check for negative
    indices."""
    for o in range(drive.shape[0]):
        p[o] = _leak(p[o], a, q[o])
        q[o] = _leak(q[o], b, np.float32(drive[o]))
        u = p[o] * scale + bias[o]
        r[o] = _leak(r[o], c, s[o])
        spike = u - r[o] > threshold
        s[o] = np.float32(spike)
        spikes[o] = np.uint8(spike)


@_njit(parallel=True, **_JIT)
def dense_events(inputs, weights, scale, bias, a, b, c, threshold, spikes):
    """A dense layer over every step: ``inputs`` (S_in, B, T, F_in) uint8 with S_in = 1 (shared by
    the draws) or S, ``weights`` (S, F_in, F_out) int8 (row j: input j's weights to every output),
    ``spikes`` (S, B, T, F_out) uint8 receives the output spikes; drives summed over the inputs
    that spiked (``inputs`` may hold whole-number counts)."""
    draws, fan_in, fan_out = weights.shape
    shared, batch, steps = inputs.shape[0] == 1, inputs.shape[1], inputs.shape[2]
    for job in prange(draws * batch):
        k, n = job // batch, job % batch
        kin = 0 if shared else k
        p, q = np.zeros(fan_out, np.float32), np.zeros(fan_out, np.float32)
        r, s = np.zeros(fan_out, np.float32), np.zeros(fan_out, np.float32)
        drive = np.empty(fan_out, np.int32)
        fired = np.empty(fan_out, np.uint8)
        for t in range(steps):
            for o in range(fan_out):
                drive[o] = 0
            for j in range(fan_in):
                count = np.int32(inputs[kin, n, t, j])
                if count:
                    for o in range(fan_out):
                        drive[o] += count * weights[k, j, o]
            _fire(drive, p, q, r, s, fired, scale, bias, a, b, c, threshold)
            for o in range(fan_out):
                spikes[k, n, t, o] = fired[o]


@_njit(**_JIT)
def _pack(flags, words):
    """0/1 bytes ``flags`` (a multiple of 8 long) as bits: bit i of ``words[w]`` is flags[64 w + i].
    Eight bytes at a time: the multiplication gathers each byte's low bit into the top byte."""
    groups = flags.view(np.uint64)
    for w in range(words.shape[0]):
        word = np.uint64(0)
        for g in range(min(8, groups.shape[0] - 8 * w)):
            byte = (groups[8 * w + g] * np.uint64(0x0102040810204080)) >> np.uint64(56)
            word |= byte << np.uint64(8 * g)
        words[w] = word


@_njit(**_JIT)
def _count_ones(words):
    total = 0
    for w in range(words.shape[0]):
        total += _popcount(words[w])
    return total


@_njit(parallel=True, **_JIT)
def dense_network_popcount(inputs, plus_bits, shapes, scales, biases, a, b, c, threshold,
                           readout_bits, readout_scales, out):
    """A network of dense layers over every step by bit counts, each layer's spikes kept as words in
    cache for the next layer and its readout: ``inputs`` (B, T, F_in) 0/1 uint8 shared by the draws;
    per layer l, ``shapes[l]`` = (fan-in, fan-out, offset of its words in ``plus_bits``, offset of
    its neurons, offset of its readout's words), ``plus_bits`` (S, total) uint64 holding the +1
    weights of inputs 64 w .. 64 w + 63 of output o at offset + w * fan-out + o, ``biases`` per
    neuron (zeros: none), ``readout_bits`` the +1 entries of each readout row as words; ``out``
    (S, B, layers, T, classes) float32 receives the readouts, D = 2 popcount(b & s) - popcount(s).

    Each sequence works on its own copies of the arrays it slices in its loops: a slice of an array
    that other threads slice too costs a contended atomic reference count."""
    draws, batch, layers, steps, classes = out.shape
    neurons = shapes[layers - 1, 3] + shapes[layers - 1, 1]
    widest = 8 * ((max(inputs.shape[2], shapes[:, 1].max()) + 7) // 8)
    for job in prange(draws * batch):
        k, n = job // batch, job % batch
        bits, readouts, bias_all = plus_bits[k].copy(), readout_bits.copy(), biases.copy()
        p, q = np.zeros(neurons, np.float32), np.zeros(neurons, np.float32)
        r, s = np.zeros(neurons, np.float32), np.zeros(neurons, np.float32)
        flags = np.zeros(widest, np.uint8)
        words = np.zeros(widest // 64 + 1, np.uint64)
        ones = np.empty(widest, np.int64)
        drive = np.empty(widest, np.int32)
        logits = np.empty((layers, steps, classes), np.float32)
        for t in range(steps):
            fan_in = inputs.shape[2]
            for j in range(fan_in):
                flags[j] = inputs[n, t, j]
            flags[fan_in:] = 0
            for layer in range(layers):
                fan_in, fan_out = shapes[layer, 0], shapes[layer, 1]
                weights_at, neurons_at, readout_at = shapes[layer, 2], shapes[layer, 3], shapes[layer, 4]
                used = (fan_in + 63) // 64
                _pack(flags[: 8 * ((fan_in + 7) // 8)], words[:used])
                active = _count_ones(words[:used])
                ones[:fan_out] = 0
                for w in range(used):
                    word = words[w]
                    if word:
                        row = bits[weights_at + w * fan_out : weights_at + (w + 1) * fan_out]
                        for o in range(fan_out):
                            ones[o] += _popcount(row[o] & word)
                for o in range(fan_out):
                    drive[o] = np.int32(2 * ones[o] - active)
                end = neurons_at + fan_out
                _fire(drive[:fan_out], p[neurons_at:end], q[neurons_at:end], r[neurons_at:end], s[neurons_at:end],
                      flags[:fan_out], scales[layer], bias_all[neurons_at:end], a, b, c, threshold)
                flags[fan_out:] = 0
                spiked = (fan_out + 63) // 64
                _pack(flags[: 8 * ((fan_out + 7) // 8)], words[:spiked])
                total = _count_ones(words[:spiked])
                for cls in range(classes):
                    row = readouts[readout_at + cls * spiked : readout_at + (cls + 1) * spiked]
                    plus = 0
                    for w in range(spiked):
                        plus += _popcount(row[w] & words[w])
                    logits[layer, t, cls] = np.float32(2 * plus - total) * readout_scales[layer]
        out[k, n] = logits


@_njit(parallel=True, **_JIT)
def conv_events(inputs, weights, padding, scale, bias, a, b, c, threshold, spikes):
    """A "same" convolution (stride 1) over every step: ``inputs`` (S_in, B, T, C, H, W) uint8,
    ``weights`` (S, C, k, k, O) int8 (the output channels contiguous), ``spikes``
    (S, B, T, O, H, W) uint8 receives the output spikes; each input that spiked adds its weights to
    the k x k outputs it reaches."""
    draws, channels, size, _, out_channels = weights.shape
    shared, batch, steps = inputs.shape[0] == 1, inputs.shape[1], inputs.shape[2]
    height, width = inputs.shape[4], inputs.shape[5]
    neurons = height * width * out_channels
    for job in prange(draws * batch):
        k, n = job // batch, job % batch
        kin = 0 if shared else k
        p, q = np.zeros(neurons, np.float32), np.zeros(neurons, np.float32)
        r, s = np.zeros(neurons, np.float32), np.zeros(neurons, np.float32)
        drive = np.empty(neurons, np.int32)  # (y, x, o): the output channels contiguous
        fired = np.empty(neurons, np.uint8)
        channel_bias = np.empty(neurons, np.float32)
        for i in range(neurons):
            channel_bias[i] = bias[i % out_channels]
        for t in range(steps):
            for i in range(neurons):
                drive[i] = 0
            for ci in range(channels):
                for yi in range(height):
                    for xi in range(width):
                        count = np.int32(inputs[kin, n, t, ci, yi, xi])
                        if count == 0:
                            continue
                        for ky in range(max(0, yi + padding - height + 1), min(size, yi + padding + 1)):
                            y = yi - ky + padding
                            for kx in range(max(0, xi + padding - width + 1), min(size, xi + padding + 1)):
                                base = (y * width + xi - kx + padding) * out_channels
                                for o in range(out_channels):
                                    drive[base + o] += count * weights[k, ci, ky, kx, o]
            _fire(drive, p, q, r, s, fired, scale, channel_bias, a, b, c, threshold)
            for y in range(height):
                for xo in range(width):
                    base = (y * width + xo) * out_channels
                    for o in range(out_channels):
                        spikes[k, n, t, o, y, xo] = fired[base + o]


@_njit(parallel=True, **_JIT)
def readout_counts(spikes, readout, counts):
    """counts[k, n, t, c] = sum_j readout[c, j] spikes[k, n, t, j]: a DECOLLE readout's whole-number
    logits before its scale, from ``spikes`` (S, B, T, F) uint8 and ``readout`` (classes, F) int8."""
    draws, batch, steps, features = spikes.shape
    classes = readout.shape[0]
    for job in prange(draws * batch):
        k, n = job // batch, job % batch
        for t in range(steps):
            for cls in range(classes):
                counts[k, n, t, cls] = 0
            for j in range(features):
                if spikes[k, n, t, j]:
                    for cls in range(classes):
                        counts[k, n, t, cls] += readout[cls, j]
