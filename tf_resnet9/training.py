"""One training run of the recipe: data -> input -> model -> compiled steps -> results."""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from typing import NamedTuple

import keras
import numpy as np

from tf_resnet9 import backends, data, hardware
from tf_resnet9.config import ConfigError, TrainConfig
from tf_resnet9.inputs import DeviceInput, EvalSet, HostInput, chunk_lengths, evaluate
from tf_resnet9.model import resnet9
from tf_resnet9.optimizer import NesterovSGD
from tf_resnet9.results import library_versions, write_json_atomic
from tf_resnet9.schedule import PiecewiseLinear
from tf_resnet9.trainer import Trainer, make_trainer

RESULTS_FILE = "results.json"
MODEL_FILE = "resnet9.keras"
TABLE_HEADER = "epoch        lr  train loss  train acc  test loss  test acc  epoch s  total s"


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message says at which epoch and step."""


def default_augment() -> str:
    """tf.data on TensorFlow, its own input path; on the device elsewhere (JAX has no tf.data)."""
    return "host" if keras.backend.backend() == "tensorflow" else "device"


def default_steps_per_call(augment_mode: str, device: hardware.Device, steps_per_epoch: int):
    """A whole epoch per compiled call on a GPU with device augmentation; else one step.

    Host batches arrive one at a time anyway, and XLA's CPU backend runs convolutions
    inside a loop ~70x slower than outside one (measured on ResNet9).
    """
    return steps_per_epoch if augment_mode == "device" and device.kind == "gpu" else 1


def build_trainer(config: TrainConfig, precision: str, schedule: PiecewiseLinear) -> Trainer:
    """ResNet9 with the recipe's optimizer following `schedule`, ready to compile."""
    model = resnet9(
        width=config.width, init=config.init, logit_scale=config.logit_scale, dtype=precision
    )
    optimizer = NesterovSGD(schedule, momentum=config.momentum, weight_decay=config.weight_decay)
    if precision == "mixed_float16":
        # fp16 gradients underflow without a loss scale; bf16 has float32's exponent range.
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return make_trainer(model, optimizer, jit=config.jit)


def warm_up(trainer: Trainer, make_input, eval_set: EvalSet) -> float:
    """Compiles everything a run executes on inputs of the real shapes, then forgets it.

    DAWNBench excludes compilation from the training time. `make_input()` builds a training
    input on stand-in data; one epoch of it runs the preprocessing and the per-epoch
    shuffling ops once, and every distinct shape of step call once, with its updates
    discarded: training starts from the initial weights.

    Returns:
        Seconds spent.
    """
    start = time.perf_counter()
    train_input = make_input()
    step_fn = train_input.step_fn(trainer)
    lengths = chunk_lengths(train_input.steps, train_input.steps_per_call)
    outputs, seen = [], set()
    for chunk, length in zip(train_input.epoch(), lengths):
        if length not in seen:
            seen.add(length)
            outputs.append(trainer.run_discarding_updates(step_fn, *chunk))
    backends.wait(outputs)
    evaluate(trainer, trainer.initial_state(), eval_set)
    return time.perf_counter() - start


class EpochTotals(NamedTuple):
    mean_loss: float
    correct: int
    first_nonfinite_step: int | None  # 1-based step of the epoch whose loss was NaN or inf


