"""Memory a run will need, estimated from its shapes before anything is allocated, so that a
configuration that cannot fit is refused in one line instead of exhausting the machine.

The estimates count float32 tensors and are lower bounds of the peak: a weight costs its guide
parameter, gradient, two optimiser states, a draw per particle and two temporaries of the update;
a neuron costs about eight saved tensors per step and sequence for the backward pass
(sequence schedule: all T steps; online: one).  Prediction holds K weight draws and the readouts
(K, N, layers, T, classes).
"""

from __future__ import annotations

import os

import torch

from .errors import ConfigError

FLOAT = 4  # bytes
PER_WEIGHT = 6  # guide parameter, gradient, two optimiser states, two temporaries (plus draws)
PER_NEURON_STEP = 8  # tensors autograd keeps per neuron, step and sequence


def training_bytes(weights: int, neurons: int, *, batch: int, steps: int, features: int, particles: int = 1) -> int:
    """Lower bound of a training step's memory; ``steps``: the steps one SVI step runs through."""
    parameters = (PER_WEIGHT + particles) * weights
    activations = particles * batch * steps * (PER_NEURON_STEP * neurons + 2 * features)
    return FLOAT * (parameters + activations)


def prediction_bytes(
    weights: int, neurons: int, *, samples: int, points: int, batch: int, steps: int, readouts: int
) -> int:
    """Lower bound of the memory of ``samples`` weight draws predicting ``points`` sequences
    (``batch`` at a time; ``readouts``: layers x classes per step)."""
    draws = samples * weights
    activations = samples * min(batch, points) * steps * 2 * neurons
    outputs = samples * points * steps * readouts
    return FLOAT * (draws + activations + outputs)


def available_bytes(device: str | torch.device = "cpu") -> int | None:
    """Memory that ``device`` can still give (Linux's MemAvailable, CUDA's free memory), or None
    where that cannot be told."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def require_memory(needed: int, what: str, device: str | torch.device = "cpu") -> None:
    """Refuse, in one line, ``what`` needing more than the memory ``device`` has available."""
    available = available_bytes(device)
    if available is not None and needed > available:
        raise ConfigError(
            f"{what} needs at least {_size(needed)} of memory, more than the {_size(available)} available on "
            f"{torch.device(device)}"
        )


def out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is PyTorch's report of a failed allocation."""
    text = str(error)
    return isinstance(error, MemoryError) or "can't allocate memory" in text or "out of memory" in text.lower()


def _size(nbytes: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if nbytes < 1000:
            return f"{nbytes:.0f} {unit}" if unit == "bytes" else f"{nbytes:.1f} {unit}"
        nbytes /= 1000
    return f"{nbytes:.1f} TB"
