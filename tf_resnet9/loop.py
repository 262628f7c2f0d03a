"""The epoch loop: compiled training calls, evaluation after every epoch, DAWNBench timing,
and Keras callbacks for everything else (progress, logging, checkpoints).

Callbacks follow Keras' protocol (`keras.callbacks.Callback`): `on_train_begin`,
`on_epoch_begin(epoch)`, `on_epoch_end(epoch, logs)` and `on_train_end(logs)`, with
0-based epochs as in `Model.fit`. The logs of an epoch are its record ("epoch", 1-based;
"lr", "train_loss", "train_acc", "test_loss", "test_acc", "test_top5_acc", the same three
with "val_" for a validation set, "epoch_time_s", "training_time_s") and, as NumPy arrays,
"confusion_matrix" (of the test set, rows the true class) and "grad_norms" (steps, layer
groups), and the evaluation and callback times so far ("eval_time_s", "hooks_time_s").
When a callback runs, the model's and the optimizer's variables hold the epoch's weights;
what a callback changes in them (the plateau schedule cuts the learning rate) is what the
next epoch trains with. The loop trains outside `Model.fit`:
callbacks get one batch event per compiled call, `on_train_batch_end(batch, logs)` with
the index of the call's last step and logs {"steps": steps of the epoch dispatched so far}:
on a GPU, where an epoch is one call, there is none within an epoch. The time callbacks
take at the end of an epoch is excluded from the training time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import NamedTuple

import keras
import numpy as np

from tf_resnet9 import backends
from tf_resnet9.inputs import EvalSet, Evaluation, chunk_lengths, evaluate
from tf_resnet9.steps import CompiledSteps

# What an epoch's logs hold besides its record.
EXTRA_LOGS = ("confusion_matrix", "grad_norms", "eval_time_s", "hooks_time_s")


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message says at which epoch and step."""


class EpochTotals(NamedTuple):
    mean_loss: float
    correct: int
    first_nonfinite_step: int | None  # 1-based step of the epoch whose loss was NaN or inf
    grad_norms: np.ndarray  # (steps, layer groups)


class Progress(NamedTuple):
    """How far a run got: what a resumed run starts from (see `tf_resnet9.checkpoints`)."""

    records: list[dict]  # one per epoch done
    eval_time_s: float  # evaluation time so far
    hooks_time_s: float  # time in callbacks so far


class Fit(NamedTuple):
    """What `fit` returns: the per-epoch records, the DAWNBench times, the last evaluation."""

    records: list[dict]
    training_time_s: float  # preprocessing and training; evaluation and callbacks excluded
    eval_time_s: float
    hooks_time_s: float
    evaluation: Evaluation


def warm_up(steps: CompiledSteps, make_input: Callable, eval_sets: Sequence[EvalSet]) -> float:
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
    for chunk, length in zip(train_input.epoch(1), lengths):
        if length not in seen:
            seen.add(length)
            outputs.append(steps.run_discarding_updates(step_fn, *chunk))
    backends.wait(outputs)
    for eval_set in eval_sets:
        evaluate(steps, steps.initial_state(), eval_set)
    return time.perf_counter() - start


def run_epoch(
    steps: CompiledSteps, state, train_input, number: int = 1, on_call=None
) -> tuple[object, EpochTotals]:
    """Epoch `number` in compiled calls; waits for the device only at the end, for totals.

    Args:
        on_call: Called with the steps dispatched so far after each call. It must not read
            the call's results: that would make the host wait for the device.
    """
    step_fn = train_input.step_fn(steps)
    calls, dispatched = [], 0
    for chunk, count in zip(
        train_input.epoch(number), chunk_lengths(train_input.steps, train_input.steps_per_call)
    ):
        state, totals = step_fn(state, *chunk)
        calls.append(totals)
        dispatched += count
        if on_call is not None:
            on_call(dispatched)
    loss_sum, correct, steps_done, first_nonfinite = 0.0, 0, 0, None
    for totals, count in zip(calls, chunk_lengths(train_input.steps, train_input.steps_per_call)):
        first = int(totals.first_nonfinite)
        if first >= 0 and first_nonfinite is None:
            first_nonfinite = steps_done + first + 1
        loss_sum += float(totals.loss_sum)
        correct += int(totals.correct)
        steps_done += count
    norms = np.concatenate([keras.ops.convert_to_numpy(totals.grad_norms) for totals in calls])
    return state, EpochTotals(loss_sum / steps_done, correct, first_nonfinite, norms)


