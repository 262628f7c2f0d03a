"""One training run, or several seeds of one config trained as lanes of one compiled program
(`run_lanes`): data -> input -> model -> epoch loop -> results and outputs."""

from __future__ import annotations

import dataclasses
import importlib.util
import io
import os
import sys
import time
from collections.abc import Callable
from typing import NamedTuple

import keras
import numpy as np

from tf_resnet9 import backends, builders
from tf_resnet9.config import TrainConfig
from tf_resnet9.config.recipes import RECIPES
from tf_resnet9.config.settings import RunSettings, resolve
from tf_resnet9.data.splits import Splits, load_splits
from tf_resnet9.errors import ConfigError, MissingPackage
from tf_resnet9.outputs import checkpoints, export, report, tensorboard
from tf_resnet9.outputs import workdir as folder
from tf_resnet9.outputs.progress import ProgressLine, ProgressTable
from tf_resnet9.outputs.results import RunResults, environment, library_versions
from tf_resnet9.training import loop
from tf_resnet9.training.evaluation import EvalSet
from tf_resnet9.training.records import Progress
from tf_resnet9.training.seeds import SeedInput, SeedSteps
from tf_resnet9.training.steps import CompiledSteps

QUICK_CHECK = "--width 0.25 --epochs 2 --train_limit 4096"


def train_one(
    config: TrainConfig,
    data_dir: str | os.PathLike | None = None,
    workdir: str | os.PathLike | None = None,
    out=None,
    callbacks: tuple[keras.callbacks.Callback, ...] = (),
    resume: bool = False,
) -> RunResults:
    """One run of one seed (`config.seeds` is not read): `tf_resnet9.train_and_evaluate`
    with `seeds=1`, which says what it writes, returns and raises."""
    wall_start = time.perf_counter()
    out = out or sys.stdout
    if resume and workdir is None:
        raise ConfigError("resume", True, "it needs the workdir of the run to resume.")
    checkpoint = checkpoints.load_latest(workdir) if resume else None
    if backends.process_index() != 0:  # of several: the first writes and shows the run
        workdir, out = None, io.StringIO()
    if workdir is not None:
        check_packages(config)
    created = folder.make_workdir(workdir)
    try:
        results, model = _run(config, data_dir, workdir, out, callbacks, checkpoint, wall_start)
    except BaseException:
        folder.remove_if_empty(created)
        raise
    if workdir is None:
        return results
    finished_before = checkpoint is not None and checkpoint.epoch >= config.epochs
    unwritten = write_outputs(results, model, workdir, out, only_missing=finished_before)
    return dataclasses.replace(results, unwritten=unwritten)


def check_packages(config: TrainConfig) -> None:
    """Raises MissingPackage, naming it and how to install it, for a package the outputs of
    a run with `config` will need: checked before any data is read."""
    needed = {report.PACKAGE: "report.png and TensorBoard's confusion matrices"}
    if config.tensorboard:
        needed[tensorboard.PACKAGE] = "TensorBoard logs (or pass --notensorboard)"
    for package, needs in needed.items():
        if importlib.util.find_spec(package) is None:
            raise MissingPackage(
                f"{package} is not installed: {needs} need it. pip install {package}"
            )


class Lane(NamedTuple):
    """One run of those trained together (`run_lanes`): seeds, on JAX."""

    config: TrainConfig  # its own settings (its seed)
    workdir: str | None  # its run folder
    checkpoint: checkpoints.Checkpoint | None  # where it resumes from
    out: object  # its progress lines


def _run(config, data_dir, workdir, out, callbacks, checkpoint, wall_start):
    lane = Lane(config, workdir, checkpoint, out)
    ((results, model),) = run_lanes([lane], data_dir, out, callbacks, wall_start)
    return results, model


