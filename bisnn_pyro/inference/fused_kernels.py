"""numba kernels of the fused online step (``fused``): vectorisable float32 exp and log, a
counter-based uniform generator, and the element-wise passes of one step.

numba's ``np.exp`` and ``np.log`` call the C library one element at a time (4-5 ns an element here,
about ten times a vectorised loop), so the per-weight work of a step would cost more than the rest
of it.  ``exp32`` and ``log32`` are Cephes' float32 polynomials written so that LLVM
vectorises them (relative error below 3e-7, tested against float64).  ``uniform32`` is
SplitMix64 at (key, counter): every weight of every step gets its own number, in any order, with
no generator state to carry; the key of each step comes from PyTorch's generator, so
``torch.manual_seed`` and checkpoints reproduce a run.

Importing this module imports numba (about half a second); the kernels compile on first use and
numba keeps them on disk.
"""

from __future__ import annotations

import llvmlite.ir
import numba
import numpy as np
from numba import float32, int32, uint64
from numba.core import types
from numba.extending import intrinsic

_JIT = dict(cache=True, error_model="numpy")  # numpy's error model: no zero-division branch to block vectorising
_CONTRACT = dict(_JIT, fastmath={"contract"})  # decay * trace + inflow as one multiply-add, as in recurrences


def _njit(**options):
    """``numba.njit`` keeping compiled kernels on disk where numba finds a writable place for them,
    and compiling them afresh in each process where it does not (a read-only installation)."""

    def decorate(function):
        try:
            return numba.njit(**options)(function)
        except RuntimeError as error:  # numba: "cannot cache function ...: no locator available"
            if "cannot cache" not in str(error):
                raise
            return numba.njit(**{**options, "cache": False})(function)

    return decorate


@intrinsic
def _float_bits(typingctx, x):
    """The bits of a float32 as an int32."""

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], llvmlite.ir.IntType(32))

    return types.int32(types.float32), codegen


@intrinsic
def _bits_float(typingctx, x):
    """The float32 whose bits are the int32 ``x``."""

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], llvmlite.ir.FloatType())

    return types.float32(types.int32), codegen


@_njit(inline="always", **_JIT)
def exp32(x):
    """e**x in float32 for x clamped to [-87, 88] (normal results)."""
    x = min(max(x, float32(-87.0)), float32(88.0))
    n = np.floor(x * float32(1.44269504088896341) + float32(0.5))
    r = x - n * float32(0.693359375)
    r = r + n * float32(2.12194440e-4)
    p = float32(1.9875691500e-4)
    p = p * r + float32(1.3981999507e-3)
    p = p * r + float32(8.3334519073e-3)
    p = p * r + float32(4.1665795894e-2)
    p = p * r + float32(1.6666665459e-1)
    p = p * r + float32(5.0000001201e-1)
    p = p * r * r + r + float32(1.0)
    return p * _bits_float(int32((int32(n) + int32(127)) << int32(23)))


@_njit(inline="always", **_JIT)
def log32(x):
    """log x in float32 for positive normal x."""
    bits = _float_bits(x)
    exponent = (bits >> int32(23)) - int32(127)
    m = _bits_float(int32((bits & int32(0x7FFFFF)) | int32(0x3F800000)))  # x = m 2**exponent, m in [1, 2)
    high = m > float32(1.41421356)
    m = m * float32(0.5) if high else m
    e = float32(exponent + (int32(1) if high else int32(0)))
    f = m - float32(1.0)
    z = f * f
    y = float32(7.0376836292e-2)
    y = y * f - float32(1.1514610310e-1)
    y = y * f + float32(1.1676998740e-1)
    y = y * f - float32(1.2420140846e-1)
    y = y * f + float32(1.4249322787e-1)
    y = y * f - float32(1.6668057665e-1)
    y = y * f + float32(2.0000714765e-1)
    y = y * f - float32(2.4999993993e-1)
    y = y * f + float32(3.3333331174e-1)
    y = y * f * z
    y = y - float32(2.12194440e-4) * e
    y = y - float32(0.5) * z
    return f + y + float32(0.693359375) * e


_GAMMA, _MIX1, _MIX2 = uint64(0x9E3779B97F4A7C15), uint64(0xBF58476D1CE4E5B9), uint64(0x94D049BB133111EB)


