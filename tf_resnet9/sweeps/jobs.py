"""The unit of work of a sweep: one combination's seeds trained (`train_job`), wherever a
queue runs it (this process, a process pinned to a GPU, a Ray task), and what each seed
left in its run folder (`finished`)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections.abc import Callable

from tf_resnet9.config import TrainConfig
from tf_resnet9.errors import CheckpointError, TrainingDiverged
from tf_resnet9.outputs import checkpoints, run_folder
from tf_resnet9.outputs.files import write_json_atomic
from tf_resnet9.outputs.results import RunResults

DIVERGED_FILE = "diverged.json"  # a run whose loss became NaN: a result too, not run again
LOG_FILE = "train.log"  # what the run printed (the sweep's own output shows one line a run)


@dataclasses.dataclass(frozen=True)
class Diverged:
    """A run whose loss or metrics became NaN or infinite (`TrainingDiverged`'s message)."""

    message: str


Outcome = RunResults | Diverged


@dataclasses.dataclass(frozen=True)
class Job:
    """One combination's seeds that are still to train.

    Attributes:
        combination: The combination's folder (its seeds' run folders are in it).
        config: The combination's settings (every seed's but its seed).
        seeds: The seeds to train.
        run_dirs: Each seed's run folder, in the order of `seeds`.
        data_dir: Where CIFAR-10 is, as the machine that trains sees it.
    """

    combination: str
    config: TrainConfig
    seeds: tuple[int, ...]
    run_dirs: tuple[str, ...]
    data_dir: str | None


def finished(run_dir: str | os.PathLike) -> Outcome | None:
    """What a run folder holds of a finished run: its results, that it diverged, or None."""
    results = os.path.join(run_dir, run_folder.RESULTS_FILE)
    if os.path.exists(results):
        return RunResults.read(results)
    diverged = os.path.join(run_dir, DIVERGED_FILE)
    if os.path.exists(diverged):
        with open(diverged) as f:
            return Diverged(json.load(f)["error"])
    return None


def train_job(
    job: Job,
    started: Callable[[str], None] | None = None,
    done: Callable[[str, Outcome], None] | None = None,
) -> list[Outcome]:
    """Trains the job's seeds, each into its run folder (`experiment.train_seeds`), its
    output into the folder's train.log; together in one compiled program where the run's
    settings say so (`RunSettings.seeds_together`) and the seeds start from the same point
    (none has a checkpoint, or all have one of a common epoch: an interrupted sweep), else
    one after another. A seed that diverges is an outcome, not an error: where seeds train
    together, a divergence stops the program, and they then train one after another, so
    that each gets its own outcome.

    This is the one place that knows how a combination's seeds are trained.

    Args:
        job: The combination's settings, seeds and run folders.
        started, done: Called with each run folder as its run starts and with its outcome
            as it ends (the sweep's progress lines when it runs in the sweep's process).

    Returns:
        Each seed's outcome, in the order of `job.seeds`.

    Raises:
        What `train_and_evaluate` raises (but `TrainingDiverged`, which is an outcome).
    """
    if len(job.seeds) > 1 and _together_possible(job):
        together = dataclasses.replace(job.config, seeds_together=True)
        try:
            return _train(job, range(len(job.seeds)), together, started, done)
        except TrainingDiverged:
            pass  # one seed's NaN: each seed alone says which, and the others' results
    alone = dataclasses.replace(job.config, seeds_together=False)
    outcomes = []
    for k, run_dir in enumerate(job.run_dirs):
        try:
            outcomes += _train(job, [k], alone, started, done)
        except TrainingDiverged as error:
            path = os.path.join(run_dir, DIVERGED_FILE)
            write_json_atomic(path, {"error": str(error)})
            outcomes.append(Diverged(str(error)))
            if done is not None:
                done(run_dir, outcomes[-1])
    return outcomes


def _together_possible(job: Job) -> bool:
    """Whether the run's settings train the seeds together here, and they can: none has a
    checkpoint, or all have one of a common epoch."""
    from tf_resnet9 import backends  # starts Keras: where it trains
    from tf_resnet9.backends.device import current_device
    from tf_resnet9.config.settings import resolve_together

    if not resolve_together(job.config, len(job.seeds), current_device(), backends.NAME):
        return False
    try:
        checkpoints.common_epoch(job.run_dirs)
    except CheckpointError:
        return False
    return True


def _train(job: Job, which, config: TrainConfig, started, done) -> list[Outcome]:
    """Trains the seeds `which` (indices) of the job; their logs appended to."""
    from tf_resnet9.experiment import train_seeds  # starts Keras: where it trains

    seeds = [job.seeds[k] for k in which]
    run_dirs = [job.run_dirs[k] for k in which]
    folders = run_folder.RunFolders(os.path.dirname(run_dirs[0]), tuple(run_dirs))
    resume = any(checkpoints.paths(run_dir) for run_dir in run_dirs)
    with contextlib.ExitStack() as stack:
        for run_dir in run_dirs:
            os.makedirs(run_dir, exist_ok=True)  # for its log, before the run claims it
        logs = [stack.enter_context(open(os.path.join(d, LOG_FILE), "a")) for d in run_dirs]
        for run_dir in run_dirs:
            if started is not None:
                started(run_dir)
        try:
            outcomes = train_seeds(
                config, seeds, job.data_dir, folders, logs[0], resume=resume, outs=logs
            )
        except TrainingDiverged as error:
            print(f"error: {error}", file=logs[0])
            raise
    if done is not None:
        for run_dir, outcome in zip(run_dirs, outcomes):
            done(run_dir, outcome)
    return outcomes
