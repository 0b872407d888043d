"""Leaky integrate-and-fire neurons with input, synaptic and refractory traces (DECOLLE form).

Per step, with decays a = exp(-1/tau_mem), b = exp(-1/tau_syn), c = exp(-1/tau_ref):

    P[t] = a P[t-1] + Q[t-1]        Q[t] = b Q[t-1] + s_in[t]
    R[t] = c R[t-1] + S[t-1]        U[t] = synapse(P[t]) - R[t]        S[t] = spike(U[t] - theta)

The step is a pure function of (input, state, synapse): the synapse closes over the weight, which may
carry a leading sample dimension, and the state broadcasts against it.

When a layer's input is known for all T steps and its state needs no gradient (DECOLLE's local
learning), the same arithmetic splits into three passes: ``input_traces`` (P for every step),
one synaptic map over all steps, and ``subtract_refractory_`` (the only sequential,
element-wise part).  Both forms compute decay * trace + inflow as one fused operation, so they
round alike; the two loops through time run as compiled CPU kernels where they can
(``recurrences``), bit for bit the same.

Without gradients the filters act after the synapse instead (``lif_drive_step_``): P and Q trace
the drive W s_in, and U = scale P (+ bias) - R.  By linearity the same membrane; for +-1 weights and
0/1 spikes the drive is a whole number, so the packed engine (``bisnn_pyro.packed``) reproduces it
bit for bit.  Training keeps the input traces, which DECOLLE's local gradient needs.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import torch

from .recurrences import leak, refractory_steps, trace_steps
from .shapes import broadcast_shape
from .surrogates import SpikeFunction


class LIFParameters(NamedTuple):
    """Time constants (in steps) and firing threshold of a LIF layer."""

    tau_mem: float = 10.0
    tau_syn: float = 6.0
    tau_ref: float = 2.0
    threshold: float = 0.0

    def decays(self) -> tuple[float, float, float]:
        """(a, b, c): per-step decay factors of the P, Q and R traces."""
        return math.exp(-1.0 / self.tau_mem), math.exp(-1.0 / self.tau_syn), math.exp(-1.0 / self.tau_ref)


class LIFState(NamedTuple):
    """Traces of one layer: p, q have the input's shape; r and s the output's."""

    p: torch.Tensor
    q: torch.Tensor
    r: torch.Tensor
    s: torch.Tensor

    def detach(self) -> "LIFState":
        """The same state cut from the autograd graph (DECOLLE's layers learn locally)."""
        return LIFState(*(x.detach() for x in self))


def lif_initial_state(inputs: torch.Tensor) -> LIFState:
    """A resting state for inputs shaped like ``inputs``; r and s broadcast to any output shape."""
    zero = inputs.new_zeros(())
    return LIFState(torch.zeros_like(inputs), torch.zeros_like(inputs), zero, zero)


def lif_step(
    inputs: torch.Tensor,
    state: LIFState,
    synapse: Callable[[torch.Tensor], torch.Tensor],
    params: LIFParameters,
    spike: SpikeFunction,
) -> tuple[torch.Tensor, torch.Tensor, LIFState]:
    r"""One time step of a layer of leaky integrate-and-fire neurons (a pure function).

    With decays $a, b, c$ of the membrane, synaptic and refractory time constants
    (``params.decays()``), input spikes $s_{\text{in}}[t]$ and the layer's synapse $Wx$ (the dense layer's is
    $Wx/\sqrt{\text{fan-in}}$, plus a bias if it has one):

    $$P_t = aP_{t-1} + Q_{t-1}, \quad Q_t = bQ_{t-1} + s_{\text{in}}[t], \quad
    R_t = cR_{t-1} + S_{t-1}, \quad U_t = \mathrm{synapse}(P_t) - R_t, \quad S_t = \Theta(U_t - \vartheta).$$

    ``spike`` is $\Theta$ with a surrogate derivative (``surrogate``).  Returns
    (spikes $S_t$, membrane potential $U_t$, new state).
    """
    a, b, c = params.decays()
    p = leak(state.p, a, state.q)
    q = leak(state.q, b, inputs)
    r = leak(state.r, c, state.s)
    u = synapse(p) - r
    s = spike(u - params.threshold if params.threshold else u)
    return s, u, LIFState(p, q, r, s)


def membrane_from_drive(filtered: torch.Tensor, scale: float, bias: torch.Tensor | None = None) -> torch.Tensor:
    """scale * P_d (+ bias): the synaptic part of the membrane from the filtered drive P_d (a new
    tensor; one rounding for the scale, one for the bias, as the packed engine computes it)."""
    out = torch.mul(filtered, scale)
    return out if bias is None else out.add_(bias)


@torch.no_grad()
def lif_drive_step_(
    drive: torch.Tensor, state: LIFState, scale: float, bias: torch.Tensor | None, params: LIFParameters
) -> LIFState:
    r"""One step with the filters after the synapse, overwriting the state's tensors (buffers the
    caller owns, all of the output's shape).  Here ``state.p``, ``state.q`` trace the drive
    $D_t = W s_{\text{in}}[t]$ (``layer.drive``), not the input:

    $$P_t = aP_{t-1} + Q_{t-1}, \quad Q_t = bQ_{t-1} + D_t, \quad
    U_t = \mathrm{scale}\cdot P_t (+ \text{bias}) - R_t,$$

    by linearity the membrane of ``lif_step`` ($W$ filter$(s)$ = filter$(W s)$).  For $\pm1$ weights and 0/1
    spikes every $D_t$ is a whole number, exact in float32, so the packed engine, which counts it
    with bit operations, computes the same membrane bit for bit.  The new state's ``s`` holds the spikes."""
    a, b, c = params.decays()
    p, q, r, s = state
    leak(p, a, q, out=p)
    leak(q, b, drive, out=q)
    u = membrane_from_drive(p, scale, bias)
    leak(r, c, s, out=r)
    # IEEE subtraction gives zero only for equal operands, so x - y > 0 exactly when x > y: the
    # spikes of U = drive - R at threshold 0 need no pass to form U
    if params.threshold:
        torch.gt(u.sub_(r), params.threshold, out=s)
    else:
        torch.gt(u, r, out=s)
    return LIFState(p, q, r, s)


def owned_state(state: LIFState, inputs: torch.Tensor) -> LIFState:
    """A copy of ``state`` whose p and q have the full shape of ``inputs`` (buffers to update in place)."""
    shape = broadcast_shape(state.p.shape, inputs.shape)
    return LIFState(state.p.expand(shape).clone(), state.q.expand(shape).clone(), state.r.clone(), state.s.clone())


@torch.no_grad()
def input_traces(
    inputs: torch.Tensor, p: torch.Tensor, q: torch.Tensor, params: LIFParameters
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The P trace at every step of ``inputs`` (time first: (T, ...)) from the traces (p, q) before
    the first step; returns (P of shape (T, ...), p and q after the last step).  No gradient: the
    inputs of a locally learning layer are detached."""
    a, b, _ = params.decays()
    shape = broadcast_shape(inputs.shape[1:], p.shape, q.shape)
    traces = inputs.new_empty((inputs.shape[0], *shape))
    q = q.expand(shape).clone()  # updated in place: one small buffer
    trace_steps(traces, inputs, p, q, a, b)
    return traces, traces[-1] if len(traces) else p.expand(shape), q


@torch.no_grad()
def subtract_refractory_(
    drive: torch.Tensor, r: torch.Tensor, s: torch.Tensor, params: LIFParameters
) -> tuple[torch.Tensor, torch.Tensor]:
    """Turns the synaptic drive of every step (time first: (T, ...)) into the membrane potential
    U = drive - R, in place, where R is the refractory trace of the spikes ``U > threshold`` it
    produces, starting from (r, s) before the first step; returns (spikes of every step, r after
    the last step).

    The only sequential, element-wise part of a layer whose drive is known for all steps.  R carries
    no gradient (the state of a locally learning layer is detached), so dU/d(drive) is the identity
    and the caller may keep the drive's autograd history for U (see ``DecolleNetwork``)."""
    _, _, c = params.decays()
    shape = drive.shape[1:]
    r = r.expand(shape).clone()
    spikes = torch.empty_like(drive)
    refractory_steps(drive, r, s.to(drive.dtype), spikes, c, params.threshold)
    return spikes, r
