"""Data-parallel training: N processes (``torchrun --nproc-per-node N``), each a shard of every
minibatch, their gradients combined before the optimiser's step, as ``DistributedDataParallel``
combines them.

Every process holds the whole model, draws the same weights (the run's seed gives every process
the same ``RandomStream``) and reads the minibatch in the same seeded order,
then keeps the examples ``rank, rank + N, ...`` of it.  Process r's loss on its n_r examples is
the minibatch ELBO with the likelihood scaled by D / n_r (D the training set's size) and the whole
KL; the gradients are combined as

.. math::

    g = \\sum_r \\frac{n_r}{B} g_r
      = \\nabla \\Big[\\frac{D}{B} \\sum_{i \\in \\text{batch}} \\log p(y_i \\mid x_i, w)\\Big]
        - \\beta \\nabla \\mathrm{KL},

the gradient one process computes on the whole minibatch of B with the same draw.  So N processes
take the same steps as one process through the same engine, up to the order of floating-point
sums (the natural-gradient rule and Adam see the same gradient on every process, hence keep the
same parameters).  Per step: one all-reduce of the gradients, one of the minibatch's loss (the
online schedule: a step per time step), and after each epoch one agreement that rank 0 recorded it.

Why not ``DistributedDataParallel`` itself: it wraps one ``nn.Module`` whose forward computes the
loss, while a Pyro model's parameters live in its guide and its loss in an ELBO; the gradient
hooks it would install are replaced here by one all-reduce of the flattened gradients before
each optimiser step.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import Iterable

import torch

from ..errors import ConfigError

LAUNCH = "torchrun --nproc-per-node N -m bisnn_pyro train ... --distributed"


@dataclass
class DataParallel:
    """This process's place among ``world`` processes of one training run."""

    rank: int
    world: int

    @property
    def writes(self) -> bool:
        """Whether this process writes the run folder (rank 0 only)."""
        return self.rank == 0

    @classmethod
    def from_environment(cls, device: str | None = None) -> "DataParallel":
        """Join the process group that ``torchrun`` describes in the environment (gloo on CPU,
        NCCL on CUDA)."""
        import torch.distributed as dist

        missing = [key for key in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if key not in os.environ]
        if missing:
            raise ConfigError(f"--distributed runs under torchrun ({', '.join(missing)} not set): {LAUNCH}")
        device = str(device or "cpu")
        if device.startswith("cuda:"):
            raise ConfigError(
                f"--distributed gives each process its own GPU (its LOCAL_RANK); use --device cuda, not {device}"
            )
        if device == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))  # "cuda" is then this process's GPU
        # torch.distributed.nn binds the world group into its functions' defaults when imported; imported
        # after the group exists (building a torch.optim optimiser imports it), it would keep the group,
        # and its gloo threads, alive past destroy_process_group into the interpreter's exit, which now
        # and then aborts there
        importlib.import_module("torch.distributed.nn")
        if not dist.is_initialized():  # gradients on the GPU go through NCCL, the scalars it agrees on through gloo
            dist.init_process_group("cpu:gloo,cuda:nccl" if device == "cuda" else "gloo")
        return cls(dist.get_rank(), dist.get_world_size())

    def shard(self, batch: torch.Tensor) -> torch.Tensor:
        """This process's examples of a minibatch: ``rank, rank + world, ...``."""
        return batch[self.rank :: self.world]

    def check_batches(self, examples: int, batch_size: int) -> None:
        """Refuse a minibatch smaller than the number of processes (a process would have none)."""
        last = examples % batch_size or batch_size
        if min(batch_size, last) < self.world:
            raise ConfigError(
                f"--distributed with {self.world} processes needs minibatches of >= {self.world} examples, but "
                f"{examples} examples in batches of {batch_size} make a minibatch of {min(batch_size, last)}"
            )

    def combine(self, tensors: Iterable[torch.Tensor], weight: float) -> None:
        """Replace each tensor, in place, by the sum over processes of ``weight`` times it (every
        process passes its tensors in one order); one all-reduce of them flattened."""
        import torch.distributed as dist

        tensors = list(tensors)
        flat = torch.cat([t.reshape(-1) for t in tensors]) * weight
        dist.all_reduce(flat)
        for t, part in zip(tensors, flat.split([t.numel() for t in tensors])):
            t.copy_(part.view_as(t))

    def failed(self, ok: bool) -> list[int]:
        """The ranks of the processes that are not ``ok`` (a collective: every process calls it)."""
        import torch.distributed as dist

        flags = torch.zeros(self.world)
        flags[self.rank] = 0.0 if ok else 1.0
        dist.all_reduce(flags)
        return [rank for rank, flag in enumerate(flags.tolist()) if flag]

    def agree(self, ok: bool) -> bool:
        """Whether every process is ``ok`` (a collective: every process calls it)."""
        return not self.failed(ok)

    def close(self) -> None:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


class CombinedGradients:
    """A Pyro optimiser's call with the gradients combined across processes first: the optimiser
    ``SVI`` and the direct engine step through when training runs data-parallel."""

    def __init__(self, optim, parallel: DataParallel, module: torch.nn.Module):
        self.optim, self.parallel = optim, parallel
        self.order = {id(p): i for i, p in enumerate(module.parameters())}
        self.weight = 1.0  # n_r / B of the step being taken

    def __call__(self, params: Iterable[torch.Tensor], *args, **kwargs) -> None:
        params = list(params)
        if any(id(p) not in self.order for p in params):
            raise ConfigError("--distributed: a parameter outside the model (Pyro's global store) cannot be combined")
        params.sort(key=lambda p: self.order[id(p)])  # one order on every process (SVI passes a set)
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        self.parallel.combine(grads, self.weight)
        for p, g in zip(params, grads):
            p.grad = g
        self.optim(params, *args, **kwargs)
