"""Running a study: every run an ordinary run folder under the study's folder, on a pool of
processes (one torch thread each), resumable, a failed run recorded without stopping the others.

``DIR/study.json`` lists the runs (arm, seed, folder, configuration); each run folder gets
``scores.json`` (its test-set scores per prediction mode) when it finishes.  Running the study
again skips finished runs and resumes interrupted ones from their checkpoints.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..errors import BisnnError, one_line
from .spec import StudyRun, StudySpec

STUDY_FILE, SCORES_FILE = "study.json", "scores.json"


def run_study(spec: StudySpec, out: str | Path, workers: int | None = None, progress: bool | None = None) -> dict[str, str]:
    """Run every run of ``spec`` under ``out``; returns each run folder's outcome: "done",
    "skipped" (finished before) or its one-line error."""
    out = Path(out)
    runs = spec.runs()
    out.mkdir(parents=True, exist_ok=True)
    listing = [{"arm": r.arm, "seed": r.seed, "folder": r.folder, "config": r.config.to_dict()} for r in runs]
    (out / STUDY_FILE).write_text(json.dumps(listing, indent=2) + "\n")
    outcomes = {r.folder: "skipped" for r in runs if (out / r.folder / SCORES_FILE).is_file()}
    todo = [r for r in runs if r.folder not in outcomes]
    workers = max(1, min(workers or os.cpu_count() or 1, len(todo) or 1))
    bar = tqdm(total=len(runs), initial=len(outcomes), desc="study", unit="run", disable=None if progress is None else not progress)
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(_run_one, str(out / r.folder), r.config.to_dict()): r for r in todo}
        for future in as_completed(futures):
            outcomes[futures[future].folder] = future.result()
            bar.update()
    bar.close()
    return {r.folder: outcomes[r.folder] for r in runs}


def _run_one(folder: str, config: dict[str, Any]) -> str:
    """Train (or resume) one run in a worker process and score it: "done", or the one-line error."""
    import torch

    from ..config.components import part
    from ..config.run import ExperimentConfig
    from ..experiment import CHECKPOINT_FILE, create_run, open_run

    torch.set_num_threads(1)
    try:
        path = Path(folder)
        resuming = (path / CHECKPOINT_FILE).is_file()
        run = open_run(path, write=True) if resuming else create_run(ExperimentConfig(config), path)
        run.fit(progress=False)
        modes = ["map"] if part("guide", run.config.guide).point_estimate else ["ensemble", "map"]
        scores = {mode: run.evaluate(mode) for mode in modes}
        run.close()
        (path / SCORES_FILE).write_text(json.dumps(scores) + "\n")
        return "done"
    except BisnnError as error:
        return one_line(error)
    except Exception as error:  # a bug in one run must not stop the others
        return f"internal error ({type(error).__name__}: {one_line(error)})"