def fit(
    steps: CompiledSteps,
    make_inputs: Callable[[], tuple[object, dict[str, EvalSet]]],
    epochs: int,
    lr_of_update: Callable[[int], float],
    callbacks: Sequence[keras.callbacks.Callback] = (),
    progress: Progress | None = None,
) -> Fit:
    """Trains up to epoch `epochs`, evaluating after each, and leaves the weights in the model.

    Args:
        steps: The compiled steps, their variables holding the weights to start from.
        make_inputs: Returns (training input, {"test": test set} and, if there is one,
            "val": the validation set); called once, after the clock starts, because
            DAWNBench times preprocessing (moving the data to the device, padding) as part
            of training.
        epochs: The last epoch to train.
        lr_of_update: The learning rate of an update (0-based), for the records.
        callbacks: Keras callbacks, called with every epoch's record.
        progress: Where a resumed run starts: after the epochs of its records, with their
            times. None: from epoch 1.

    Raises:
        TrainingDiverged: the loss of a step became NaN or infinite.
    """
    progress = progress or Progress([], 0.0, 0.0)
    records = [dict(record) for record in progress.records]
    done_training_time = records[-1]["training_time_s"] if records else 0.0
    callback_list = keras.callbacks.CallbackList(list(callbacks), model=steps.model)
    clock_start = time.perf_counter()
    train_input, eval_sets = make_inputs()
    steps_per_epoch = train_input.steps
    state = steps.initial_state()
    eval_time, hooks_time = progress.eval_time_s, progress.hooks_time_s
    excluded = 0.0  # evaluation and callbacks since the clock started
    evaluation = None
    callback_list.on_train_begin()
    for epoch in range(len(records) + 1, epochs + 1):
        hooks_start = time.perf_counter()
        callback_list.on_epoch_begin(epoch - 1)
        epoch_start = time.perf_counter()
        excluded += epoch_start - hooks_start
        state, totals = run_epoch(
            steps,
            state,
            train_input,
            epoch,
            lambda done: callback_list.on_train_batch_end(done - 1, {"steps": done}),
        )
        train_end = time.perf_counter()
        if totals.first_nonfinite_step is not None:
            step = totals.first_nonfinite_step
            raise TrainingDiverged(
                f"the training loss became NaN or infinite at epoch {epoch}, step {step} of "
                f"{steps_per_epoch} (step {(epoch - 1) * steps_per_epoch + step} overall); "
                "stopped, no results written."
            )
        evaluations = {name: evaluate(steps, state, s) for name, s in eval_sets.items()}
        evaluation = evaluations["test"]
        steps.finish(state)  # the callbacks see this epoch's weights in the variables
        record = {
            "epoch": epoch,
            "lr": lr_of_update(epoch * steps_per_epoch - 1),  # of the epoch's last step
            "train_loss": totals.mean_loss,
            "train_acc": totals.correct / (steps_per_epoch * train_input.batch_size),
        }
        for name, result in evaluations.items():
            record |= {
                f"{name}_loss": result.mean_loss,
                f"{name}_acc": result.accuracy,
                f"{name}_top5_acc": result.top5_accuracy,
            }
        record["epoch_time_s"] = train_end - epoch_start
        record["training_time_s"] = done_training_time + train_end - clock_start - excluded
        records.append(record)
        hooks_start = time.perf_counter()
        eval_time += hooks_start - train_end
        logs = records[-1] | {
            "confusion_matrix": evaluation.confusion,
            "grad_norms": totals.grad_norms,
            "eval_time_s": eval_time,
            "hooks_time_s": hooks_time,
        }
        callback_list.on_epoch_end(epoch - 1, logs)
        state = steps.initial_state()  # the variables, as the callbacks left them
        hooks_time += time.perf_counter() - hooks_start
        excluded += time.perf_counter() - train_end
    steps.finish(state)
    if evaluation is None:
        raise ValueError(f"epochs={epochs} is invalid: the run already has {len(records)}.")
    callback_list.on_train_end(dict(records[-1]))
    return Fit(records, records[-1]["training_time_s"], eval_time, hooks_time, evaluation)