def run_lanes(
    lanes: list[Lane], data_dir, out, callbacks=(), wall_start: float | None = None
) -> list[tuple[RunResults, keras.Model]]:
    """Trains the lanes' runs, one `train_one` run alone; several (seeds of one
    config) in one compiled program (`tf_resnet9.training.seeds`), all resuming from the
    same epoch. Returns each lane's (results, trained model); writes no end-of-run file."""
    wall_start = time.perf_counter() if wall_start is None else wall_start
    config = lanes[0].config
    for k, lane in enumerate(lanes):  # the lanes differ in their seed only
        if dataclasses.replace(lane.config, seed=config.seed) != config:
            raise ValueError(f"lane {k}: its config differs from lane 0's in more than the seed.")
    splits = load_splits(
        data_dir,
        config.dataset,
        config.val_split,
        config.train_limit,
        config.test_limit,
        config.subset_seed,
    )
    together = dataclasses.replace(config, seeds=len(lanes))  # the devices' split
    run = resolve(together, len(splits.train[1]), len(splits.test[1]))
    _announce(together, run, splits, out)
    if config.deterministic:
        backends.make_deterministic(run.jit)
    lr = builders.learning_rate(config, run.steps_per_epoch)
    steps = _build_steps([lane.config for lane in lanes], run, lr, splits)
    progress = [
        _restore(lane.checkpoint, lane.config, lane_steps, out)
        if lane.checkpoint
        else Progress((), 0, 0)
        for lane, lane_steps in zip(lanes, steps.lanes)
    ]
    if all(
        lane.checkpoint is not None and lane.checkpoint.epoch >= config.epochs for lane in lanes
    ):
        fitted = [_restored_fit(lane.checkpoint) for lane in lanes]
        compile_time = lanes[0].checkpoint.compile_time_s
    else:
        compile_time = _compile(config, run, splits, steps, out)
        own = [
            _run_callbacks(lane.config, run, splits, lane.workdir, s, p, compile_time, lane.out)
            for lane, s, p in zip(lanes, steps.lanes, progress)
        ]
        rates = [builders.lr_of_update(lane_steps.optimizer, lr) for lane_steps in steps.lanes]
        make_inputs = lambda: _inputs(config, run, splits, steps)  # noqa: E731 - after the clock
        every = [[*lane_callbacks, *callbacks] for lane_callbacks in own]
        names = [f"seed {lane.config.seed}" for lane in lanes] if len(lanes) > 1 else None
        fitted = loop.fit_lanes(steps, make_inputs, config.epochs, rates, every, progress, names)
    steps.keep_evaluated_weights()
    ran = []
    for lane, lane_fit, lane_steps in zip(lanes, fitted, steps.lanes):
        results = _results(
            lane.config, run, splits, lane_fit, lane.checkpoint, compile_time, wall_start
        )
        _summarise(results, lane.out)
        ran.append((results, lane_steps.model))
    return ran


def _build_steps(configs: list[TrainConfig], run: RunSettings, lr, splits: Splits):
    """Each config's compiled steps, initialised from its seed as a run alone is; for
    several, their `SeedSteps`."""
    if len(configs) == 1:
        keras.utils.set_random_seed(configs[0].seed)
        return builders.build_steps(configs[0], run, lr, splits.train[0])
    lanes = []
    for config in configs:  # each on one device, as a run alone: SeedSteps places them
        keras.utils.set_random_seed(config.seed)
        alone = dataclasses.replace(run, devices=1)
        lanes.append(builders.build_steps(config, alone, lr, splits.train[0]))
    seeds = [config.seed for config in configs]
    where = builders.placement(run.devices, len(configs))
    return SeedSteps(lanes, run.jit, seeds, where)


def _restore(checkpoint, config: TrainConfig, steps: CompiledSteps, out) -> Progress:
    progress = checkpoints.restore(
        checkpoint, dataclasses.asdict(config), steps.model, steps.optimizer, steps.ema_variables
    )
    print(f"resuming from {checkpoint.path} (epoch {checkpoint.epoch})", file=out)
    return progress


def _announce(config: TrainConfig, run: RunSettings, splits: Splits, out) -> None:
    if run.device.kind == "cpu":
        print(cpu_warning(config, run.device.name), file=out)
    split_batches = run.devices > 1 and config.seeds == 1
    if split_batches and config.ghost_bn_splits % run.devices and config.ghost_bn_splits > 1:
        print(
            f"warning: ghost_bn_splits={config.ghost_bn_splits} is not a multiple of the "
            f"{run.devices} devices: its sub-batches span devices, whose BatchNorm "
            "statistics then need communication at every layer.",
            file=out,
        )
    held_out = f", {len(splits.val[1])} validation" if splits.val else ""
    print(
        f"{config.model} by the {config.recipe} recipe; data: {splits.source} "
        f"({len(splits.train[1])} train{held_out}, {len(splits.test[1])} test images); "
        f"device: {run.device.name}; backend: {run.backend}; precision: {run.precision}; "
        f"augmentation: {run.augment}; XLA: {'on' if run.jit else 'off'}"
        + _devices_note(config, run),
        file=out,
    )


