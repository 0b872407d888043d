"""numba kernels of the packed engine: one layer of binary synapses and LIF neurons over every step
of a batch of sequences, for every weight draw, from 0/1 spikes (or whole-number event counts).

A neuron's drive from input spikes s is D = sum_j w_j s_j, a whole number for +-1 weights.  It is
summed in one of three ways (``dense_events``, ``dense_network_popcount`` and
``dense_network_changes``; ``conv_events`` for convolutions):

* event-driven: for each input that spiked, add its row of +-1 weights (int8, the output neurons
  contiguous, so the additions vectorise across neurons) times its count, or, at a step where fewer
  inputs changed than spiked, move the last step's drive by the changes (``_carry_drive``): the
  additions are proportional to the input spikes or their changes, whichever is less (every input
  is still read to find them);
* bit counts: with the +1 weights of each 64 inputs in one machine word per output neuron,
  D = 2 popcount(b & s) - popcount(s): work proportional to the fan-in / 64;
* changes: D_t = D_(t-1) + sum over the inputs that turned on of their rows - sum over those that
  turned off, the drive carried from step to step: work proportional to the inputs whose spike
  differs from the step before.  Spiking neurons fire in runs, so far fewer inputs change than
  spike (on the default two-moons network 0.07 per neuron and step against 0.45 spiking).

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


@intrinsic
def _lowest_bit(typingctx, x):
    """The index of the lowest set bit of a non-zero uint64 (LLVM's cttz)."""

    def codegen(context, builder, signature, args):
        word = llvmlite.ir.IntType(64)
        function = llvmlite.ir.FunctionType(word, [word, llvmlite.ir.IntType(1)])
        cttz = builder.module.declare_intrinsic("llvm.cttz", [word], function)
        return builder.call(cttz, [args[0], llvmlite.ir.Constant(llvmlite.ir.IntType(1), 1)])

    return types.uint64(types.uint64), codegen


@intrinsic
def _nonzero_bits(typingctx, values, start):
    """Bit i set where ``values[start + i]`` is not zero, i < 64: one vector comparison of 64
    elements of a contiguous 1-D array (``_propagate`` checks that all 64 lie inside it).  Lane i
    of the comparison becomes bit i of the word on the little-endian machines numba runs on."""
    if not (isinstance(values, types.Array) and values.ndim == 1 and values.layout == "C"):
        return None

    def codegen(context, builder, signature, args):
        array = context.make_array(signature.args[0])(context, builder, args[0])
        vector = llvmlite.ir.VectorType(context.get_data_type(signature.args[0].dtype), 64)
        at = builder.bitcast(builder.gep(array.data, [args[1]]), vector.as_pointer())
        loaded = builder.load(at, align=1)
        if isinstance(vector.element, llvmlite.ir.IntType):
            nonzero = builder.icmp_unsigned("!=", loaded, llvmlite.ir.Constant(vector, None))
        else:
            nonzero = builder.fcmp_unordered("!=", loaded, llvmlite.ir.Constant(vector, None))
        return builder.bitcast(nonzero, llvmlite.ir.IntType(64))

    return types.uint64(values, start), codegen


@_njit(inline="always", **_JIT)
def _neuron_step(n, drive, p, q, r, s, scale, bias, a, b, c, threshold):
    """Neuron n's step from its whole-number ``drive`` (float32): the traces p, q of the drive, the
    refractory trace r and the last spike s (float32 arrays) move on; whether it spikes now."""
    p[n] = _leak(p[n], a, q[n])
    q[n] = _leak(q[n], b, drive)
    u = p[n] * scale + bias
    r[n] = _leak(r[n], c, s[n])
    spike = u - r[n] > threshold
    s[n] = np.float32(spike)
    return spike


@_njit(**_JIT)
def _fire(drive, p, q, r, s, spikes, scale, bias, a, b, c, threshold):
    """One step of a layer's neurons from their whole-number ``drive`` (int32); ``spikes`` (uint8)
    receives the new spikes.  ``bias`` holds zeros for a layer without one: adding +0 changes at
    most the sign of a zero potential, never a spike, and a loop without branches vectorises.
    Every index runs from 0 over whole (sliced) arrays: numba then needs no check for negative
    indices."""
    for o in range(drive.shape[0]):
        spike = _neuron_step(o, np.float32(drive[o]), p, q, r, s, scale, bias[o], a, b, c, threshold)
        spikes[o] = np.uint8(spike)


@_njit(inline="always", **_JIT)
def _carry_drive(inputs, kin, n, t):
    """Whether to move step t - 1's drive by the inputs whose count changed (``inputs[kin, n, t]``
    against ``inputs[kin, n, t - 1]``, the change times each one's weights) rather than sum it
    afresh over the inputs that spiked: whichever touches fewer inputs.  Both give the same whole
    numbers; spikes that come in runs change less often than they occur."""
    if t == 0:
        return False
    active, changed = 0, 0
    for j in range(inputs.shape[3]):
        now = inputs[kin, n, t, j]
        active += now != 0
        changed += now != inputs[kin, n, t - 1, j]
    return changed < active


@_njit(parallel=True, **_JIT)
def dense_events(inputs, weights, scale, bias, a, b, c, threshold, spikes):
    """A dense layer over every step: ``inputs`` (S_in, B, T, F_in) uint8 with S_in = 1 (shared by
    the draws) or S, ``weights`` (S, F_in, F_out) int8 (row j: input j's weights to every output),
    ``spikes`` (S, B, T, F_out) uint8 receives the output spikes; drives summed over the inputs
    that spiked, or moved by those that changed (``_carry_drive``; ``inputs`` may hold whole-number
    counts)."""
    draws, fan_in, fan_out = weights.shape
    shared, batch, steps = inputs.shape[0] == 1, inputs.shape[1], inputs.shape[2]
    for job in prange(draws * batch):
        k, n = job // batch, job % batch
        kin = 0 if shared else k
        p, q = np.zeros(fan_out, np.float32), np.zeros(fan_out, np.float32)
        r, s = np.zeros(fan_out, np.float32), np.zeros(fan_out, np.float32)
        drive = np.zeros(fan_out, np.int32)
        fired = np.empty(fan_out, np.uint8)
        for t in range(steps):
            carry = _carry_drive(inputs, kin, n, t)
            if not carry:
                drive[:] = 0
            for j in range(fan_in):
                amount = np.int32(inputs[kin, n, t, j])
                if carry:
                    amount -= np.int32(inputs[kin, n, t - 1, j])
                if amount:
                    for o in range(fan_out):
                        drive[o] += amount * weights[k, j, o]
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


_WORD = np.uint64(64)
_ALL_BITS = np.uint64(0xFFFFFFFFFFFFFFFF)


@_njit(inline="always", **_JIT)
def _changed_rows(now, before, word, rows_at, width, negated, offsets, count):
    """Append to ``offsets`` (from ``count``; the new count returned) the offsets of the rows of
    the inputs of word ``word`` that changed: the row itself for an input that turned on (``now``
    set, ``before`` not), its negated copy, ``negated`` further on, for one that turned off.
    No branch on the direction."""
    changed = now ^ before
    while changed:
        bit = _lowest_bit(changed)
        turned_off = ((now >> bit) & np.uint64(1)) ^ np.uint64(1)
        offsets[count] = rows_at + (word * _WORD + bit) * width + turned_off * negated
        count += np.uint64(1)
        changed &= changed - np.uint64(1)
    return count


@_njit(inline="always", **_JIT)
def _add_rows(sums, at, rows, width, offsets, count, zero_row):
    """sums[at : at + width] += the rows at ``offsets[:count]``, four rows to a pass (the list
    padded with a row of zeros at ``zero_row``): their sum, at most 4 in size, is exact in a byte,
    so the compiler adds them many to a vector."""
    while count & np.uint64(3):
        offsets[count] = zero_row
        count += np.uint64(1)
    for i in range(np.uint64(0), count, np.uint64(4)):
        r0, r1, r2, r3 = offsets[i], offsets[i + np.uint64(1)], offsets[i + np.uint64(2)], offsets[i + np.uint64(3)]
        for o in range(width):
            sums[at + o] += np.int8(rows[r0 + o] + rows[r1 + o] + rows[r2 + o] + rows[r3 + o])


@_njit(inline="always", **_JIT)
def _propagate(values, start, count, last, last_at, rows, rows_at, width, sums, out_at, negated, zero_row, offsets):
    """The spikes ``values[start : start + count]`` against the last step's (``last`` words from
    ``last_at``, updated): each input that changed adds its row of ``width`` +-1 weights (turned
    on) or the row negated (turned off) to ``sums[out_at:]``."""
    words = (count + np.uint64(63)) // _WORD
    if start + words * _WORD > values.shape[0]:
        raise IndexError("the spikes' array does not hold whole words of 64")
    changes = np.uint64(0)
    for word in range(words):
        end = (word + np.uint64(1)) * _WORD
        valid = _ALL_BITS if end <= count else (np.uint64(1) << (count - word * _WORD)) - np.uint64(1)
        now = _nonzero_bits(values, start + word * _WORD) & valid
        changes = _changed_rows(now, last[last_at + word], word, rows_at, width, negated, offsets, changes)
        last[last_at + word] = now
    _add_rows(sums, out_at, rows, width, offsets, changes, zero_row)


@_njit(**_JIT)
def _sequence_by_changes(x, rows, negated, zero_row, sources, layers_at, scales, biases, a, b, c, threshold,
                         readout_scales, p, q, r, s, sums, frame, last, offsets, logits):
    """One sequence ``x`` (T, F_in) of 0/1 spikes through the network for one weight draw
    (``dense_network_changes``); ``logits`` (layers, T, classes) receives its readouts.  The other
    arrays are its working memory, set to zero here.  The indices of the loops over neurons and
    rows are unsigned: numba then checks none of them for a negative value, and the loops vectorise."""
    layers, steps, classes = logits.shape
    p[:] = 0
    q[:] = 0
    r[:] = 0
    s[:] = 0
    sums[:] = 0
    last[:] = 0
    frame[:] = 0
    for t in range(steps):
        for j in range(x.shape[1]):
            frame[j] = x[t, j]
        inputs = sources[0]
        _propagate(frame, np.uint64(0), np.uint64(inputs[0]), last, np.uint64(inputs[4]), rows, np.uint64(inputs[1]),
                   np.uint64(inputs[2]), sums, np.uint64(inputs[3]), negated, zero_row, offsets)
        for layer in range(layers):
            fan_out, neurons_at = np.uint64(layers_at[layer, 0]), np.uint64(layers_at[layer, 1])
            drive_at, scale = np.uint64(layers_at[layer, 2]), scales[layer]
            for o in range(fan_out):
                n = neurons_at + o
                _neuron_step(n, np.float32(sums[drive_at + o]), p, q, r, s, scale, biases[n], a, b, c, threshold)
            out = sources[layer + 1]
            _propagate(s, neurons_at, fan_out, last, np.uint64(out[4]), rows, np.uint64(out[1]), np.uint64(out[2]),
                       sums, np.uint64(out[3]), negated, zero_row, offsets)
            readout_at = np.uint64(layers_at[layer, 3])
            for cls in range(np.uint64(classes)):
                logits[layer, t, cls] = np.float32(sums[readout_at + cls]) * readout_scales[layer]


@_njit(parallel=True, **_JIT)
def dense_network_changes(inputs, rows, negated, sources, layers_at, scales, biases, a, b, c, threshold,
                          readout_scales, sums_dtype, sums_size, out):
    """A network of dense layers over every step by the changes of the spikes, each layer's drive
    and readout carried from step to step as whole numbers in ``sums`` (int16 or int32, each
    sequence its own): ``inputs`` (B, T, F_in) 0/1 uint8 shared by the draws; ``rows`` (S, total)
    int8 holding, for each source of spikes (the inputs, then each layer), one row of +-1 weights
    per spiking unit: to the next layer's neurons and then, for a layer, to its readout's classes;
    then, from ``negated``, the same rows negated, and from 2 ``negated`` a row of zeros as wide
    as the widest;
    ``sources[i]`` = (units, offset of its rows, row width, offset in ``sums`` its rows add to,
    offset of its last spikes' words) for i = 0 (the inputs) and 1 + l (layer l);
    ``layers_at[l]`` = (neurons, offset of its neurons, offset of its drive in ``sums``, offset of
    its readout in ``sums``); ``out`` (S, B, layers, T, classes) float32 receives the readouts."""
    draws, batch, layers, steps, classes = out.shape
    neurons = layers_at[layers - 1, 1] + layers_at[layers - 1, 0]
    widest = 64 * ((sources[:, 0].max() + 63) // 64)
    words = sources[layers, 4] + (sources[layers, 0] + 63) // 64
    for job in prange(draws * batch):
        k, n = job // batch, job % batch
        p, q = np.empty(neurons, np.float32), np.empty(neurons, np.float32)
        r, s = np.empty(neurons, np.float32), np.empty(neurons + 64, np.float32)  # whole words of s
        frame = np.empty(64 * ((inputs.shape[2] + 63) // 64), np.uint8)
        sums, last = np.empty(sums_size, sums_dtype), np.empty(words, np.uint64)
        offsets = np.empty(widest + 4, np.uint64)  # the changes of one source, padded to a multiple of 4
        logits = np.empty((layers, steps, classes), np.float32)
        _sequence_by_changes(inputs[n], rows[k], np.uint64(negated), np.uint64(2 * negated), sources, layers_at,
                             scales, biases, a, b, c, threshold, readout_scales, p, q, r, s, sums, frame, last,
                             offsets, logits)
        out[k, n] = logits


@_njit(parallel=True, **_JIT)
def conv_events(inputs, height, width, weights, padding, scale, bias, a, b, c, threshold, spikes):
    """A "same" convolution (stride 1) over every step: ``inputs`` (S_in, B, T, C * H * W) uint8
    (frames C x H x W flattened), ``weights`` (S, C, k, k, O) int8 (the output channels
    contiguous), ``spikes`` (S, B, T, O, H, W) uint8 receives the output spikes; each input that
    spiked adds its weights to the k x k outputs it reaches, or each that changed adds the change
    times them to the drive carried from the step before (``_carry_drive``)."""
    draws, channels, size, _, out_channels = weights.shape
    shared, batch, steps = inputs.shape[0] == 1, inputs.shape[1], inputs.shape[2]
    neurons = height * width * out_channels
    for job in prange(draws * batch):
        k, n = job // batch, job % batch
        kin = 0 if shared else k
        p, q = np.zeros(neurons, np.float32), np.zeros(neurons, np.float32)
        r, s = np.zeros(neurons, np.float32), np.zeros(neurons, np.float32)
        drive = np.zeros(neurons, np.int32)  # (y, x, o): the output channels contiguous
        fired = np.empty(neurons, np.uint8)
        flat_weights = weights.reshape(-1)
        channel_bias = np.empty(neurons, np.float32)
        for i in range(neurons):
            channel_bias[i] = bias[i % out_channels]
        for t in range(steps):
            carry = _carry_drive(inputs, kin, n, t)
            if not carry:
                drive[:] = 0
            for j in range(channels * height * width):
                amount = np.int32(inputs[kin, n, t, j])
                if carry:
                    amount -= np.int32(inputs[kin, n, t - 1, j])
                if amount == 0:
                    continue
                ci, yi, xi = j // (height * width), (j // width) % height, j % width
                for ky in range(max(0, yi + padding - height + 1), min(size, yi + padding + 1)):
                    y = yi - ky + padding
                    for kx in range(max(0, xi + padding - width + 1), min(size, xi + padding + 1)):
                        at = np.uint64((y * width + xi - kx + padding) * out_channels)
                        row = np.uint64((((k * channels + ci) * size + ky) * size + kx) * out_channels)
                        for o in range(np.uint64(out_channels)):  # unsigned: no check for negative indices
                            drive[at + o] += amount * flat_weights[row + o]
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
