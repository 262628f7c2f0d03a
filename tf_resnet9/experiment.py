"""One training run of the recipe: data -> input -> model -> epoch loop -> results."""

from __future__ import annotations

import dataclasses
import os
import sys
import time

import keras
import numpy as np

from tf_resnet9 import data, loop, settings
from tf_resnet9.callbacks import ProgressTable
from tf_resnet9.config import TrainConfig
from tf_resnet9.inputs import DeviceInput, EvalSet, HostInput
from tf_resnet9.model import resnet9
from tf_resnet9.optimizer import NesterovSGD
from tf_resnet9.results import library_versions, write_json_atomic
from tf_resnet9.schedule import PiecewiseLinear
from tf_resnet9.steps import CompiledSteps
from tf_resnet9.workdir import make_workdir, remove_if_empty

RESULTS_FILE = "results.json"
MODEL_FILE = "resnet9.keras"
QUICK_CHECK = "--width 0.25 --epochs 2 --train_limit 4096"


def build_steps(config: TrainConfig, precision: str, schedule: PiecewiseLinear) -> CompiledSteps:
    """ResNet9 with the recipe's optimizer following `schedule`, compiled."""
    model = resnet9(
        width=config.width, init=config.init, logit_scale=config.logit_scale, dtype=precision
    )
    optimizer = NesterovSGD(schedule, momentum=config.momentum, weight_decay=config.weight_decay)
    if precision == "mixed_float16":
        # fp16 gradients underflow without a loss scale; bf16 has float32's exponent range.
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return CompiledSteps(model, optimizer, jit=config.jit)


def train_and_evaluate(
    config: TrainConfig,
    data_dir: str | os.PathLike | None = None,
    workdir: str | os.PathLike | None = None,
    out=None,
    callbacks: tuple[keras.callbacks.Callback, ...] = (),
) -> dict:
    """Trains ResNet9 by the recipe, evaluating on the test set after every epoch.

    Args:
        config: The run's settings.
        data_dir: Where CIFAR-10 is (see `tf_resnet9.load_cifar10`).
        workdir: If set, `results.json` and the trained model (`resnet9.keras`) are written
            there at the end, each atomically. Created at the start (so that a bad path
            fails before training) and removed again if the run fails and left it empty.
        out: Text stream for progress (default stdout).
        callbacks: Keras callbacks called by the epoch loop (`tf_resnet9.loop`), after the
            progress table.

    Returns:
        The results: config, per-epoch metrics, final test accuracy, timings, device, versions.

    Raises:
        ConfigError: a setting does not fit the data or the backend.
        DatasetError: CIFAR-10 is missing or corrupt.
        TrainingDiverged: the loss became NaN or infinite.
    """
    wall_start = time.perf_counter()
    out = out or sys.stdout
    created = make_workdir(workdir)
    try:
        results, model = _run(config, data_dir, out, callbacks, wall_start)
        if workdir is not None:
            _save_model(model, os.path.join(workdir, MODEL_FILE))
            write_json_atomic(os.path.join(workdir, RESULTS_FILE), results)
    except BaseException:
        remove_if_empty(created)
        raise
    return results


def _run(config, data_dir, out, callbacks, wall_start) -> tuple[dict, keras.Model]:
    source = data.locate(data_dir)
    (x_train, y_train), (x_test, y_test) = data.read(source)
    train_subset = data.balanced_subset(y_train, config.train_limit, config.subset_seed)
    test_subset = data.balanced_subset(y_test, config.test_limit, config.subset_seed)
    x_train, y_train = x_train[train_subset], y_train[train_subset]
    x_test, y_test = x_test[test_subset], y_test[test_subset]
    run = settings.resolve(config, len(x_train), len(x_test))
    if run.device.kind == "cpu":
        print(cpu_warning(config, run.device.name), file=out)
    print(
        f"data: {source} ({len(x_train)} train, {len(x_test)} test images); device: "
        f"{run.device.name}; backend: {run.backend}; precision: {run.precision}; "
        f"augmentation: {run.augment}; XLA: {'on' if config.jit else 'off'}",
        file=out,
    )

    keras.utils.set_random_seed(config.seed)
    schedule = PiecewiseLinear(*config.lr_knots, steps_per_epoch=run.steps_per_epoch)
    steps = build_steps(config, run.precision, schedule)
    input_type = DeviceInput if run.augment == "device" else HostInput

    def make_train_input(images, labels):
        return input_type(images, labels, config.batch_size, run.steps_per_call, config.seed)

    print(
        f"compiling the training and evaluation steps{' with XLA' if config.jit else ''} "
        "(once per run; about a minute on a CPU) ...",
        file=out,
        flush=True,
    )
    compile_time = loop.warm_up(
        steps,
        lambda: make_train_input(np.zeros_like(x_train), np.zeros_like(y_train)),
        EvalSet.build(np.zeros_like(x_test), np.zeros_like(y_test), run.eval_batch_size),
    )
    print(f"compiled in {compile_time:.1f} s; training", file=out, flush=True)
    fitted = loop.fit(
        steps,
        lambda: (
            make_train_input(x_train, y_train),
            EvalSet.build(x_test, y_test, run.eval_batch_size),
        ),
        config.epochs,
        schedule,
        (ProgressTable(out), *callbacks),
    )

    images_trained = config.epochs * run.steps_per_epoch * config.batch_size
    results = {
        "config": dataclasses.asdict(config) | run.record(),
        "data": {
            "source": str(source),
            "train_images": len(x_train),
            "test_images": len(x_test),
            "train_subset": _subset_record(config.train_limit, config.subset_seed, y_train),
            "test_subset": _subset_record(config.test_limit, config.subset_seed, y_test),
        },
        "steps_per_epoch": run.steps_per_epoch,
        "epochs": fitted.records,
        "test_accuracy": fitted.records[-1]["test_acc"],
        "compile_time_s": compile_time,
        "training_time_s": fitted.training_time_s,
        "eval_time_s": fitted.eval_time_s,
        "wall_time_s": time.perf_counter() - wall_start,
        "images_per_s": images_trained / fitted.training_time_s,
        "device": dataclasses.asdict(run.device),
        "versions": library_versions(),
        "seed": config.seed,
    }
    print(
        f"test accuracy {results['test_accuracy']:.2%} | training "
        f"{results['training_time_s']:.1f} s (DAWNBench: preprocessing + training, evaluation "
        f"excluded) | compile {compile_time:.1f} s | wall {results['wall_time_s']:.1f} s",
        file=out,
    )
    return results, steps.model


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


def _subset_record(limit: int | None, seed: int, labels: np.ndarray) -> dict | None:
    """How a --train_limit / --test_limit subset was drawn, and its images per class."""
    if limit is None:
        return None
    counts = np.bincount(labels, minlength=data.NUM_CLASSES)
    return {
        "limit": limit,
        "method": "random, class-balanced",
        "seed": seed,
        "per_class": counts.tolist(),
    }


def _save_model(model: keras.Model, path: str) -> None:
    partial = path + ".partial.keras"  # Keras insists on the .keras suffix
    model.save(partial)
    os.replace(partial, path)
