"""Running a study: every run an ordinary run folder under the study's folder, on a pool of
local processes (one torch thread each) or as tasks on a Ray cluster; resumable, a failed run
recorded without stopping the others.

``DIR/study.json`` lists the runs (arm, seed, folder, configuration) and the ensemble sizes to
score; each run folder gets ``scores.json`` (its test-set scores per prediction mode, with the
epochs and ensemble sizes they were made for) when it finishes.  Running the study again skips
finished runs, rescores runs whose scores the study no longer matches (other ensemble sizes),
continues runs to more epochs, resumes interrupted ones from their checkpoints, and refuses a
folder that holds a run of another configuration (a study file edited under it).
"""

from __future__ import annotations

import json
import os
import signal
import socket
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import active_children, get_context
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from tqdm.auto import tqdm

from ..errors import BisnnError, ConfigError, one_line
from .spec import StudyRun, StudySpec

STUDY_FILE, SCORES_FILE = "study.json", "scores.json"
SCORES_FORMAT = 2
OUTCOMES = ("done", "scored", "skipped")  # trained (and scored); scored again without training; finished before


def run_study(
    spec: StudySpec,
    out: str | Path,
    workers: int | None = None,
    progress: bool | None = None,
    ray: str | None = None,
) -> dict[str, str]:
    """Run every run of ``spec`` under ``out``; returns each run folder's outcome: "done"
    (trained), "scored" (scored again without training), "skipped" (finished before) or its
    one-line error.

    Locally the runs share a pool of ``workers`` processes (default: one per core).  With ``ray``
    ("auto": the Ray cluster this process or machine belongs to, else a new local one; or a
    cluster's address) each run is a Ray task asking for one CPU, and a GPU when it trains on one.
    The local pool starts its workers by spawn, which imports the calling script again in each
    of them: in a script, call ``run_study`` under ``if __name__ == "__main__":``.
    """
    out = Path(out).resolve()  # tasks on a cluster's nodes resolve a relative path elsewhere
    if (out / "config.json").is_file():
        raise ConfigError(f"{out} is a run folder; a study writes a folder of its own (choose another --out)")
    runs = spec.runs()
    if ray is None:  # a cluster's nodes may hold data this machine has not
        check_arms(runs)
    execute = _ray_tasks(ray) if ray is not None else _local_pool(workers)
    out.mkdir(parents=True, exist_ok=True)
    listing = [{"arm": r.arm, "seed": r.seed, "folder": r.folder, "config": r.config.to_dict()} for r in runs]
    study = {"ensemble_sizes": list(spec.ensemble_sizes), "runs": listing}
    (out / STUDY_FILE).write_text(json.dumps(study, indent=2) + "\n")
    outcomes = {r.folder: "skipped" for r in runs if finished(out / r.folder, r.config, spec.ensemble_sizes)}
    jobs = [(str(out / r.folder), r.config.to_dict(), spec.ensemble_sizes) for r in runs if r.folder not in outcomes]
    bar = tqdm(
        total=len(runs), initial=len(outcomes), desc="study", unit="run",
        disable=None if progress is None else not progress,
    )
    for folder, outcome in execute(jobs):
        outcomes[Path(folder).relative_to(out).as_posix()] = outcome
        bar.update()
    bar.close()
    return {r.folder: outcomes[r.folder] for r in runs}


def finished(folder: Path, config, ensemble_sizes: Sequence[int]) -> bool:
    """Whether ``folder`` holds this run's scores: made by its configuration, for its epochs and
    these ensemble sizes, in the current format of ``scores.json``."""
    try:
        scores = json.loads((folder / SCORES_FILE).read_text())
    except (OSError, ValueError):
        return False
    expected = {"format": SCORES_FORMAT, "config": config.fingerprint(), "epochs": config.epochs,
                "ensemble_sizes": list(ensemble_sizes)}
    return isinstance(scores, dict) and all(scores.get(key) == value for key, value in expected.items())


def check_arms(runs: Sequence[StudyRun]) -> None:
    """Build each arm's first run (data, model, trainer) before any run starts: an arm whose parts
    cannot train together is refused in one line, instead of failing once per seed."""
    from ..experiment import build, load_data

    for run in {run.arm: run for run in reversed(runs)}.values():
        try:
            build(run.config, load_data(run.config)[0])
        except BisnnError as error:
            raise ConfigError(f"arm {run.arm!r}: {one_line(error)}") from None


Job = tuple[str, dict, Sequence[int]]
LOST = "run the study again to resume it"
UNGUARDED = "or a script that calls run_study outside `if __name__ == '__main__':`, run again by each worker"
Executor = Callable[[list[Job]], Iterator[tuple[str, str]]]


def _local_pool(workers: int | None) -> Executor:
    def execute(jobs: list[Job]) -> Iterator[tuple[str, str]]:
        if not jobs:
            return
        count = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
        with ProcessPoolExecutor(
            count, mp_context=get_context("spawn"), initializer=_leave_interrupts_to_the_study
        ) as pool:
            futures = {pool.submit(_interruptible, *job): job[0] for job in jobs}
            try:
                for future in as_completed(futures):
                    try:
                        outcome = future.result()
                    except BrokenProcessPool:
                        outcome = f"a worker process died (killed for memory? {UNGUARDED}): {LOST}"
                    yield futures[future], outcome
            except BaseException:  # Ctrl-C, or the caller stopped: queued runs do not start, running ones stop
                for worker in active_children():  # also when the interrupt reached this process alone
                    os.kill(worker.pid, signal.SIGINT)
                pool.shutdown(wait=True, cancel_futures=True)  # the running runs stop at their next step
                raise

    return execute


