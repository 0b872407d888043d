"""The training loop: Pyro SVI over minibatches, with the sequence or the online update schedule.

``sequence``: one SVI step per minibatch of whole sequences, per-step losses summed (cheap).
``online``: one SVI step per time step after burn-in, weights re-sampled at every step and the
network state carried between steps (the BiSNN paper's schedule).  The KL is divided among the
T - burn_in steps, so one online sequence optimises the same total objective as one sequence step.

``engine``: ``"svi"`` steps through Pyro's ``SVI``; ``"direct"`` evaluates the same ELBO without
tracing (``direct``): the same draws, loss and gradients, without the tracing's cost (a few
milliseconds a step: most of a small online step, 10-20 % of a sequence step); ``"fused"`` takes
the online schedule's steps of the ``bayes`` rule in a few compiled passes (``fused``: the same
loss and update for the same uniforms, from its own uniforms); ``"auto"`` takes ``"fused"`` for
the online schedule where it applies, else ``"direct"`` where it applies, else ``"svi"``.  Parts
that no engine can train together (a loss that would score a relaxed draw by the exact prior, a
likelihood of whole sequences on the online schedule) are refused in one line
(``CompositionError``), and so is an engine named explicitly that cannot run them.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Callable

import torch
from pyro import poutine
from pyro.infer import SVI
from pyro.infer.elbo import ELBO
from pyro.optim import PyroOptim
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler
from tqdm.auto import tqdm

from ..errors import PeerFailed, TrainingDiverged
from .bnn import BayesianSNN
from .checkpoint import save_checkpoint
from .direct import DirectELBO, DirectSVI
from .distributed import CombinedGradients, DataParallel
from .fused import FusedOnline
from .optim import all_parameter_optimizers, bind_optimizer, parameter_optimizer
from .random_stream import RandomStream
from .sites import CompositionError, loss_problem

SCHEDULES = ("sequence", "online")
ENGINES = ("auto", "svi", "direct", "fused")




def optimizer_state(optim: PyroOptim, module: torch.nn.Module) -> dict[str, Any]:
    """Per-parameter optimiser states keyed by the parameter's name in ``module``.

    (Pyro's own ``get_state`` keys by the global parameter store, which module-local parameters
    are not in.)
    """
    names = {id(p): n for n, p in module.named_parameters()}
    objects = all_parameter_optimizers(optim)
    return {names[id(p)]: opt.state_dict() for p, opt in objects.items() if id(p) in names}


def load_optimizer_state(optim: PyroOptim, module: torch.nn.Module, state: dict[str, Any]) -> None:
    """Inverse of ``optimizer_state``: builds each parameter's optimiser as ``PyroOptim`` would."""
    for name, param in module.named_parameters():
        if name in state:
            parameter_optimizer(optim, param, name.removesuffix("_unconstrained")).load_state_dict(state[name])


# a guide's one parameter per site, before per-site modules
LEGACY_SITE_PARAMETERS = (".natural", ".theta_unconstrained")


def upgrade_names(saved: dict[str, Any], expected: set[str]) -> dict[str, Any]:
    """``saved`` with the names of checkpoints from before per-site guide parameters
    (``guide.params.<site>_unconstrained``) changed to today's (``guide.params.<site>.natural``)."""
    upgraded = {}
    for name, value in saved.items():
        if name not in expected and name.endswith("_unconstrained"):
            stem = name.removesuffix("_unconstrained")
            name = next((stem + leaf for leaf in LEGACY_SITE_PARAMETERS if stem + leaf in expected), name)
        upgraded[name] = value
    return upgraded