def _devices_note(config: TrainConfig, run: RunSettings) -> str:
    if run.devices == 1:
        return ""
    if config.seeds > 1:
        return (
            f"; the seeds split over {run.devices} devices, {config.seeds // run.devices} on each"
        )
    return f"; data parallel over {run.devices} devices"


def _eval_sets(run, splits: Splits, steps, stand_in: bool = False) -> dict[str, EvalSet]:
    """{"test": ..., "val": ...} (validation only with one), placed where the steps read
    them; zeros of the same shapes for compiling (`stand_in`)."""
    named = {"test": splits.test} | ({"val": splits.val} if splits.val else {})
    if stand_in:
        named = {name: tuple(map(np.zeros_like, split)) for name, split in named.items()}
    size, where = run.eval_batch_size, steps.placement
    return {name: EvalSet.build(*split, size, where) for name, split in named.items()}


def _train_input(config, run, images, labels, steps):
    """The training input of `config`; for steps of several seeds, their `SeedInput`."""
    train = builders.train_input(config, run, images, labels, steps.placement)
    if len(steps.lanes) == 1:
        return train
    return SeedInput.of_seeds(train, steps.seeds)


def _inputs(config, run, splits, steps):
    return _train_input(config, run, *splits.train, steps), _eval_sets(run, splits, steps)


def _compile(config, run, splits, steps: CompiledSteps, out) -> float:
    print(
        f"compiling the training and evaluation steps{' with XLA' if run.jit else ''} "
        "(once per run; about a minute on a CPU) ...",
        file=out,
        flush=True,
    )
    stand_in = tuple(map(np.zeros_like, splits.train))
    seconds = loop.warm_up(
        steps,
        lambda: _train_input(config, run, *stand_in, steps),
        list(_eval_sets(run, splits, steps, stand_in=True).values()),
    )
    print(f"compiled in {seconds:.1f} s; training", file=out, flush=True)
    return seconds


def _run_callbacks(config, run, splits, workdir, steps, progress, compile_time, out):
    """The run's own callbacks: the learning rate's (plateau: first, so that a checkpoint
    holds the lr the next epoch uses); with a workdir, checkpoints (before the table: an
    epoch's row is printed once its checkpoint is on disk) and TensorBoard logs; the
    progress line and table."""
    callbacks = builders.lr_callbacks(config, steps.optimizer, progress.records)
    if workdir is not None:
        callbacks.append(
            checkpoints.Checkpointer(
                workdir,
                dataclasses.asdict(config),
                steps.optimizer,
                config.keep_checkpoints,
                compile_time,
                progress,
                steps.ema_variables,
            )
        )
        if config.tensorboard:
            callbacks.append(
                tensorboard.TensorBoard(
                    os.path.join(workdir, folder.TENSORBOARD_FOLDER),
                    splits.class_names,
                    steps.grad_groups,
                    config.grad_log_every,
                    run.steps_per_epoch,
                )
            )
    line = ProgressLine(run.steps_per_epoch, config.batch_size, out)
    return [*callbacks, line, ProgressTable(out, validation=config.val_split > 0)]


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


def _results(config, run, splits, fitted, checkpoint, compile_time, wall_start) -> RunResults:
    return RunResults(
        config=dataclasses.asdict(config) | run.record(),
        recipe={"name": config.recipe, "source": RECIPES[config.recipe].source},
        data=splits.record,
        steps_per_epoch=run.steps_per_epoch,
        epochs=fitted.records,
        class_names=splits.class_names,
        confusion_matrix=fitted.confusion,
        resumed_from_epoch=checkpoint.epoch if checkpoint else None,
        compile_time_s=compile_time,
        training_time_s=fitted.training_time_s,
        eval_time_s=fitted.eval_time_s,
        hooks_time_s=fitted.hooks_time_s,
        wall_time_s=time.perf_counter() - wall_start,
        device=dataclasses.asdict(run.device),
        versions=library_versions(),
        environment=environment(),
        seed=config.seed,
    )