def run_epoch(trainer: Trainer, state, train_input) -> tuple[object, EpochTotals]:
    """One epoch of compiled calls; waits for the device only at the end, reading totals."""
    step_fn = train_input.step_fn(trainer)
    calls = []
    for chunk in train_input.epoch():
        state, totals = step_fn(state, *chunk)
        calls.append(totals)
    loss_sum, correct, steps_done, first_nonfinite = 0.0, 0, 0, None
    for totals, steps in zip(calls, chunk_lengths(train_input.steps, train_input.steps_per_call)):
        first = int(totals.first_nonfinite)
        if first >= 0 and first_nonfinite is None:
            first_nonfinite = steps_done + first + 1
        loss_sum += float(totals.loss_sum)
        correct += int(totals.correct)
        steps_done += steps
    return state, EpochTotals(loss_sum / steps_done, correct, first_nonfinite)


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
        workdir: If set, `results.json` and the trained model (`resnet9.keras`) are written
            there at the end, each atomically.
        out: Text stream for the progress table (default stdout).

    Returns:
        The results: config, per-epoch metrics, final test accuracy, timings, device, versions.

    Raises:
        ConfigError: a setting does not fit the data or the backend.
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
    augment_mode = config.augment or default_augment()
    if augment_mode == "host" and keras.backend.backend() != "tensorflow":
        raise ConfigError(
            "augment='host' is invalid on Keras' "
            f"{keras.backend.backend()} backend: the host pipeline is tf.data; use 'device'."
        )
    source = data.locate(data_dir)
    (x_train, y_train), (x_test, y_test) = data.read(source)
    x_train, y_train = x_train[: config.train_limit], y_train[: config.train_limit]
    x_test, y_test = x_test[: config.test_limit], y_test[: config.test_limit]
    if config.batch_size > len(x_train):
        raise ConfigError(
            f"batch_size={config.batch_size} is invalid: larger than the {len(x_train)} "
            "training images."
        )
    steps_per_epoch = len(x_train) // config.batch_size
    device = hardware.current_device()
    steps_per_call = min(
        config.steps_per_call or default_steps_per_call(augment_mode, device, steps_per_epoch),
        steps_per_epoch,
    )
    if device.kind == "cpu":
        print(
            f"No GPU found: training on the CPU ({device.name}), which is slow. For a quick "
            "check: --width 0.25 --epochs 2 --train_limit 4096.",
            file=out,
        )
    precision = config.precision or hardware.default_precision(device)
    print(
        f"data: {source} ({len(x_train)} train, {len(x_test)} test images); device: "
        f"{device.name}; backend: {keras.backend.backend()}; precision: {precision}; "
        f"augmentation: {augment_mode}; XLA: {'on' if config.jit else 'off'}",
        file=out,
    )

    keras.utils.set_random_seed(config.seed)
    schedule = PiecewiseLinear(*config.lr_knots, steps_per_epoch=steps_per_epoch)
    trainer = build_trainer(config, precision, schedule)
    input_type = DeviceInput if augment_mode == "device" else HostInput
    eval_batch_size = min(config.batch_size, len(x_test))
    compile_time = warm_up(
        trainer,
        lambda: input_type(
            np.zeros_like(x_train),
            np.zeros_like(y_train),
            config.batch_size,
            steps_per_call,
            config.seed,
        ),
        EvalSet.build(np.zeros_like(x_test), np.zeros_like(y_test), eval_batch_size),
    )

    # DAWNBench: the clock starts with the raw arrays in memory, before preprocessing.
    clock_start = time.perf_counter()
    train_input = input_type(x_train, y_train, config.batch_size, steps_per_call, config.seed)
    eval_set = EvalSet.build(x_test, y_test, eval_batch_size)
    state = trainer.initial_state()
    eval_time = 0.0
    records = []
    print(TABLE_HEADER, file=out, flush=True)
    for epoch in range(1, config.epochs + 1):
        epoch_start = time.perf_counter()
        state, totals = run_epoch(trainer, state, train_input)
        train_end = time.perf_counter()
        training_time = train_end - clock_start - eval_time  # earlier evaluations excluded
        if totals.first_nonfinite_step is not None:
            step = totals.first_nonfinite_step
            raise TrainingDiverged(
                f"the training loss became NaN or infinite at epoch {epoch}, step {step} of "
                f"{steps_per_epoch} (step {(epoch - 1) * steps_per_epoch + step} overall); "
                "stopped, no results written."
            )
        test_loss, test_acc = evaluate(trainer, state, eval_set)
        eval_time += time.perf_counter() - train_end
        records.append(
            {
                "epoch": epoch,
                "lr": float(schedule(epoch * steps_per_epoch - 1)),  # of the epoch's last step
                "train_loss": totals.mean_loss,
                "train_acc": totals.correct / (steps_per_epoch * config.batch_size),
                "test_loss": test_loss,
                "test_acc": test_acc,
                "epoch_time_s": train_end - epoch_start,
                "training_time_s": training_time,
            }
        )
        print(_table_row(records[-1]), file=out, flush=True)
    trainer.finish(state)

    final = records[-1]
    images_trained = config.epochs * steps_per_epoch * config.batch_size
    results = {
        "config": dataclasses.asdict(config)
        | {"precision": precision, "augment": augment_mode, "steps_per_call": steps_per_call},
        "data": {"source": str(source), "train_images": len(x_train), "test_images": len(x_test)},
        "steps_per_epoch": steps_per_epoch,
        "epochs": records,
        "test_accuracy": final["test_acc"],
        "compile_time_s": compile_time,
        "training_time_s": final["training_time_s"],
        "eval_time_s": eval_time,
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
        _save_model(trainer.model, os.path.join(workdir, MODEL_FILE))
        write_json_atomic(os.path.join(workdir, RESULTS_FILE), results)
    return results


def _table_row(record: dict) -> str:
    return (
        f"{record['epoch']:5d}  {record['lr']:8.4f}  {record['train_loss']:10.4f}  "
        f"{record['train_acc']:9.2%}  {record['test_loss']:9.4f}  {record['test_acc']:8.2%}  "
        f"{record['epoch_time_s']:7.1f}  {record['training_time_s']:7.1f}"
    )


def _save_model(model: keras.Model, path: str) -> None:
    partial = path + ".partial.keras"  # Keras insists on the .keras suffix
    model.save(partial)
    os.replace(partial, path)
