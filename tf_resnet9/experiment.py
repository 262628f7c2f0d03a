"""One training run: data -> input -> model -> epoch loop -> results."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import sys
import time

import keras
import numpy as np

from tf_resnet9 import backends, builders, checkpoints, data, export, loop, settings
from tf_resnet9.callbacks import ProgressLine, ProgressTable
from tf_resnet9.config import ConfigError, TrainConfig
from tf_resnet9.inputs import DeviceInput, EvalSet, HostInput
from tf_resnet9.recipes import RECIPES
from tf_resnet9.report import RunReport
from tf_resnet9.results import library_versions, write_json_atomic
from tf_resnet9.tensorboard import TensorBoard
from tf_resnet9.workdir import make_workdir, remove_if_empty

RESULTS_FILE = "results.json"
REPORT_FILE = "report.png"
TENSORBOARD_FOLDER = "tensorboard"
QUICK_CHECK = "--width 0.25 --epochs 2 --train_limit 4096"


def train_and_evaluate(
    config: TrainConfig,
    data_dir: str | os.PathLike | None = None,
    workdir: str | os.PathLike | None = None,
    out=None,
    callbacks: tuple[keras.callbacks.Callback, ...] = (),
    resume: bool = False,
) -> dict:
    """Trains `config.model` by `config`'s recipe, evaluating on the test set (and the
    validation set, with `config.val_split`) after every epoch.

    Args:
        config: The run's settings.
        data_dir: Where CIFAR-10 is (see `tf_resnet9.load_cifar10`).
        workdir: If set, a checkpoint after every epoch, and at the end `results.json`,
            the trained model (`model_file(config)`, e.g. `resnet9.keras`) and the model
            for inference (uint8 images
            in, probabilities out: `inference.keras`, `classes.json`, and `saved_model/` on
            TensorFlow; see `tf_resnet9.export`), each written atomically. Created at the
            start (so that a bad path fails before training) and removed again if the run
            fails and left it empty.
        out: Text stream for progress (default stdout).
        callbacks: Keras callbacks called by the epoch loop (`tf_resnet9.loop`), after the
            run's own (progress table, checkpoints, TensorBoard, report).
        resume: Continue from the latest checkpoint in `workdir` (written after every
            epoch), to the same results an uninterrupted run reaches.

    Returns:
        The results: config, per-epoch metrics, final test accuracy, timings, device, versions.

    Raises:
        ConfigError: a setting does not fit the data or the backend.
        DatasetError: CIFAR-10 is missing or corrupt.
        TrainingDiverged: the loss became NaN or infinite.
        CheckpointError: `resume` finds no usable checkpoint.
    """
    wall_start = time.perf_counter()
    out = out or sys.stdout
    if resume and workdir is None:
        raise ConfigError("resume", True, "it needs the workdir of the run to resume.")
    checkpoint = checkpoints.load_latest(workdir) if resume else None
    created = make_workdir(workdir)
    try:
        results, model = _run(config, data_dir, workdir, out, callbacks, checkpoint, wall_start)
        if workdir is not None:
            _save_model(model, os.path.join(workdir, model_file(config)))
            export.save_inference_model(model, results["class_names"], workdir)
            write_json_atomic(os.path.join(workdir, RESULTS_FILE), results)
    except BaseException:
        remove_if_empty(created)
        raise
    return results


def _run(config, data_dir, workdir, out, callbacks, checkpoint, wall_start):
    source = data.locate(data_dir, config.dataset)
    (x_train, y_train), (x_test, y_test) = data.read(source)
    (x_train, y_train), validation = _split_validation(config, x_train, y_train)
    train_subset = data.balanced_subset(y_train, config.train_limit, config.subset_seed)
    test_subset = data.balanced_subset(y_test, config.test_limit, config.subset_seed)
    x_train, y_train = x_train[train_subset], y_train[train_subset]
    x_test, y_test = x_test[test_subset], y_test[test_subset]
    run = settings.resolve(config, len(x_train), len(x_test))
    names = data.class_names(source)
    if run.device.kind == "cpu":
        print(cpu_warning(config, run.device.name), file=out)
    held_out = f", {len(validation[1])} validation" if validation else ""
    print(
        f"{config.model} by the {config.recipe} recipe; data: {source} ({len(x_train)} train"
        f"{held_out}, {len(x_test)} test images); device: "
        f"{run.device.name}; backend: {run.backend}; precision: {run.precision}; "
        f"augmentation: {run.augment}; XLA: {'on' if config.jit else 'off'}",
        file=out,
    )

    if config.deterministic:
        backends.make_deterministic(config.jit)
    keras.utils.set_random_seed(config.seed)
    lr = builders.learning_rate(config, run.steps_per_epoch)
    steps = builders.build_steps(config, run.precision, lr, x_train)
    progress = None
    if checkpoint is not None:
        progress = checkpoints.restore(
            checkpoint, config, steps.model, steps.optimizer, steps.ema_variables
        )
        if checkpoint.epoch >= config.epochs:
            raise ConfigError("resume", True, f"{checkpoint.path}: the run is already complete.")
        print(f"resuming from {checkpoint.path} (epoch {checkpoint.epoch})", file=out)
    input_type = DeviceInput if run.augment == "device" else HostInput

    def make_train_input(images, labels):
        augmentation = {"pad": config.pad}
        if input_type is HostInput:  # on the device, the compiled steps cut out
            augmentation["cutout"] = config.cutout
        return input_type(
            images, labels, config.batch_size, run.steps_per_call, config.seed, **augmentation
        )

    def make_eval_sets():
        sets = {"test": EvalSet.build(x_test, y_test, run.eval_batch_size)}
        if validation:
            sets["val"] = EvalSet.build(*validation, run.eval_batch_size)
        return sets

    print(
        f"compiling the training and evaluation steps{' with XLA' if config.jit else ''} "
        "(once per run; about a minute on a CPU) ...",
        file=out,
        flush=True,
    )
    compile_time = loop.warm_up(
        steps,
        lambda: make_train_input(np.zeros_like(x_train), np.zeros_like(y_train)),
        [
            EvalSet.build(np.zeros_like(images), np.zeros_like(labels), run.eval_batch_size)
            for images, labels in [(x_test, y_test), *([validation] if validation else [])]
        ],
    )
    print(f"compiled in {compile_time:.1f} s; training", file=out, flush=True)
    fitted = loop.fit(
        steps,
        lambda: (make_train_input(x_train, y_train), make_eval_sets()),
        config.epochs,
        builders.lr_of_update(steps.optimizer, lr),
        (*_run_callbacks(config, run, names, workdir, steps, progress, out), *callbacks),
        progress,
    )
    steps.keep_evaluated_weights()
    per_class = _per_class_accuracy(fitted.evaluation.confusion)

    images_trained = config.epochs * run.steps_per_epoch * config.batch_size
    results = {
        "config": dataclasses.asdict(config) | run.record(),
        "recipe": {"name": config.recipe, "source": RECIPES[config.recipe].source},
        "data": {
            "source": str(source),
            "train_images": len(x_train),
            "validation_images": len(validation[1]) if validation else 0,
            "test_images": len(x_test),
            "train_subset": _subset_record(config.train_limit, config, y_train),
            "test_subset": _subset_record(config.test_limit, config, y_test),
        },
        "steps_per_epoch": run.steps_per_epoch,
        "epochs": fitted.records,
        "test_accuracy": fitted.records[-1]["test_acc"],
        "test_top5_accuracy": fitted.records[-1]["test_top5_acc"],
        "class_names": list(names),
        "per_class_accuracy": dict(zip(names, per_class)),
        "confusion_matrix": fitted.evaluation.confusion.tolist(),  # rows: the true class
        "resumed_from_epoch": checkpoint.epoch if checkpoint else None,
        "compile_time_s": compile_time,
        "training_time_s": fitted.training_time_s,
        "eval_time_s": fitted.eval_time_s,
        "hooks_time_s": fitted.hooks_time_s,
        "wall_time_s": time.perf_counter() - wall_start,
        "images_per_s": images_trained / fitted.training_time_s,
        "device": dataclasses.asdict(run.device),
        "versions": library_versions(),
        "seed": config.seed,
    }
    print(per_class_table(names, per_class), file=out)
    print(
        f"test accuracy {results['test_accuracy']:.2%} | training "
        f"{results['training_time_s']:.1f} s (DAWNBench: preprocessing + training, evaluation "
        f"excluded) | compile {compile_time:.1f} s | wall {results['wall_time_s']:.1f} s",
        file=out,
    )
    return results, steps.model


def _run_callbacks(config, run, names, workdir, steps, progress, out):
    """The run's own callbacks: the learning rate's (plateau: first, so that a checkpoint
    holds the lr the next epoch uses); with a workdir, checkpoints (before the table: an
    epoch's row is printed once its checkpoint is on disk), TensorBoard logs and the
    report; the progress line and table."""
    earlier = progress.records if progress else ()
    callbacks = builders.lr_callbacks(config, steps.optimizer, earlier)
    if workdir is not None:
        callbacks.append(
            checkpoints.Checkpointer(
                workdir,
                config,
                steps.optimizer,
                config.keep_checkpoints,
                progress,
                steps.ema_variables,
            )
        )
        if config.tensorboard and importlib.util.find_spec(backends.SUMMARY_PACKAGE) is None:
            print(
                f"TensorBoard logs off: {backends.SUMMARY_PACKAGE} is not installed "
                f"(pip install {backends.SUMMARY_PACKAGE}).",
                file=out,
            )
        elif config.tensorboard:
            callbacks.append(
                TensorBoard(
                    os.path.join(workdir, TENSORBOARD_FOLDER),
                    names,
                    steps.grad_groups,
                    config.grad_log_every,
                    run.steps_per_epoch,
                )
            )
        callbacks.append(RunReport(os.path.join(workdir, REPORT_FILE), names, earlier))
    line = ProgressLine(run.steps_per_epoch, config.batch_size, out)
    return [*callbacks, line, ProgressTable(out, validation=config.val_split > 0)]


def model_file(config: TrainConfig) -> str:
    """The trained model's file name in the workdir: the network's name, e.g. resnet9.keras."""
    return f"{config.model}.keras"


def _split_validation(config: TrainConfig, images, labels):
    """((training images, labels), (validation images, labels) or None): `config.val_split`
    images held out, random and class-balanced, before any --train_limit subset is drawn."""
    if not config.val_split:
        return (images, labels), None
    if config.val_split >= len(labels):
        raise ConfigError(
            "val_split",
            config.val_split,
            f"it must leave training images: the training set has {len(labels)}.",
        )
    held_out = data.balanced_subset(labels, config.val_split, config.subset_seed)
    keep = np.setdiff1d(np.arange(len(labels)), held_out)
    return (images[keep], labels[keep]), (images[held_out], labels[held_out])


def _per_class_accuracy(confusion: np.ndarray) -> list[float | None]:
    """Share of each class's test images classified right (None for a class without any)."""
    totals = confusion.sum(axis=1)
    return [float(confusion[c, c] / n) if n else None for c, n in enumerate(totals)]


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


def _subset_record(limit: int | None, config: TrainConfig, labels: np.ndarray) -> dict | None:
    """How a --train_limit / --test_limit subset was drawn, and its images per class."""
    if limit is None:
        return None
    counts = np.bincount(labels, minlength=data.num_classes(config.dataset))
    return {
        "limit": limit,
        "method": "random, class-balanced",
        "seed": config.subset_seed,
        "per_class": counts.tolist(),
    }


def _save_model(model: keras.Model, path: str) -> None:
    partial = path + ".partial.keras"  # Keras insists on the .keras suffix
    model.save(partial)
    os.replace(partial, path)
