"""The epoch loop: compiled training calls, evaluation after every epoch, DAWNBench timing,
and Keras callbacks for everything else (progress, logging, checkpoints).

One state passes from call to call and from epoch to epoch (Page's `train_epoch(state,
...)`, flax's `TrainState`): the compiled calls consume it and return the next, evaluation
reads it, and the callbacks read it by name (`EpochEnd.arrays`). The Keras variables are
written once, when training ends (`Lanes.finish`): a saved model needs them; the epochs do
not. Each step's learning rate is an input of its call, from the run's `LearningRate`,
which sees every epoch's record before the next epoch starts (the plateau rule).

Callbacks follow Keras' protocol (`keras.callbacks.Callback`): `on_train_begin`,
`on_epoch_begin(epoch)`, `on_epoch_end(epoch, logs)` and `on_train_end(logs)`, with
0-based epochs as in `Model.fit`. The logs of an epoch are its record's figures
(`tf_resnet9.training.records.EpochRecord`: "lr", "train_loss", "test_acc", ...) and,
under `EpochEnd.KEY`, the record itself with the confusion matrix, the gradient norms, the
evaluation and callback times so far and the state's arrays (`EpochEnd`). The loop trains
outside `Model.fit`: callbacks get one batch event per compiled call,
`on_train_batch_end(batch, logs)` with the index of the call's last step and logs
{"steps": steps of the epoch dispatched so far}: on a GPU, where an epoch is one call,
there is none within an epoch. The time callbacks take is excluded from the training time.

The steps may train several runs at once (lanes: seeds, `tf_resnet9.training.lanes`): the
loop unstacks their metrics and states and gives each lane its own learning rate, records,
evaluation and callbacks; one run is the one-lane case.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from typing import NamedTuple, Protocol

import keras
import numpy as np
from keras import ops

from tf_resnet9 import backends
from tf_resnet9.data.inputs import TrainInput, chunk_lengths
from tf_resnet9.errors import TrainingDiverged
from tf_resnet9.training import evaluation
from tf_resnet9.training.evaluation import EvalSet
from tf_resnet9.training.lanes import Lanes
from tf_resnet9.training.records import EpochEnd, EpochRecord, Progress
from tf_resnet9.training.schedules import LearningRate
from tf_resnet9.training.stopwatch import Stopwatch


class Trainable(Protocol):
    """What `fit` trains (`tf_resnet9.build.Training`)."""

    steps: Lanes
    learning_rates: Sequence[LearningRate]  # each lane's
    updates: int  # the run's: its last epoch stops part-way where they end within it

    def inputs(self) -> tuple[TrainInput, dict[str, EvalSet]]:
        """(training input, {"test": ..., and "val": ... with a validation set}), placed
        where the steps read them; built after the clock starts (DAWNBench times the
        preprocessing: moving the data to the device, padding)."""


class EpochTotals(NamedTuple):
    mean_loss: float
    correct: int
    first_nonfinite_step: int | None  # 1-based step of the epoch whose loss was NaN or inf
    grad_norms: np.ndarray  # (steps, layer groups)


class Fit(NamedTuple):
    """What `fit` returns per lane: the per-epoch records, the DAWNBench times, the last
    evaluation."""

    records: tuple[EpochRecord, ...]
    training_time_s: float  # preprocessing and training; evaluation and callbacks excluded
    eval_time_s: float
    hooks_time_s: float
    confusion: np.ndarray  # the test set's, after the last epoch


def epoch_steps(number: int, steps_per_epoch: int, updates: int) -> int:
    """The steps of epoch `number` of a run of `updates`: all, but in a last epoch that the
    run ends within (a fractional number of epochs)."""
    return min(steps_per_epoch, updates - (number - 1) * steps_per_epoch)


def warm_up(
    steps: Lanes,
    train_input: TrainInput,
    eval_sets: Sequence[EvalSet],
    state=None,
    last_epoch_steps: int | None = None,
) -> float:
    """Compiles everything a run executes on inputs of the real shapes, then forgets it.

    DAWNBench excludes compilation from the training time. `train_input` is a training input
    on stand-in data; one epoch of it runs the preprocessing and the per-epoch shuffling
    ops once, and every distinct shape of step call once, with its updates discarded:
    training starts from the weights it had. A last epoch of `last_epoch_steps` (a run
    ending part-way through one) may call a shape of its own: it is compiled too.

    Returns:
        Seconds spent.
    """
    start = time.perf_counter()
    train = steps.train_fn(train_input.batches)
    outputs, seen = [], set()
    for count in dict.fromkeys((train_input.steps, last_epoch_steps or train_input.steps)):
        lengths = chunk_lengths(count, train_input.steps_per_call)
        for chunk, length in zip(train_input.epoch(1, count), lengths):
            if length not in seen:
                seen.add(length)
                rates = steps.stack([np.zeros(length, np.float32)] * len(steps.lanes))
                position = (ops.convert_to_tensor(0, "int32"), rates)
                outputs.append(steps.run_discarding_updates(train, position, chunk))
    backends.wait(outputs)
    for eval_set in eval_sets:
        evaluation.evaluate_lanes(steps, state or steps.initial_state(), eval_set)
    return time.perf_counter() - start


def run_epoch(
    training: Trainable, state, train_input: TrainInput, number: int = 1
) -> tuple[object, list[EpochTotals]]:
    """Trains epoch `number` and waits for the device: (state, each lane's totals). For the
    benchmarks and probes, which time epochs; `fit` is the run's loop."""
    steps = training.steps
    state, calls = _dispatch(steps, state, train_input, training.learning_rates, number)
    per_call = [(steps.unstack(metrics), count) for metrics, count in calls]
    lanes = range(len(steps.lanes))
    return state, [
        epoch_totals([(metrics[k], count) for metrics, count in per_call]) for k in lanes
    ]


def first_call(training: Trainable, train_input: TrainInput) -> tuple[tuple, tuple]:
    """(position, chunk) of epoch 1's first compiled call, as `fit` makes them: for reading
    the compiled program (`CompiledSteps.train_fn(...).program(state, position, chunk)`)."""
    count = chunk_lengths(train_input.steps, train_input.steps_per_call)[0]
    rates = training.steps.stack([rate.lr_at(np.arange(count)) for rate in training.learning_rates])
    return (ops.convert_to_tensor(0, "int32"), rates), next(iter(train_input.epoch(1)))


def _dispatch(
    steps: Lanes,
    state,
    train_input: TrainInput,
    learning_rates: Sequence[LearningRate],
    number: int,
    on_call=None,
    count: int | None = None,
):
    """Dispatches epoch `number` in compiled calls, each lane at its learning rates; does
    not wait for the device.

    Args:
        on_call: Called with the steps dispatched so far after each call. It must not read
            the call's results: that would make the host wait for the device.
        count: The epoch's first steps to train (`epoch_steps`); None: all.

    Returns:
        (state, [(CallMetrics, steps of the call)]).
    """
    train = steps.train_fn(train_input.batches)
    count = train_input.steps if count is None else count
    lengths = chunk_lengths(count, train_input.steps_per_call)
    first_update = (number - 1) * train_input.steps
    calls, done = [], 0
    for chunk, length in zip(train_input.epoch(number, count), lengths):
        updates = np.arange(first_update + done, first_update + done + length)
        rates = steps.stack([rate.lr_at(updates) for rate in learning_rates])
        state, totals = train(state, (ops.convert_to_tensor(done, "int32"), rates), chunk)
        calls.append((totals, length))
        done += length
        if on_call is not None:
            on_call(done)
    return state, calls


def epoch_totals(calls) -> EpochTotals:
    """The epoch's totals from its calls' metrics (of one lane); waits for the device."""
    loss_sum, correct, steps_done, first_nonfinite = 0.0, 0, 0, None
    for totals, count in calls:
        first = int(totals.first_nonfinite)
        if first >= 0 and first_nonfinite is None:
            first_nonfinite = steps_done + first + 1
        loss_sum += float(totals.loss_sum)
        correct += int(totals.correct)
        steps_done += count
    norms = np.concatenate([ops.convert_to_numpy(totals.grad_norms) for totals, _ in calls])
    return EpochTotals(loss_sum / steps_done, correct, first_nonfinite, norms)


def fit(
    training: Trainable,
    state,
    progress: Sequence[Progress],
    callbacks: Sequence[Sequence[keras.callbacks.Callback]],
    names: Sequence[str] | None = None,
) -> list[Fit]:
    """Trains every lane of `training.steps` from `state` for `training.updates` updates,
    epoch by epoch (the last perhaps part-way), evaluating after each epoch, and leaves the
    last state in the lanes' models. The DAWNBench rule: the clock runs from before the
    training set is prepared to the end of the last epoch's training steps, and stops for
    evaluation and callbacks.

    Args:
        training: The steps, their learning rates, the epochs and the inputs.
        state: The state to start from (`steps.initial_state()`, or a checkpoint's).
        progress: Each lane's epochs done so far, with their times (all at one epoch).
        callbacks: Each lane's Keras callbacks, called with its records.
        names: Each lane's name, starting the messages of `TrainingDiverged` (e.g.
            "seed 3"); None for one lane.

    Returns:
        Each lane's `Fit`.

    Raises:
        TrainingDiverged: a training loss, or an evaluation's loss or accuracy, became NaN
            or infinite; no callback sees that epoch.
    """
    steps = training.steps
    done = len(progress[0].records)
    if any(len(p.records) != done for p in progress):
        raise ValueError("the lanes resume from different epochs: they train together.")
    lists = [
        keras.callbacks.CallbackList(list(lane_callbacks), model=lane.model)
        for lane_callbacks, lane in zip(callbacks, steps.lanes)
    ]
    clock = Stopwatch(progress[0].training_time_s)
    inputs = training.inputs()
    clock.lap(counts=True)  # preprocessing
    steps_per_epoch = inputs[0].steps
    epochs = -(-training.updates // steps_per_epoch)
    if epochs <= done:
        raise ValueError(f"epochs={epochs} is invalid: the run has that many already.")
    excluded = {"eval": progress[0].eval_time_s, "hooks": progress[0].hooks_time_s}
    epoch = _Epoch(training, *inputs, lists, clock, excluded, names or [""] * len(steps.lanes))
    records = [list(p.records) for p in progress]
    for callback_list in lists:
        callback_list.on_train_begin()
    for number in range(done + 1, epochs + 1):
        count = epoch_steps(number, steps_per_epoch, training.updates)
        state, confusions = epoch.run(state, number, count, records)
    steps.finish(state)
    for callback_list, lane_records in zip(lists, records):
        callback_list.on_train_end(lane_records[-1].as_dict())
    times = epoch.times
    return [
        Fit(tuple(lane_records), clock.total, times["eval"], times["hooks"], confusion)
        for lane_records, confusion in zip(records, confusions)
    ]


class _Epoch(NamedTuple):
    """One epoch of `fit`: what stays the same from epoch to epoch."""

    training: Trainable
    train_input: TrainInput
    eval_sets: dict[str, EvalSet]
    lists: list  # each lane's keras.callbacks.CallbackList
    clock: Stopwatch
    times: dict  # "eval" and "hooks": the seconds excluded from training so far
    names: Sequence[str]  # each lane's name in messages ("" alone)

    def run(self, state, number: int, count: int, records: list[list[EpochRecord]]):
        """Trains epoch `number` (its first `count` steps) and evaluates, appends each
        lane's record to its `records` and calls its callbacks; returns (state, each lane's
        confusion matrix)."""
        steps, clock, times = self.training.steps, self.clock, self.times
        for callback_list in self.lists:
            callback_list.on_epoch_begin(number - 1)
        times["hooks"] += clock.lap(counts=False)

        def on_call(done):
            for callback_list in self.lists:
                callback_list.on_train_batch_end(done - 1, {"steps": done})

        rates = self.training.learning_rates
        state, calls = _dispatch(steps, state, self.train_input, rates, number, on_call, count)
        per_call = [(steps.unstack(metrics), count) for metrics, count in calls]
        totals = [
            epoch_totals([(lanes[k], count) for lanes, count in per_call])
            for k in range(len(steps.lanes))
        ]  # waits for the device: before the clock's lap
        epoch_time = clock.lap(counts=True)
        for name, lane_totals in zip(self.names, totals):
            with _named(name):
                _check_training(lane_totals, number, count, self.train_input.steps)
        per_set = {
            name: evaluation.evaluate_lanes(steps, state, s) for name, s in self.eval_sets.items()
        }
        evaluations = [
            {name: lanes[k] for name, lanes in per_set.items()} for k in range(len(steps.lanes))
        ]
        eval_time = clock.lap(counts=False)
        times["eval"] += eval_time
        times_s = {"epoch_time_s": epoch_time, "training_time_s": clock.total}
        new = self._records(
            number, count, totals, evaluations, times_s | {"eval_time_s": eval_time}
        )
        lane_states = steps.unstack(state)
        # The first lane last: its progress rows are the ones shown, and a row shown means
        # that every lane's checkpoint of the epoch is on disk.
        for k in reversed(range(len(steps.lanes))):
            record = new[k]
            records[k].append(record)
            rates[k].end_epoch(record)
            end = EpochEnd(
                record,
                evaluations[k]["test"].confusion,
                totals[k].grad_norms,
                times["eval"],
                times["hooks"],
                lambda k=k: steps.lanes[k].arrays(lane_states[k]),
                lambda k=k: steps.lanes[k].model_of(lane_states[k]),
            )
            self.lists[k].on_epoch_end(number - 1, end.logs())
        times["hooks"] += clock.lap(counts=False)
        return state, [e["test"].confusion for e in evaluations]

    def _records(self, number, count, totals, evaluations, times_s) -> list[EpochRecord]:
        """Each lane's record of epoch `number` (its `count` steps), every lane's figures
        checked before any callback sees one."""
        last_update = (number - 1) * self.train_input.steps + count - 1
        records = []
        lanes = zip(self.names, totals, evaluations, self.training.learning_rates)
        for name, lane_totals, lane_evaluations, rate in lanes:
            figures = _figures(number, count, lane_totals, lane_evaluations, self.train_input)
            lr = float(rate.lr_at(last_update))  # of the epoch's last update
            with _named(name):
                records.append(_checked(EpochRecord(**figures, lr=lr, **times_s)))
        return records


@contextlib.contextmanager
def _named(name: str):
    """A `TrainingDiverged` inside, its message starting with the lane's name."""
    try:
        yield
    except TrainingDiverged as error:
        if not name:
            raise
        raise TrainingDiverged(f"{name}: {error}") from None


def _figures(epoch, count: int, totals: EpochTotals, evaluations, train_input) -> dict:
    """The epoch's figures of training (its `count` steps) and evaluation."""
    figures = {
        "epoch": epoch,
        "train_loss": totals.mean_loss,
        "train_acc": totals.correct / (count * train_input.batch_size),
    }
    for name, result in evaluations.items():
        figures |= {
            f"{name}_loss": result.mean_loss,
            f"{name}_acc": result.accuracy,
            f"{name}_top5_acc": result.top5_accuracy,
        }
    return figures


def _checked(record: EpochRecord) -> EpochRecord:
    """`record`, if every figure of it is finite."""
    bad = record.nonfinite()
    if bad:
        raise TrainingDiverged(
            f"{', '.join(bad)} became NaN or infinite at epoch {record.epoch} (the weights "
            "after training are not finite, or the evaluation overflowed); stopped, no "
            "results written for this epoch."
        )
    return record


def _check_training(totals: EpochTotals, epoch: int, count: int, steps_per_epoch: int) -> None:
    step = totals.first_nonfinite_step
    if step is not None:
        raise TrainingDiverged(
            f"the training loss became NaN or infinite at epoch {epoch}, step {step} of "
            f"{count} (step {(epoch - 1) * steps_per_epoch + step} overall); "
            "stopped, no results written."
        )
