"""The epoch loop: compiled training calls, evaluation after every epoch, DAWNBench timing,
and Keras callbacks for everything else (progress, logging, checkpoints).

Callbacks follow Keras' protocol (`keras.callbacks.Callback`): `on_train_begin`,
`on_epoch_begin(epoch)`, `on_epoch_end(epoch, logs)` and `on_train_end(logs)`, with
0-based epochs as in `Model.fit`. The logs of an epoch are its record: "epoch" (1-based),
"lr", "train_loss", "train_acc", "test_loss", "test_acc", "epoch_time_s",
"training_time_s". The loop trains outside `Model.fit`, so callbacks see no batch events.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import NamedTuple

import keras

from tf_resnet9 import backends
from tf_resnet9.inputs import EvalSet, chunk_lengths, evaluate
from tf_resnet9.steps import CompiledSteps


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message says at which epoch and step."""


class EpochTotals(NamedTuple):
    mean_loss: float
    correct: int
    first_nonfinite_step: int | None  # 1-based step of the epoch whose loss was NaN or inf


class Fit(NamedTuple):
    """What `fit` returns: the per-epoch records and the DAWNBench times."""

    records: list[dict]
    training_time_s: float  # preprocessing and training; evaluation excluded
    eval_time_s: float


def warm_up(steps: CompiledSteps, make_input: Callable, eval_set: EvalSet) -> float:
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
    step_fn = train_input.step_fn(steps)
    lengths = chunk_lengths(train_input.steps, train_input.steps_per_call)
    outputs, seen = [], set()
    for chunk, length in zip(train_input.epoch(), lengths):
        if length not in seen:
            seen.add(length)
            outputs.append(steps.run_discarding_updates(step_fn, *chunk))
    backends.wait(outputs)
    evaluate(steps, steps.initial_state(), eval_set)
    return time.perf_counter() - start


def run_epoch(steps: CompiledSteps, state, train_input) -> tuple[object, EpochTotals]:
    """One epoch of compiled calls; waits for the device only at the end, reading totals."""
    step_fn = train_input.step_fn(steps)
    calls = []
    for chunk in train_input.epoch():
        state, totals = step_fn(state, *chunk)
        calls.append(totals)
    loss_sum, correct, steps_done, first_nonfinite = 0.0, 0, 0, None
    for totals, count in zip(calls, chunk_lengths(train_input.steps, train_input.steps_per_call)):
        first = int(totals.first_nonfinite)
        if first >= 0 and first_nonfinite is None:
            first_nonfinite = steps_done + first + 1
        loss_sum += float(totals.loss_sum)
        correct += int(totals.correct)
        steps_done += count
    return state, EpochTotals(loss_sum / steps_done, correct, first_nonfinite)


def fit(
    steps: CompiledSteps,
    make_inputs: Callable[[], tuple[object, EvalSet]],
    epochs: int,
    schedule: keras.optimizers.schedules.LearningRateSchedule,
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> Fit:
    """Trains for `epochs`, evaluating after each, and leaves the weights in the model.

    Args:
        steps: The compiled steps, their variables holding the initial weights.
        make_inputs: Returns (training input, test set); called once, after the clock
            starts, because DAWNBench times preprocessing (moving the data to the device,
            padding) as part of training.
        epochs: Epochs to train.
        schedule: The optimizer's learning rate, for the records.
        callbacks: Keras callbacks, called with every epoch's record.

    Raises:
        TrainingDiverged: the loss of a step became NaN or infinite.
    """
    callback_list = keras.callbacks.CallbackList(list(callbacks), model=steps.model)
    clock_start = time.perf_counter()
    train_input, eval_set = make_inputs()
    steps_per_epoch = train_input.steps
    state = steps.initial_state()
    eval_time, records = 0.0, []
    callback_list.on_train_begin()
    for epoch in range(1, epochs + 1):
        callback_list.on_epoch_begin(epoch - 1)
        epoch_start = time.perf_counter()
        state, totals = run_epoch(steps, state, train_input)
        train_end = time.perf_counter()
        if totals.first_nonfinite_step is not None:
            step = totals.first_nonfinite_step
            raise TrainingDiverged(
                f"the training loss became NaN or infinite at epoch {epoch}, step {step} of "
                f"{steps_per_epoch} (step {(epoch - 1) * steps_per_epoch + step} overall); "
                "stopped, no results written."
            )
        test_loss, test_acc = evaluate(steps, state, eval_set)
        records.append(
            {
                "epoch": epoch,
                "lr": float(schedule(epoch * steps_per_epoch - 1)),  # of the epoch's last step
                "train_loss": totals.mean_loss,
                "train_acc": totals.correct / (steps_per_epoch * train_input.batch_size),
                "test_loss": test_loss,
                "test_acc": test_acc,
                "epoch_time_s": train_end - epoch_start,
                # Since the clock started, earlier evaluations excluded.
                "training_time_s": train_end - clock_start - eval_time,
            }
        )
        eval_time += time.perf_counter() - train_end
        callback_list.on_epoch_end(epoch - 1, dict(records[-1]))
    steps.finish(state)
    callback_list.on_train_end(dict(records[-1]))
    return Fit(records, records[-1]["training_time_s"], eval_time)