class Output(NamedTuple):
    """A file (or folder) a run writes at its end."""

    name: str  # its name in the workdir
    write: Callable[[str], object]  # writes it, given its path
    redo: bool = True  # a finished run resumed writes it again if it is missing


def end_of_run_outputs(results: RunResults, model: keras.Model, workdir) -> tuple[list, list]:
    """(what a run's result is: results.json and the trained model; the extras: report.png,
    the model for inference, TensorBoard's weight histograms, the SavedModel)."""
    names, epochs = results.class_names, results.epochs
    essential = [
        Output(folder.RESULTS_FILE, results.write),
        Output(folder.model_file(results.config["model"]), lambda p: export.save_model(model, p)),
    ]
    extras = [
        Output(
            folder.REPORT_FILE,
            lambda p: report.draw_report(epochs, results.confusion_matrix, names, p),
        ),
        Output(export.INFERENCE_FILE, lambda p: export.save_inference_model(model, names, workdir)),
    ]
    if results.config["tensorboard"]:
        logdir = os.path.join(workdir, folder.TENSORBOARD_FOLDER)
        write = lambda p: tensorboard.write_weight_histograms(logdir, model, len(epochs))  # noqa: E731
        # Inside the event files, beside the epochs' logs: nothing to tell missing.
        extras.append(Output("TensorBoard's weight histograms", write, redo=False))
    if results.config["backend"] == "tensorflow":
        saved = lambda p: export.export_saved_model(model, names, workdir)  # noqa: E731
        extras.append(Output(export.SAVED_MODEL_DIR, saved))
    return essential, extras


def write_outputs(
    results: RunResults, model: keras.Model, workdir, out, only_missing: bool = False
) -> dict[str, str]:
    """Writes results.json and the trained model, then each extra on its own: one that fails
    is named on `out` with why, and the others are still written.

    Args:
        only_missing: Write only the files that are not there (a finished run resumed).

    Returns:
        {name: why} of the extras not written.
    """
    essential, extras = end_of_run_outputs(results, model, workdir)
    wanted = [
        output
        for output in essential + extras
        if not only_missing
        or (output.redo and not os.path.exists(os.path.join(workdir, output.name)))
    ]
    unwritten = {}
    for output in wanted:
        path = os.path.join(workdir, output.name)
        if output in essential:  # not isolated: without these the run has no result
            output.write(path)
            continue
        try:
            output.write(path)
        except Exception as e:  # noqa: BLE001 - each extra's failure is reported, not fatal
            unwritten[output.name] = f"{type(e).__name__}: {e}"
            print(f"error: {output.name} not written: {unwritten[output.name]}", file=out)
    if only_missing:
        done = [output.name for output in wanted if output.name not in unwritten]
        print(f"written again: {', '.join(done) or 'nothing (none was missing)'}", file=out)
    return unwritten


def _summarise(results: RunResults, out) -> None:
    print(per_class_table(results.class_names, list(results.per_class_accuracy.values())), file=out)
    print(
        f"test accuracy {results.test_accuracy:.2%} | training "
        f"{results.training_time_s:.1f} s (DAWNBench: preprocessing + training, evaluation "
        f"excluded) | compile {results.compile_time_s:.1f} s | wall {results.wall_time_s:.1f} s",
        file=out,
    )


def per_class_table(names, accuracies) -> str:
    """Test accuracy per class, in columns."""
    cells = [
        f"{name[:14]:>14} {'-' if acc is None else f'{acc:6.1%}':>6}"
        for name, acc in zip(names, accuracies)
    ]
    rows = [" ".join(cells[i : i + 5]) for i in range(0, len(cells), 5)]
    return "test accuracy per class:\n" + "\n".join(rows)


def cpu_warning(config: TrainConfig, cpu: str) -> str:
    """What to say when no GPU is found; the quick-check flags only where none of them was
    changed from the full-size defaults."""
    full_size = (config.width, config.epochs, config.train_limit) == (
        TrainConfig.width,
        TrainConfig.epochs,
        None,
    )
    hint = f" For a quick check: {QUICK_CHECK}." if full_size else ""
    return f"No GPU found: training on the CPU ({cpu}), which is slow.{hint}"