class Trainer:
    """Runs SVI epochs for a ``BayesianSNN`` on tensors ``x`` (N, T, ...) and ``y`` (N,), or on
    a ``torch.utils.data.Dataset`` of (spikes, label) pairs passed as ``x`` (with ``y=None``), read
    through a DataLoader (``num_workers`` processes) in a seeded random order.

    Weight draws come from ``draws``, a ``RandomStream`` of the trainer's own (default: seeded
    by ``seed``), which the checkpoint keeps: training leaves the caller's global generators as
    they were, and a resumed run draws what the uninterrupted one would have.

    ``parallel``: this process's place in data-parallel training (``distributed``): it
    trains on its shard of every minibatch and steps on the gradients combined over processes."""

    def __init__(
        self,
        bsnn: BayesianSNN,
        optim: PyroOptim,
        loss: ELBO,
        x: torch.Tensor | Dataset,
        y: torch.Tensor | None = None,
        *,
        batch_size: int = 40,
        schedule: str = "sequence",
        seed: int = 0,
        num_workers: int = 0,
        engine: str = "auto",
        device: str | torch.device | None = None,
        draws: RandomStream | None = None,
        parallel: DataParallel | None = None,
    ):
        if schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {schedule!r}; expected one of {SCHEDULES}")
        if engine not in ENGINES:
            raise ValueError(f"unknown engine {engine!r}; expected one of {ENGINES}")
        if batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {batch_size}")
        if y is not None and x.shape[0] != y.shape[0]:
            raise ValueError(f"x has {x.shape[0]} sequences but y has {y.shape[0]} labels")
        if y is None and not isinstance(x, Dataset):
            raise ValueError("pass labels y with a tensor x, or a Dataset of (spikes, label) pairs as x")
        self.bsnn, self.optim, self.loss, self.x, self.y = bsnn, optim, loss, x, y
        self.num_workers = num_workers
        self.batch_size, self.schedule = batch_size, schedule
        if engine == "fused" and schedule != "online":
            raise CompositionError("the fused engine takes the online schedule's steps; use schedule='online'")
        if schedule == "online" and not bsnn.likelihood.online:
            raise CompositionError(
                f"{type(bsnn.likelihood).__name__} scores whole sequences; use the sequence schedule"
            )
        problem = loss_problem(bsnn.sites, loss)
        if problem:
            raise CompositionError(problem)
        bind_optimizer(optim, bsnn)
        self.device = None if device is None else torch.device(device)
        self.parallel = parallel
        stepping = optim
        if parallel is not None:
            if engine == "fused":
                raise CompositionError(
                    "the fused engine steps inside its compiled passes and cannot train data-parallel"
                )
            parallel.check_batches(len(x), batch_size)
            stepping = self.combined = CombinedGradients(optim, parallel, bsnn)
        self.svi = SVI(bsnn.model, bsnn.guide, optim, loss)
        self.svi.optim = stepping
        self.direct = self.fused = None
        on_cpu = self.device is None or self.device.type == "cpu"
        if engine == "fused" or (engine == "auto" and schedule == "online" and on_cpu and parallel is None):
            try:
                self.fused = FusedOnline(bsnn, optim, loss)
            except CompositionError:
                if engine == "fused":
                    raise
        if engine in ("direct", "auto") and self.fused is None:
            try:
                self.direct = DirectSVI(DirectELBO.for_loss(bsnn, loss), stepping)
            except CompositionError:
                if engine == "direct":
                    raise
        self.engine = "fused" if self.fused is not None else "direct" if self.direct is not None else "svi"
        self.generator = torch.Generator().manual_seed(seed)
        self.draws = draws if draws is not None else RandomStream(seed, self.device)
        self.epoch = 0

    def _step(self, *args, **kwargs) -> float:
        return (self.direct or self.svi).step(*args, **kwargs)

    def _sequence_step(self, xb: torch.Tensor, yb: torch.Tensor) -> float:
        return self._step(xb, yb)

    @torch.no_grad()
    def _advance(self, xt: torch.Tensor, t: int, state, carry: dict) -> None:
        """A burn-in step: fresh weights, the network state moves on, nothing is learned."""
        if self.direct is not None:
            out = self.bsnn.net.run(xt, self.direct.elbo.weights(self.direct.elbo.draws()), state)
            carry["state"] = out.state
            return
        guide_trace = poutine.trace(self.bsnn.guide).get_trace(xt)
        poutine.replay(self.bsnn.model, trace=guide_trace)(xt, None, t0=t, state=state, carry=carry)

    def _online_step(self, xb: torch.Tensor, yb: torch.Tensor) -> float:
        burn_in = self.bsnn.likelihood.burn_in
        steps = xb.shape[1]
        kl_scale = 1.0 / max(steps - burn_in, 1)
        if self.fused is not None:
            return self.fused.sequence(xb, yb, kl_scale)
        carry: dict = {}
        state, total = None, 0.0
        for t in range(steps):
            xt = xb[:, t : t + 1]
            if t < burn_in:
                self._advance(xt, t, state, carry)
            else:
                total += self._step(xt, yb, t0=t, state=state, carry=carry, kl_scale=kl_scale)
            state = carry["state"]
        return total

    def _batches(self):
        """Minibatches in a seeded random order, each as (x, y, size of the whole minibatch): when
        training data-parallel, x and y are this process's shard of it."""
        shard = self.parallel.shard if self.parallel is not None else (lambda index: index)
        if self.y is not None:
            order = torch.randperm(self.x.shape[0], generator=self.generator)
            for i in range(0, len(order), self.batch_size):
                index = order[i : i + self.batch_size]
                yield self.x[shard(index)], self.y[shard(index)], len(index)
            return
        batches = BatchSampler(RandomSampler(self.x, generator=self.generator), self.batch_size, drop_last=False)
        sharded = [shard(torch.tensor(index)).tolist() for index in batches]
        loader = DataLoader(self.x, batch_sampler=sharded, num_workers=self.num_workers)
        for i, (xb, yb) in enumerate(loader):
            yield xb, yb, min(self.batch_size, len(self.x) - i * self.batch_size)

    def run_epoch(self) -> dict[str, float]:
        """One pass over the training set in a seeded random order, drawing from ``draws``."""
        with self.draws:
            return self._run_epoch()

    def _run_epoch(self) -> dict[str, float]:
        self.bsnn.train()
        step = self._sequence_step if self.schedule == "sequence" else self._online_step
        start, total, batches = time.perf_counter(), 0.0, 0
        for xb, yb, size in self._batches():
            if self.device is not None:
                xb, yb = xb.to(self.device, non_blocking=True), yb.to(self.device, non_blocking=True)
            batches += 1
            try:
                if self.parallel is not None:
                    self.combined.weight = len(yb) / size
                loss = step(xb, yb)
            except TrainingDiverged as error:  # a gradient that is not finite
                raise self._diverged(str(error), batches) from None
            if self.parallel is not None:  # the whole minibatch's loss, the same on every process
                combined = torch.tensor([loss], dtype=torch.float64)
                self.parallel.combine([combined], self.combined.weight)
                loss = combined.item()
            if not math.isfinite(loss):
                raise self._diverged(f"the ELBO became {loss}", batches)
            total += loss
        self.epoch += 1
        return {"epoch": self.epoch, "loss": total / batches, "seconds": time.perf_counter() - start}

    def _diverged(self, what: str, batch: int) -> TrainingDiverged:
        """``what`` went wrong, with its likely cause told from the values at hand."""
        where = f"in epoch {self.epoch + 1}, minibatch {batch}"
        beta = self.bsnn.kl_weight
        overflow = f"the KL weight {beta:g} scales the KL past float32's range" if beta > 1e3 else (
            "a term of the objective overflows at these values (the prior, the KL weight, the data)"
        )
        if self.epoch == 0 and batch == 1:
            return TrainingDiverged(f"{what} {where}, at the initial parameters: {overflow}, not the step size")
        broken = [name for name, param in self.bsnn.named_parameters() if not torch.isfinite(param).all()]
        if broken:
            return TrainingDiverged(
                f"{what} {where}: {', '.join(broken[:3])}{' and others' if len(broken) > 3 else ''} "
                "stepped to non-finite values; lower the learning rate"
            )
        return TrainingDiverged(f"{what} {where} with every parameter finite: {overflow}")

    def state_dict(self) -> dict[str, Any]:
        """Everything a resume needs: the epoch, the model's and optimiser's states and the random streams."""
        state = {
            "epoch": self.epoch,
            "model": self.bsnn.state_dict(),
            "optimizer": optimizer_state(self.optim, self.bsnn),
            "generator": self.generator.get_state(),
            **self.draws.state_dict(),
        }
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state_dict()``'s output (names saved by earlier versions are upgraded)."""
        expected = set(self.bsnn.state_dict()) | {n for n, _ in self.bsnn.named_parameters()}
        self.bsnn.load_state_dict(upgrade_names(state["model"], expected))
        load_optimizer_state(self.optim, self.bsnn, upgrade_names(state["optimizer"], expected))
        self.generator.set_state(state["generator"])
        self.draws.load_state_dict(state)
        self.epoch = int(state["epoch"])

    def fit(
        self,
        epochs: int,
        *,
        run_dir: str | Path | None = None,
        evaluate: Callable[[], dict[str, float]] | None = None,
        progress: bool | None = None,
        record: dict[str, Any] | None = None,
    ) -> list[dict[str, float]]:
        """Train until ``epochs`` epochs in total; with ``run_dir``, save ``checkpoint.pt`` (with
        ``record`` and the epoch's metrics in it) after every epoch, then append the metrics to
        ``metrics.jsonl`` (a resume restores a line a kill between the two lost)."""
        history = []
        bar = tqdm(
            range(self.epoch, epochs),
            desc=f"train ({self.schedule})",
            unit="epoch",
            disable=None if progress is None else not progress,
        )
        for _ in bar:
            metrics = self.run_epoch()
            if evaluate is not None:
                metrics.update(evaluate())
            history.append(metrics)
            bar.set_postfix(loss=f"{metrics['loss']:.4g}")
            failure = None
            if run_dir is not None:
                try:
                    self._record(Path(run_dir), metrics, record)
                except Exception as error:
                    failure = error
            if self.parallel is not None and not self.parallel.agree(failure is None):  # none trains on alone
                raise failure or PeerFailed(
                    f"process {self.parallel.rank}: process 0 could not record epoch {self.epoch}"
                )
            if failure is not None:
                raise failure
        return history

    def _record(self, run_dir: Path, metrics: dict, record: dict[str, Any] | None) -> None:
        save_checkpoint(run_dir / "checkpoint.pt", {**self.state_dict(), **(record or {}), "metrics": metrics})
        with open(run_dir / "metrics.jsonl", "a") as handle:
            handle.write(json.dumps(metrics) + "\n")