def _leave_interrupts_to_the_study() -> None:
    """A pool worker ignores Ctrl-C (the terminal sends it to the whole process group) except while
    it trains (``_interruptible``): none prints a traceback from its start-up or its idle wait."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _interrupt_once(signum, frame) -> None:
    """KeyboardInterrupt, once: a second Ctrl-C (the terminal's and the study's own may both come)
    must not break into the first one's unwinding."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


def _interruptible(*job) -> str:
    """``run_one`` in a pool worker, stopped by Ctrl-C at its next step (its checkpoint keeps
    the last finished epoch)."""
    signal.signal(signal.SIGINT, _interrupt_once)
    try:
        return run_one(*job)
    except KeyboardInterrupt:
        return "interrupted"
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _ray_tasks(address: str) -> Executor:
    try:
        import ray
    except ImportError:
        raise ConfigError('--ray needs Ray, which is not installed: pip install "bisnn-pyro[cluster]"') from None
    if not ray.is_initialized():
        _check_reachable(address)
        try:
            ray.init(address=None if address == "auto" else address, log_to_driver=False)
        except (ConnectionError, ValueError, RuntimeError) as error:
            raise ConfigError(f"--ray {address}: cannot join the Ray cluster: {one_line(error)}") from None

    def execute(jobs: list[Job]) -> Iterator[tuple[str, str]]:
        task = ray.remote(run_one)
        pending = {}
        for folder, config, sizes in jobs:
            gpus = 1 if str(config["training"].get("device") or "cpu").startswith("cuda") else 0
            pending[task.options(num_cpus=1, num_gpus=gpus, max_retries=0).remote(folder, config, sizes)] = folder
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for reference in done:
                    try:
                        outcome = ray.get(reference)
                    except Exception as error:  # the task's worker crashed or was killed (run_one catches the rest)
                        outcome = f"its Ray task failed ({type(error).__name__}): {LOST}"
                    yield pending.pop(reference), outcome
        except BaseException:
            for reference in pending:
                ray.cancel(reference)
            raise

    return execute


def _check_reachable(address: str, seconds: float = 5.0) -> None:
    """Refuse, in one line, a cluster address nothing answers at (Ray itself would retry forever)."""
    if address == "auto" or "://" in address:  # auto, or a Ray Client address (ray://host:port)
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--ray {address}: expected auto or HOST:PORT of a Ray cluster's head")
    try:
        socket.create_connection((host, int(port)), timeout=seconds).close()
    except OSError as error:
        raise ConfigError(f"--ray {address}: no Ray cluster answers there ({one_line(error)})") from None


def run_one(folder: str, config: dict[str, Any], ensemble_sizes: Sequence[int] = ()) -> str:
    """Train (or resume) one run with one torch thread, score it and write its ``scores.json``:
    returns "done" (it trained), "scored" (it had trained already), or the run's one-line error (a bug
    in one run must not stop the others)."""
    import torch

    from ..config.run import ExperimentConfig
    from ..experiment import CHECKPOINT_FILE, create_run

    torch.set_num_threads(1)
    try:
        path, config = Path(folder), ExperimentConfig(config)
        run = _continued(path, config) if (path / CHECKPOINT_FILE).is_file() else create_run(config, path)
        (path / SCORES_FILE).unlink(missing_ok=True)  # stale (other sizes, fewer epochs) until the new ones exist
        trained = run.trainer.epoch
        run.fit(progress=False)
        scores = {"format": SCORES_FORMAT, "config": config.fingerprint(), "epochs": config.epochs,
                  "ensemble_sizes": list(ensemble_sizes), "modes": score_run(run, ensemble_sizes)}
        run.close()
        (path / SCORES_FILE).write_text(json.dumps(scores) + "\n")
        return "done" if run.trainer.epoch > trained else "scored"
    except BisnnError as error:
        return one_line(error)
    except Exception as error:
        return f"internal error ({type(error).__name__}: {one_line(error)})"


def _continued(path: Path, config):
    """The run in ``path``, opened to train to ``config``'s epochs; refused in one line if it is
    another configuration's run or has trained beyond them."""
    from ..experiment import open_run

    run = open_run(path, write=True)
    if run.config.fingerprint() != config.fingerprint():
        run.close()
        raise ConfigError(f"{path} holds a run of another configuration (was the study file edited?); "
                          "remove the folder or run the study into another --out")
    if config.epochs < run.trainer.epoch:
        run.close()
        raise ConfigError(f"{path} has trained {run.trainer.epoch} epochs; the study asks for {config.epochs}")
    if config.epochs != run.config.epochs:
        run.config = run.config.replaced(epochs=config.epochs)
        run.write_config()
    return run


def score_run(run, ensemble_sizes: Sequence[int] = ()) -> dict[str, dict[str, float]]:
    """Test-set scores of a trained run per prediction mode: ``map``, and unless its guide is a
    point estimate ``ensemble`` (K = the run's ``samples``) and ``ensemble-K<k>`` for each of
    ``ensemble_sizes`` (the first k of one set of draws, so the sizes are nested); each with its
    reliability bins as sums (which pool over seeds)."""
    from ..analysis.metrics import prediction_scores, reliability_sums

    def scored(draw_probs, labels):
        return {**prediction_scores(draw_probs, labels), "samples": len(draw_probs),
                "reliability": reliability_sums(draw_probs.mean(0), labels)}

    scores = {"map": scored(*run.test_predictions("map", 1))}
    if "ensemble" not in run.modes:
        return scores
    samples = run.config.samples
    draw_probs, labels = run.test_predictions("ensemble", max([samples, *ensemble_sizes]))
    scores["ensemble"] = scored(draw_probs[:samples], labels)
    for k in (k for k in ensemble_sizes if k != samples):  # K = samples is "ensemble" already
        scores[f"ensemble-K{k}"] = scored(draw_probs[:k], labels)
    return scores
