"""A training run from the data to its files, read top to bottom: `train_and_evaluate`, as
the package's users call it, for one seed or several; `train_seeds`, the same into given run
folders (the sweeps' jobs).

    data -> settings resolved once -> build_training -> compile -> fit -> results -> files

One seed is the one-seed case of several: the seeds train together as lanes of one
compiled program where that is faster (`RunSettings.seeds_together`), else one after
another, each into its own run folder; resuming, the folders and the end-of-run files are
handled once, here.
"""

from __future__ import annotations

import dataclasses
import io
import os
import sys
import time
from collections.abc import Sequence

import keras

from tf_resnet9 import backends
from tf_resnet9.build import Training, build_training
from tf_resnet9.config import TrainConfig
from tf_resnet9.config.recipes import RECIPES
from tf_resnet9.config.settings import RunSettings, resolve
from tf_resnet9.data.splits import load_splits
from tf_resnet9.outputs import checkpoints, console, end_of_run, run_folder, tensorboard
from tf_resnet9.outputs.checkpointer import Checkpointer
from tf_resnet9.outputs.results import RunResults, environment, library_versions
from tf_resnet9.outputs.seeds_summary import SeedsResults
from tf_resnet9.training import loop
from tf_resnet9.training.records import Progress


def train_and_evaluate(
    config: TrainConfig,
    data_dir: str | os.PathLike | None = None,
    workdir: str | os.PathLike | None = None,
    out=None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    resume: bool = False,
    overwrite: bool = False,
    data_cache: str | os.PathLike | None = None,
) -> RunResults | SeedsResults:
    """Trains `config.model` by `config`'s recipe, evaluating on the test set (and the
    validation set, with `config.val_split`) after every epoch.

    Args:
        config: The run's settings.
        data_dir: Where the data set is: CIFAR-10 or -100 (`tf_resnet9.load_cifar10`), a
            class folder, a tensorflow-datasets data dir (`config.dataset`).
        workdir: If set, the run's folder (README.org, "What a run promises"): checkpoints,
            and at the end `results.json` and the trained model (`resnet9.keras`) first,
            then the extras (`report.png`, TensorBoard's histograms, `inference.keras` and
            `classes.json`, on TensorFlow `saved_model/`), each whole or not at all; an
            extra that fails is named on `out` (and in `unwritten`). Made and locked at the
            start, removed again if the run fails and left it empty. With `config.seeds` >
            1, each seed's run goes into `workdir/seed-<n>`, their summary beside them.
        out: Text stream for progress (default stdout).
        callbacks: Keras callbacks of the epoch loop (`tf_resnet9.training.loop`), after
            the run's own (progress, checkpoints, TensorBoard); one seed only.
        resume: Continue from the latest checkpoint in `workdir` (written after every
            epoch), to the same results an uninterrupted run reaches. If the checkpoint is
            of the last epoch, only the end-of-run files that are missing are written.
        overwrite: Where `workdir` holds another run, move it aside
            (`<workdir>.replaced-<time>`) instead of refusing.
        data_cache: Where a class folder's images are decoded to, memory-mapped (a set
            larger than memory); None: in memory.

    Returns:
        The results (`RunResults`), with `unwritten`: {file: why} of the extras that failed;
        with several seeds, `tf_resnet9.outputs.seeds_summary.SeedsResults`.

    Raises:
        ConfigError: a setting does not fit the data or the backend; `workdir` holds
            another run, or another run is writing it.
        MissingPackage: a package the run needs does not import (before any data is read).
        DatasetError: the data set is missing or corrupt (naming the bad files).
        TrainingDiverged: a loss or metric became NaN or infinite.
        CheckpointError: `resume` finds no usable checkpoint.
        OutputError: a checkpoint, results.json or the model could not be written.
    """
    if callbacks and config.seeds > 1:
        raise ValueError("callbacks are for a run of one seed: pass seeds=1.")
    out = out or sys.stdout
    writes = backends.process_index() == 0  # of several processes, the first writes
    seeds = config.seed_values
    folders = run_folder.RunFolders.of(workdir, seeds, writes)
    runs = train_seeds(
        config, seeds, data_dir, folders, out, callbacks, resume, overwrite, None, data_cache
    )
    return runs[0] if config.seeds == 1 else _summary_of_seeds(config, runs, folders, out)


def _summary_of_seeds(config, runs, folders: run_folder.RunFolders, out) -> SeedsResults:
    results = SeedsResults(config, tuple(runs), folders.runs, runs[0].settings.seeds_together)
    console.summarise_seeds(runs, results.summary, out)
    summary_dir = folders.workdir if folders.writes else None
    return end_of_run.write_seeds_summary(results, summary_dir, out)


