"""Several seeds of one config (`--seeds K`): K independent runs, seeds seed, seed + 1, ...

On Keras' JAX backend they train together, in one compiled program mapped over their
stacked states (`tf_resnet9.training.seeds`); on TensorFlow one after another in this
process. Either way each seed gets the run folder a run of that seed alone gets,
WORKDIR/seed-<n> (results.json, the model, checkpoints, TensorBoard, report.png), and the
workdir gets their summary: seeds.json and seeds.png (`tf_resnet9.outputs.seeds`).
"""

from __future__ import annotations

import dataclasses
import io
import os
import sys
import time

from tf_resnet9 import backends, training_run
from tf_resnet9.backends.device import current_device
from tf_resnet9.config import TrainConfig
from tf_resnet9.config.settings import resolve_devices
from tf_resnet9.errors import CheckpointError, ConfigError
from tf_resnet9.outputs import checkpoints
from tf_resnet9.outputs import workdir as folder
from tf_resnet9.outputs.results import RunResults
from tf_resnet9.outputs.seeds import SeedsResults, draw_spread
from tf_resnet9.training_run import train_one


def seed_configs(config: TrainConfig) -> list[TrainConfig]:
    """Each seed's config: a run of that seed alone (`seeds=1`)."""
    return [dataclasses.replace(config, seed=config.seed + k, seeds=1) for k in range(config.seeds)]


def train_seeds(
    config: TrainConfig,
    data_dir: str | os.PathLike | None = None,
    workdir: str | os.PathLike | None = None,
    out=None,
    resume: bool = False,
) -> SeedsResults:
    """Trains `config.seeds` seeds of `config`; see `train_and_evaluate`, which calls this
    for `seeds > 1`.

    Args:
        resume: Continue every seed from its checkpoints: together (JAX), from the latest
            epoch all the seeds have a checkpoint of; one after another (TensorFlow), each
            seed from its latest, a seed without one from the start.

    Returns:
        The seeds' results and summary, with `unwritten` over all the files.
    """
    out = out or sys.stdout
    if resume and workdir is None:
        raise ConfigError("resume", True, "it needs the workdir of the run to resume.")
    # Refused before the data is read: several seeds with data parallel.
    resolve_devices(config, current_device(), backends.NAME)
    configs = seed_configs(config)
    run_dirs = [None if workdir is None else folder.seed_folder(workdir, c.seed) for c in configs]
    together = backends.NAME == "jax"
    train = _together if together else _one_after_another
    runs = train(config, configs, data_dir, workdir, run_dirs, out, resume)
    unwritten = {
        f"{os.path.basename(run_dir)}/{name}": why
        for run, run_dir in zip(runs, run_dirs)
        for name, why in run.unwritten.items()
    }
    results = SeedsResults(dataclasses.asdict(config), tuple(runs), tuple(run_dirs), together)
    _print_summary(results, out)
    if workdir is not None:
        results.write(os.path.join(workdir, folder.SEEDS_FILE))
        try:
            draw_spread(runs, results.target, os.path.join(workdir, folder.SEEDS_PLOT))
        except Exception as e:  # noqa: BLE001 - an extra, as each run's report.png is
            unwritten[folder.SEEDS_PLOT] = f"{type(e).__name__}: {e}"
            print(
                f"error: {folder.SEEDS_PLOT} not written: {unwritten[folder.SEEDS_PLOT]}", file=out
            )
    return dataclasses.replace(results, unwritten=unwritten)


def _one_after_another(config, configs, data_dir, workdir, run_dirs, out, resume):
    runs = []
    for seed_config, run_dir in zip(configs, run_dirs):
        print(f"seed {seed_config.seed} of {len(configs)} one after another", file=out)
        again = resume and bool(folder.checkpoint_paths(run_dir))
        runs.append(train_one(seed_config, data_dir, run_dir, out, resume=again))
    return runs


def _together(config, configs, data_dir, workdir, run_dirs, out, resume) -> list[RunResults]:
    created = folder.make_workdir(workdir)  # a bad path fails before anything trains
    try:
        return train_together(configs, run_dirs, data_dir, out, resume)
    except BaseException:
        folder.remove_if_empty(created)  # what the seeds' run folders left
        raise


def train_together(
    configs: list[TrainConfig],
    run_dirs: list[str | None],
    data_dir,
    out,
    resume: bool = False,
    lane_outs: list | None = None,
) -> list[RunResults]:
    """Seeds of one config (`configs`, each a run of its seed) in one compiled program,
    each seed's files written into its `run_dirs` folder as a run alone writes them.

    Args:
        resume: Continue from the latest epoch every seed has a checkpoint of.
        lane_outs: Each seed's progress stream; default: the first seed's on `out`, the
            others' not shown (their rows are in their files).
    """
    wall_start = time.perf_counter()
    saved = common_checkpoints(run_dirs) if resume else [None] * len(configs)
    if run_dirs[0] is not None:
        training_run.check_packages(configs[0])
    created = [path for run_dir in run_dirs for path in folder.make_workdir(run_dir)]
    lane_outs = lane_outs or [out] + [io.StringIO() for _ in configs[1:]]
    lanes = [training_run.Lane(*lane) for lane in zip(configs, run_dirs, saved, lane_outs)]
    seeds = ", ".join(str(c.seed) for c in configs)
    print(
        f"seeds {seeds} trained together; the progress shown is seed {configs[0].seed}'s", file=out
    )
    try:
        ran = training_run.run_lanes(lanes, data_dir, out, (), wall_start)
    except BaseException:
        folder.remove_if_empty(created)
        raise
    runs = []
    for lane, (results, model) in zip(lanes, ran):
        if lane.workdir is not None:
            finished = lane.checkpoint is not None and lane.checkpoint.epoch >= lane.config.epochs
            unwritten = training_run.write_outputs(results, model, lane.workdir, out, finished)
            results = dataclasses.replace(results, unwritten=unwritten)
        runs.append(results)
    return runs


def _epoch_of(path: str) -> int:
    return int(os.path.basename(path).removeprefix("epoch-").removesuffix(".npz"))


def common_checkpoints(run_dirs: list[str]) -> list[checkpoints.Checkpoint]:
    """Each seed's checkpoint of the latest epoch every seed has one of (a run stopped while
    writing an epoch's checkpoints has that epoch for some seeds only).

    Raises:
        CheckpointError: a seed has none, or they share no epoch.
    """
    epochs = []
    for run_dir in run_dirs:
        checkpoints.load_latest(run_dir)  # raises, naming the folder, where there is none
        epochs.append({_epoch_of(path) for path in folder.checkpoint_paths(run_dir)})
    common = set.intersection(*epochs)
    if not common:
        raise CheckpointError(
            f"the seeds' checkpoints ({', '.join(run_dirs)}) share no epoch to resume from "
            "together; start afresh without --resume."
        )
    epoch = max(common)
    return [
        checkpoints.load(os.path.join(folder.checkpoint_folder(d), f"epoch-{epoch:04d}.npz"))
        for d in run_dirs
    ]


def _print_summary(results: SeedsResults, out) -> None:
    for run in results.runs:
        print(f"seed {run.seed}: test accuracy {run.test_accuracy:.2%}", file=out)
    summary = results.summary
    reached = ""
    if summary["target"] is not None:
        reached = f"; {summary['share_at_target']:.0%} reach {summary['target']:.0%}"
    print(
        f"{summary['runs']} seeds: median test accuracy {summary['median_test_accuracy']:.2%} "
        f"(min {summary['min_test_accuracy']:.2%}, max {summary['max_test_accuracy']:.2%})"
        f"{reached}",
        file=out,
    )