@_njit(inline="always", **_JIT)
def uniform32(key, counter):
    """A uniform float32 in (0, 1), never 0 or 1: the top 24 bits of SplitMix64's output number
    ``counter`` + 1 from seed ``key``, plus one half."""
    z = key + (counter + uint64(1)) * _GAMMA
    z = (z ^ (z >> uint64(30))) * _MIX1
    z = (z ^ (z >> uint64(27))) * _MIX2
    z = z ^ (z >> uint64(31))
    return (float32(z >> uint64(40)) + float32(0.5)) * float32(5.9604644775390625e-08)


@_njit(inline="always", **_JIT)
def _relaxed_sign(natural, u, inv_temperature):
    """tanh((lam + logit(u) / 2) / tau), as 2 sigmoid((2 lam + logit u) / tau) - 1."""
    z = (float32(2.0) * natural + log32(u / (float32(1.0) - u))) * inv_temperature
    return float32(2.0) / (float32(1.0) + exp32(-z)) - float32(1.0)


@_njit(**_JIT)
def uniforms(key, first, out):
    """``out[i]`` = uniform number ``first + i`` of ``key`` (for tests and users who want the stream)."""
    for i in range(out.size):
        out[i] = uniform32(key, first + uint64(i))


@_njit(**_JIT)
def exp32_array(x, out):
    """out = exp32(x) element-wise (for tests)."""
    for i in range(x.size):
        out[i] = exp32(x[i])


@_njit(**_JIT)
def log32_array(x, out):
    """out = log32(x) element-wise (for tests)."""
    for i in range(x.size):
        out[i] = log32(x[i])


@_njit(**_JIT)
def draw(natural, key, first, inv_temperature, scale, weight):
    """weight = scale * relaxed sign of every natural parameter, from uniforms first, first + 1, ..."""
    for i in range(natural.size):
        u = uniform32(key, first + uint64(i))
        weight[i] = scale * _relaxed_sign(natural[i], u, inv_temperature)


@_njit(**_JIT)
def draw_reciprocal_temperature(natural, key, first, inv_temperature, scale, weight):
    """``draw`` for tau = 1 or 1/2 (``inv_temperature`` 1 or 2), without a logarithm:
    2 sigmoid((2 lam + logit u) / tau) - 1 = 2 / (1 + exp(-2 lam / tau) ((1 - u) / u)**(1 / tau)) - 1,
    a power one multiplication away: about half the time of ``draw`` here."""
    two = inv_temperature == float32(2.0)
    for i in range(natural.size):
        u = uniform32(key, first + uint64(i))
        odds = (float32(1.0) - u) / u  # within [3e-8, 3.4e7]: its square times exp(-4 lam) stays finite
        e = exp32(float32(-2.0) * inv_temperature * natural[i]) * odds * (odds if two else float32(1.0))
        weight[i] = scale * (float32(2.0) / (float32(1.0) + e) - float32(1.0))


@_njit(**_CONTRACT)
def advance_traces(p, q, r, s, inputs, a, b, c):
    """P = a P + Q and Q = b Q + inputs (the input's shape); R = c R + S (the output's)."""
    for i in range(p.size):
        p[i] = p[i] * a + q[i]
        q[i] = q[i] * b + inputs[i]
    for i in range(r.size):
        r[i] = r[i] * c + s[i]


@_njit(**_JIT)
def fire(potential, r, s, threshold, width, window):
    """potential = drive - R in place, spikes s = potential > threshold, and the boxcar surrogate's
    window: 1 where -width < potential - threshold < width."""
    for i in range(potential.size):
        v = potential[i] - r[i]
        potential[i] = v
        s[i] = float32(1.0) if v > threshold else float32(0.0)
        d = v - threshold
        window[i] = float32(1.0) if (d > -width) and (d < width) else float32(0.0)


@_njit(**dict(_JIT, fastmath={"contract", "reassoc"}))
def readout_loss(spikes, window, readout, gain, labels, data_scale, grad_potential, logits):
    """Categorical log-likelihood of the labels under the readout logits gain * readout @ spikes,
    times data_scale (returned), and the gradient of its negative with respect to the potential,
    through the boxcar window (written into grad_potential).  ``logits`` is a (classes,) scratch
    buffer."""
    batch, size = spikes.shape
    classes = readout.shape[0]
    total = 0.0
    for n in range(batch):
        for c in range(classes):
            acc = float32(0.0)
            for j in range(size):
                acc += spikes[n, j] * readout[c, j]
            logits[c] = acc * gain
        top = logits.max()
        norm = float32(0.0)
        for c in range(classes):
            norm += np.exp(logits[c] - top)
        log_norm = top + np.log(norm)
        total += logits[labels[n]] - log_norm
        for c in range(classes):  # d(-log p(y)) / d logit_c = softmax_c - [c == y], then through the gain
            target = float32(1.0) if c == labels[n] else float32(0.0)
            logits[c] = (np.exp(logits[c] - log_norm) - target) * gain * data_scale
        # loops over j innermost, so that LLVM vectorises them
        for j in range(size):
            grad_potential[n, j] = float32(0.0)
        for c in range(classes):
            g = logits[c]
            for j in range(size):
                grad_potential[n, j] += g * readout[c, j]
        for j in range(size):
            grad_potential[n, j] *= window[n, j]
    return total * data_scale