def train_seeds(
    config: TrainConfig,
    seeds: Sequence[int],
    data_dir: str | os.PathLike | None,
    folders: run_folder.RunFolders,
    out,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    resume: bool = False,
    overwrite: bool = False,
    outs: Sequence | None = None,
    data_cache: str | os.PathLike | None = None,
) -> list[RunResults]:
    """Trains `seeds` of `config`, each into its run folder of `folders` (made and locked
    while they train), together or one after another; see `train_and_evaluate`.

    Args:
        resume: Continue each group of seeds that trains together from the latest epoch
            every one of them has a checkpoint of; a seed without any starts afresh.
        outs: Each seed's progress stream. Default: `out` for the seeds shown, which are
            all of those one after another and the first of those together.
        data_cache: See `train_and_evaluate`.

    Returns:
        Each seed's results, in the order of `seeds`.
    """
    started = time.perf_counter()
    with run_folder.claimed(folders, resume, overwrite, out):
        if folders.written[0] is not None:
            end_of_run.check_packages(config)
        splits = load_splits(
            data_dir,
            config.dataset,
            config.val_split,
            config.train_limit,
            config.test_limit,
            config.subset_seed,
            image_size=config.image_size,
            skip_bad=config.skip_bad_images,
            cache_dir=data_cache,
        )
        counts = len(splits.train[1]), len(splits.test[1])
        settings = resolve(config, *counts, seeds=len(seeds), data=splits)
        console.announce(config, settings, splits, len(seeds), out)
        if config.deterministic:
            backends.make_deterministic(settings.jit)
        together = settings.seeds_together
        shown = [k == 0 or not together for k in range(len(seeds))]
        outs = outs or [out if show else io.StringIO() for show in shown]
        results, data_s = [], time.perf_counter() - started
        for group in settings.seed_groups(range(len(seeds))):
            console.group_start([seeds[k] for k in group], together, seeds, out)
            training = build_training(config, settings, splits, [seeds[k] for k in group])
            saved = checkpoints.resume_point([folders.runs[k] for k in group]) if resume else None
            files = [folders.written[k] for k in group]
            lane_outs = [outs[k] for k in group]
            results += _train_group(training, files, saved, lane_outs, callbacks, data_s)
        return results


def _train_group(training: Training, run_dirs, saved, outs, callbacks, data_s) -> list[RunResults]:
    """Restores, compiles, fits and writes the runs of one `Training`."""
    started = time.perf_counter() - data_s  # each run's wall time counts the data's reading
    progress = [Progress((), 0.0, 0.0)] * len(training.seeds)
    if saved is not None:
        progress = training.restore(saved)
        for checkpoint in saved:  # every seed's, where the first one's progress shows
            console.resuming(checkpoint.path, checkpoint.epoch, outs[0])
    state = training.steps.initial_state()
    finished = saved is not None and saved[0].epoch >= training.epochs  # all, the last part
    if finished:
        fits = [_restored_fit(checkpoint) for checkpoint in saved]
        compile_time = saved[0].compile_time_s
    else:
        console.compiling(training.settings.jit, outs[0])
        compile_time = training.compile()
        console.compiled(compile_time, outs[0])
        hooks = [
            [*_hooks(training, seed, run_dir, lane, p, compile_time, out), *callbacks]
            for seed, run_dir, lane, p, out in zip(
                training.seeds, run_dirs, training.steps.lanes, progress, outs
            )
        ]
        names = [f"seed {seed}" for seed in training.seeds] if len(training.seeds) > 1 else None
        fits = loop.fit(training, state, progress, hooks, names)
    training.steps.keep_evaluated_weights()
    runs = []
    for k, (seed, fit, out) in enumerate(zip(training.seeds, fits, outs)):
        resumed = saved[k].epoch if saved else None
        times = (compile_time, time.perf_counter() - started)
        results = _results(training, seed, fit, resumed, *times)
        console.summarise(results, out)
        if run_dirs[k] is not None:
            model = training.steps.lanes[k].model
            unwritten = end_of_run.write_outputs(results, model, run_dirs[k], out, finished)
            results = dataclasses.replace(results, unwritten=unwritten)
        runs.append(results)
    return runs


def _hooks(training: Training, seed: int, run_dir, lane, progress, compile_time, out) -> list:
    """A run's own callbacks: with a run folder, checkpoints (before the table: an epoch's
    row is printed once its checkpoint is on disk) and TensorBoard logs; the progress
    line and table."""
    config, settings = training.config, training.settings
    hooks = []
    if run_dir is not None:
        keep = config.keep_checkpoints
        hooks.append(Checkpointer(run_dir, config.of_seed(seed), keep, compile_time, progress))
        if config.tensorboard:
            logdir = os.path.join(run_dir, run_folder.TENSORBOARD_FOLDER)
            hooks.append(
                tensorboard.TensorBoard(
                    logdir,
                    training.splits.class_names,
                    lane.grad_groups,
                    config.grad_log_every,
                    settings.steps_per_epoch,
                    out,
                )
            )
    line = console.ProgressLine(settings.steps_per_epoch, config.batch_size, out)
    validation = training.splits.val is not None  # a folder's train/ alone: --val_split tests
    return [*hooks, line, console.ProgressTable(out, validation=validation)]


def _restored_fit(checkpoint: checkpoints.Checkpoint) -> loop.Fit:
    """What `loop.fit` returned to the run that wrote the last epoch's checkpoint."""
    progress = checkpoint.progress
    return loop.Fit(
        progress.records,
        progress.training_time_s,
        progress.eval_time_s,
        progress.hooks_time_s,
        checkpoint.confusion_matrix,
    )


def _results(training: Training, seed: int, fit: loop.Fit, resumed, compile_s, wall_s):
    config: TrainConfig = training.config
    settings: RunSettings = training.settings
    return RunResults(
        config=config.of_seed(seed),
        settings=settings,
        recipe={"name": config.recipe, "source": RECIPES[config.recipe].source},
        data=training.splits.results_record,
        epochs=fit.records,
        class_names=training.splits.class_names,
        confusion_matrix=fit.confusion,
        resumed_from_epoch=resumed,
        compile_time_s=compile_s,
        training_time_s=fit.training_time_s,
        eval_time_s=fit.eval_time_s,
        hooks_time_s=fit.hooks_time_s,
        wall_time_s=wall_s,
        versions=library_versions(),
        environment=environment(),
        whitening_time_s=training.whitening_time_s,
    )
