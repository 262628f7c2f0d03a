"""The unit of work of a sweep: one combination's seeds trained (`train_seeds`), wherever a
queue runs it (this process, a process pinned to a GPU, a Ray task), and what each seed
left in its run folder (`finished`)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections.abc import Callable

from tf_resnet9.config import TrainConfig
from tf_resnet9.errors import TrainingDiverged
from tf_resnet9.outputs import workdir
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
        combination: The combination's folder name (for messages).
        configs: A config per seed.
        run_dirs: Each seed's run folder (its workdir), in the order of `configs`.
        data_dir: Where CIFAR-10 is, as the machine that trains sees it.
    """

    combination: str
    configs: tuple[TrainConfig, ...]
    run_dirs: tuple[str, ...]
    data_dir: str | None


def finished(run_dir: str | os.PathLike) -> Outcome | None:
    """What a run folder holds of a finished run: its results, that it diverged, or None."""
    results = os.path.join(run_dir, workdir.RESULTS_FILE)
    if os.path.exists(results):
        return RunResults.read(results)
    diverged = os.path.join(run_dir, DIVERGED_FILE)
    if os.path.exists(diverged):
        with open(diverged) as f:
            return Diverged(json.load(f)["error"])
    return None


def train_seeds(
    job: Job,
    started: Callable[[str], None] | None = None,
    done: Callable[[str, Outcome], None] | None = None,
) -> list[Outcome]:
    """Trains the job's seeds: on Keras' JAX backend together, in one compiled program
    (`tf_resnet9.experiment_seeds.train_together`), else one `train_and_evaluate` run each,
    one after another. Each seed's files go into its run folder either way.

    This is the one place that knows how a combination's seeds are trained. Seeds train
    together where they start from the same point: none has a checkpoint, or all have one
    of a common epoch (an interrupted sweep). A seed that diverges stops the program: the
    seeds then train one after another, so that each gets its own outcome.

    Args:
        job: The combination's configs and run folders.
        started, done: Called with each run folder as its run starts and with its outcome
            as it ends (the sweep's progress lines when it runs in the sweep's process).

    Returns:
        Each seed's outcome, in the order of `job.configs`.

    Raises:
        What `train_and_evaluate` raises (but `TrainingDiverged`, which is an outcome).
    """
    if len(job.configs) > 1 and _together_possible(job):
        try:
            return _train_together(job, started, done)
        except TrainingDiverged:
            pass  # one seed's NaN: each seed alone says which, and the others' results
    outcomes = []
    for config, run_dir in zip(job.configs, job.run_dirs):
        if started is not None:
            started(run_dir)
        outcomes.append(train_one(config, run_dir, job.data_dir))
        if done is not None:
            done(run_dir, outcomes[-1])
    return outcomes


def _together_possible(job: Job) -> bool:
    import keras  # the backend of the process that trains

    if keras.backend.backend() != "jax":
        return False
    saved = [bool(workdir.checkpoint_paths(run_dir)) for run_dir in job.run_dirs]
    if not any(saved):
        return True
    epochs = [
        {os.path.basename(path) for path in workdir.checkpoint_paths(run_dir)}
        for run_dir in job.run_dirs
    ]
    return all(saved) and bool(set.intersection(*epochs))


def _train_together(job: Job, started, done) -> list[Outcome]:
    from tf_resnet9.experiment_seeds import train_together  # starts Keras: where it trains

    for run_dir in job.run_dirs:
        os.makedirs(run_dir, exist_ok=True)
        if started is not None:
            started(run_dir)
    resume = bool(workdir.checkpoint_paths(job.run_dirs[0]))
    with contextlib.ExitStack() as stack:
        logs = [
            stack.enter_context(open(os.path.join(run_dir, LOG_FILE), "a"))
            for run_dir in job.run_dirs
        ]
        outcomes = train_together(
            list(job.configs), list(job.run_dirs), job.data_dir, logs[0], resume, logs
        )
    if done is not None:
        for run_dir, outcome in zip(job.run_dirs, outcomes):
            done(run_dir, outcome)
    return outcomes


def train_one(config: TrainConfig, run_dir: str, data_dir: str | None) -> Outcome:
    """One run into `run_dir`, its output into `run_dir/train.log`; resumed from its latest
    checkpoint where an interrupted sweep left one."""
    from tf_resnet9.experiment import train_and_evaluate  # starts Keras: where it trains

    os.makedirs(run_dir, exist_ok=True)
    resume = bool(workdir.checkpoint_paths(run_dir))
    with open(os.path.join(run_dir, LOG_FILE), "a") as log:
        try:
            return train_and_evaluate(config, data_dir, run_dir, out=log, resume=resume)
        except TrainingDiverged as error:
            print(f"error: {error}", file=log)
            path = os.path.join(run_dir, DIVERGED_FILE)
            workdir.write_json_atomic(path, {"error": str(error)})
            return Diverged(str(error))
