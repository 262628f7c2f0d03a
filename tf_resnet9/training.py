"""One training run of the recipe: data -> pipeline -> model -> fit -> results."""

from __future__ import annotations

import dataclasses
import os
import sys
import time

import keras
import numpy as np

from tf_resnet9 import data, hardware, pipeline
from tf_resnet9.callbacks import DawnbenchClock, EpochLog, NonFiniteLossGuard, wait_for_device
from tf_resnet9.config import ConfigError, TrainConfig
from tf_resnet9.model import resnet9
from tf_resnet9.optimizer import NesterovSGD
from tf_resnet9.results import library_versions, write_json_atomic
from tf_resnet9.schedule import PiecewiseLinear

RESULTS_FILE = "results.json"


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message says at which epoch and step."""


def compile_model(config: TrainConfig, precision: str, schedule: PiecewiseLinear) -> keras.Model:
    """ResNet9 compiled with the recipe's loss and optimizer, following `schedule`."""
    model = resnet9(
        width=config.width, init=config.init, logit_scale=config.logit_scale, dtype=precision
    )
    optimizer = NesterovSGD(schedule, momentum=config.momentum, weight_decay=config.weight_decay)
    if precision == "mixed_float16":
        # fp16 gradients underflow without a loss scale; bf16 has float32's exponent range.
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="acc")],
        jit_compile=config.jit,
    )
    return model


def warm_up(model: keras.Model, batch_size: int, test_count: int, eval_batch_size: int) -> float:
    """Compiles the train and eval steps on random data, then restores the initial state.

    DAWNBench excludes compilation from the training time. The random data goes through the
    same pipeline with the same shapes, so the real run reuses the compiled steps; the test
    set's last partial batch is a second shape and is compiled here too.

    Returns:
        Seconds spent compiling and warming up.
    """
    start = time.perf_counter()
    model.optimizer.build(model.trainable_variables)
    variables = list(model.variables) + list(model.optimizer.variables)
    initial = [keras.ops.convert_to_numpy(v) for v in variables]
    rng = np.random.default_rng(0)
    fake_test = eval_batch_size + test_count % eval_batch_size
    images = rng.integers(0, 256, (max(batch_size, fake_test), 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, len(images), dtype=np.int32)
    model.fit(
        pipeline.train_dataset(images[:batch_size], labels[:batch_size], batch_size, seed=0),
        validation_data=pipeline.eval_dataset(
            images[:fake_test], labels[:fake_test], eval_batch_size
        ),
        epochs=1,
        shuffle=False,
        verbose=0,
    )
    for variable, value in zip(variables, initial):
        variable.assign(value)
    wait_for_device(model)
    return time.perf_counter() - start


def train_and_evaluate(
    config: TrainConfig,
    data_dir: str | os.PathLike | None = None,
    workdir: str | os.PathLike | None = None,
    out=None,
) -> dict:
    """Trains ResNet9 by the recipe, evaluating on the test set after every epoch.

    Args:
        config: The run's settings.
        data_dir: Where CIFAR-10 is (see `tf_resnet9.load_cifar10`).
        workdir: If set, `results.json` is written there, atomically, at the end.
        out: Text stream for the progress table (default stdout).

    Returns:
        The results: config, per-epoch metrics, final test accuracy, timings, device, versions.

    Raises:
        ConfigError: a setting does not fit the data (e.g. batch larger than the data).
        DatasetError: CIFAR-10 is missing or corrupt.
        TrainingDiverged: the loss became NaN or infinite.
    """
    wall_start = time.perf_counter()
    out = out or sys.stdout
    if workdir is not None:
        try:  # fail now, not after training
            os.makedirs(workdir, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"workdir={os.fspath(workdir)!r} cannot be created: {e}.") from None
    source = data.locate(data_dir)
    (x_train, y_train), (x_test, y_test) = data.read(source)
    device = hardware.current_device()
    if device.kind == "cpu":
        print(
            f"No GPU found: training on the CPU ({device.name}), which is slow. For a quick "
            "check: --width 0.25 --epochs 2 --train_limit 4096.",
            file=out,
        )
    precision = config.precision or hardware.default_precision(device)
    x_train, y_train = x_train[: config.train_limit], y_train[: config.train_limit]
    x_test, y_test = x_test[: config.test_limit], y_test[: config.test_limit]
    if config.batch_size > len(x_train):
        raise ConfigError(
            f"batch_size={config.batch_size} is invalid: larger than the {len(x_train)} "
            "training images."
        )
    steps_per_epoch = len(x_train) // config.batch_size
    eval_batch_size = min(config.batch_size, len(x_test))
    print(
        f"data: {source} ({len(x_train)} train, {len(x_test)} test images); device: "
        f"{device.name}; precision: {precision}; XLA: {'on' if config.jit else 'off'}",
        file=out,
    )

    keras.utils.set_random_seed(config.seed)
    schedule = PiecewiseLinear(*config.lr_knots, steps_per_epoch=steps_per_epoch)
    model = compile_model(config, precision, schedule)
    compile_time = warm_up(model, config.batch_size, len(x_test), eval_batch_size)

    # DAWNBench: the clock starts with the raw arrays in memory, before preprocessing.
    clock = DawnbenchClock(start=time.perf_counter())
    train_batches = pipeline.train_dataset(x_train, y_train, config.batch_size, config.seed)
    test_batches = pipeline.eval_dataset(x_test, y_test, eval_batch_size)
    guard = NonFiniteLossGuard(steps_per_epoch)
    log = EpochLog(
        clock,
        lr_of_epoch=lambda epoch: float(schedule(epoch * steps_per_epoch - 1)),
        steps_per_epoch=steps_per_epoch,
        out=out,
    )
    model.fit(
        train_batches,
        epochs=config.epochs,
        validation_data=test_batches,
        callbacks=[clock, guard, log],
        shuffle=False,  # the pipeline shuffles
        verbose=0,
    )
    if guard.failure:
        raise TrainingDiverged(f"{guard.failure}; stopped, no results written.")

    final = log.records[-1]
    images_trained = config.epochs * steps_per_epoch * config.batch_size
    results = {
        "config": dataclasses.asdict(config) | {"precision": precision},
        "data": {"source": str(source), "train_images": len(x_train), "test_images": len(x_test)},
        "steps_per_epoch": steps_per_epoch,
        "epochs": log.records,
        "test_accuracy": final["test_acc"],
        "compile_time_s": compile_time,
        "training_time_s": final["training_time_s"],
        "eval_time_s": clock.eval_time,
        "wall_time_s": time.perf_counter() - wall_start,
        "images_per_s": images_trained / final["training_time_s"],
        "device": dataclasses.asdict(device),
        "versions": library_versions(),
        "seed": config.seed,
    }
    print(
        f"test accuracy {results['test_accuracy']:.2%} | training "
        f"{results['training_time_s']:.1f} s (DAWNBench: preprocessing + training, evaluation "
        f"excluded) | compile {compile_time:.1f} s | wall {results['wall_time_s']:.1f} s",
        file=out,
    )
    if workdir is not None:
        write_json_atomic(os.path.join(workdir, RESULTS_FILE), results)
    return results