@_njit(inline="always", **_JIT)
def _preconditioned(lam, grad_weight, weight, scale_squared, slope_scale, prior, kl_coef, min_fisher):
    """(natural gradient g / max(F, min_fisher), this weight's KL without the prior's normaliser),
    g = grad_weight * slope + kl_coef F (lam - lam_p), F = 1 - tanh(lam)**2.  The draw's slope
    d weight / d lam = scale (1 - w**2) / tau is recomputed from the scaled weight, as
    (scale**2 - weight**2) * slope_scale with slope_scale = 1 / (scale tau), rather than stored."""
    magnitude = abs(lam)
    e = exp32(float32(-2.0) * magnitude)
    s = e / (float32(1.0) + e)  # sigmoid(-2 |lam|)
    fisher = (s - s * s) * float32(4.0)
    mean = (float32(1.0) - float32(2.0) * s) * (float32(1.0) if lam >= float32(0.0) else float32(-1.0))
    kl = log32(float32(1.0) - s) - float32(2.0) * s * magnitude - mean * prior
    g = grad_weight * (scale_squared - weight * weight) * slope_scale + kl_coef * fisher * (lam - prior)
    g = g if np.isfinite(g) else float32(0.0)  # overflow of a product; non-finite inputs stop training before
    return g / max(fisher, min_fisher), kl


@_njit(inline="always", **_JIT)
def _row_gradient(grad_potential, traces, o, row):
    """row = d(-log-likelihood) / d weight[o, :] = sum over the batch of grad_potential[n, o] traces[n, :],
    skipping the zeros the boxcar window leaves (most of them)."""
    for i in range(row.size):
        row[i] = float32(0.0)
    for n in range(traces.shape[0]):
        g = grad_potential[n, o]
        if g != float32(0.0):
            for i in range(row.size):
                row[i] += g * traces[n, i]


@_njit(**_JIT)
def natural_gradient_step(
    natural,
    grad_potential,
    traces,
    weight,
    scale_squared,
    slope_scale,
    prior,
    kl_coef,
    lr,
    min_fisher,
    max_natural,
    momentum,
    dampening,
    buffer,
    fresh,
    kl,
    row,
):
    """One step of the Bayesian learning rule on the natural parameters lam (outputs, inputs) of one
    layer, in place, as ``NaturalGradientSign`` takes it on the gradient of
    kl_coef * KL(q || p) - log-likelihood, given the likelihood's gradient ``grad_potential``
    (batch, outputs) with respect to the potential, the input ``traces`` (batch, inputs) and the
    drawn ``weight``: ``buffer`` becomes momentum * buffer + (1 - dampening) g, or g itself when
    ``fresh`` (its first step, or no momentum), for the natural gradient g of
    ``_preconditioned``, and lam <- clamp(lam - lr buffer, +-max_natural).  Writes each weight's
    tanh(lam) lam - log 2cosh(lam) - tanh(lam) lam_p (its KL without the prior's normaliser), at the
    parameters before the step, into ``kl``; ``row`` is an (inputs,) scratch buffer.  (``fresh`` is
    a selection, not a branch around the momentum: a branch would keep LLVM from vectorising.)
    The caller checks that the likelihood and ``kl_coef`` are finite, so that a gradient is
    non-finite only where a finite product overflows (that weight is not stepped); counting those
    here would cost a third of an online step."""
    outputs, inputs = natural.shape
    for o in range(outputs):
        _row_gradient(grad_potential, traces, o, row)
        for i in range(inputs):
            lam = natural[o, i]
            g, kl[o, i] = _preconditioned(
                lam, row[i], weight[o, i], scale_squared, slope_scale, prior[o, i], kl_coef, min_fisher
            )
            g = g if fresh else buffer[o, i] * momentum + g * (float32(1.0) - dampening)
            buffer[o, i] = g
            natural[o, i] = min(max(lam - lr * g, -max_natural), max_natural)
