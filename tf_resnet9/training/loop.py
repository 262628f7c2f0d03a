"""The epoch loop: compiled training calls, evaluation after every epoch, DAWNBench timing,
and Keras callbacks for everything else (progress, logging, checkpoints).

Callbacks follow Keras' protocol (`keras.callbacks.Callback`): `on_train_begin`,
`on_epoch_begin(epoch)`, `on_epoch_end(epoch, logs)` and `on_train_end(logs)`, with
0-based epochs as in `Model.fit`. The logs of an epoch are its record's figures
(`tf_resnet9.training.records.EpochRecord`: "lr", "train_loss", "test_acc", ...) and,
under `EpochEnd.KEY`, the record itself with the confusion matrix, the gradient norms and
the evaluation and callback times so far (`EpochEnd`). When a callback runs, the model's
and the optimizer's variables hold the epoch's weights; what a callback changes in them
(the plateau schedule cuts the learning rate) is what the next epoch trains with. The loop
trains outside `Model.fit`: callbacks get one batch event per compiled call,
`on_train_batch_end(batch, logs)` with the index of the call's last step and logs
{"steps": steps of the epoch dispatched so far}: on a GPU, where an epoch is one call,
there is none within an epoch; while an epoch trains, the variables' arrays belong to the
compiled calls (JAX donates them), so a batch event must not read the weights. The time
callbacks take is excluded from the training time.

`fit_lanes` is the same loop over steps whose compiled calls train several runs at once
(seeds, `tf_resnet9.training.seeds`): it unstacks their metrics and states per run ("lane")
and gives each its own records, evaluation and callbacks; `fit` is its one-lane case.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple

import keras
import numpy as np
from keras import ops

from tf_resnet9 import backends
from tf_resnet9.data.inputs import TrainInput, chunk_lengths
from tf_resnet9.errors import TrainingDiverged
from tf_resnet9.training import evaluation
from tf_resnet9.training.evaluation import EvalSet
from tf_resnet9.training.records import EpochEnd, EpochRecord, Progress
from tf_resnet9.training.steps import CompiledSteps
from tf_resnet9.training.stopwatch import Stopwatch


class EpochTotals(NamedTuple):
    mean_loss: float
    correct: int
    first_nonfinite_step: int | None  # 1-based step of the epoch whose loss was NaN or inf
    grad_norms: np.ndarray  # (steps, layer groups)


class Fit(NamedTuple):
    """What `fit` returns: the per-epoch records, the DAWNBench times, the last evaluation."""

    records: tuple[EpochRecord, ...]
    training_time_s: float  # preprocessing and training; evaluation and callbacks excluded
    eval_time_s: float
    hooks_time_s: float
    confusion: np.ndarray  # the test set's, after the last epoch


def warm_up(
    steps: CompiledSteps, make_input: Callable[[], TrainInput], eval_sets: Sequence[EvalSet]
) -> float:
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
    train = steps.train_fn(train_input.batches)
    outputs, seen = [], set()
    for first, (chunk, length) in _chunks(train_input, 1):
        if length not in seen:
            seen.add(length)
            outputs.append(steps.run_discarding_updates(train, first, chunk))
    backends.wait(outputs)
    for eval_set in eval_sets:
        evaluation.evaluate_lanes(steps, steps.initial_state(), eval_set)
    return time.perf_counter() - start


def _chunks(train_input: TrainInput, number: int):
    """(index of the chunk's first step in the epoch, as an int32 tensor; (chunk, steps))
    for each compiled call of epoch `number`."""
    lengths = chunk_lengths(train_input.steps, train_input.steps_per_call)
    starts = np.cumsum([0, *lengths[:-1]])
    for start, item in zip(starts, zip(train_input.epoch(number), lengths)):
        yield ops.convert_to_tensor(start, "int32"), item


def run_epoch(
    steps: CompiledSteps, state, train_input: TrainInput, number: int = 1, on_call=None
) -> tuple[object, EpochTotals]:
    """Epoch `number` in compiled calls; waits for the device only at the end, for totals.

    Args:
        on_call: Called with the steps dispatched so far after each call. It must not read
            the call's results: that would make the host wait for the device.
    """
    state, calls = _dispatch(steps, state, train_input, number, on_call)
    return state, _epoch_totals(calls)


def _dispatch(steps, state, train_input: TrainInput, number: int, on_call):
    """(state, [(CallMetrics, steps of the call)]) of epoch `number`, not waited for."""
    train = steps.train_fn(train_input.batches)
    calls, dispatched = [], 0
    for first, (chunk, count) in _chunks(train_input, number):
        state, totals = train(state, first, chunk)
        calls.append((totals, count))
        dispatched += count
        if on_call is not None:
            on_call(dispatched)
    return state, calls


def _epoch_totals(calls) -> EpochTotals:
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
    steps: CompiledSteps,
    make_inputs: Callable[[], tuple[TrainInput, dict[str, EvalSet]]],
    epochs: int,
    lr_of_update: Callable[[int], float],
    callbacks: Sequence[keras.callbacks.Callback] = (),
    progress: Progress | None = None,
) -> Fit:
    """Trains up to epoch `epochs`, evaluating after each, and leaves the weights in the model.
    The DAWNBench rule: the clock runs from before the training set is prepared to the end
    of the last epoch's training steps, and stops for evaluation and callbacks.

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
        TrainingDiverged: a training loss, or an evaluation's loss or accuracy, became NaN
            or infinite; no callback sees that epoch.
    """
    (fitted,) = fit_lanes(steps, make_inputs, epochs, [lr_of_update], [callbacks], [progress])
    return fitted


def fit_lanes(
    steps,
    make_inputs: Callable[[], tuple[TrainInput, dict[str, EvalSet]]],
    epochs: int,
    lr_of_update: Sequence[Callable[[int], float]],
    callbacks: Sequence[Sequence[keras.callbacks.Callback]],
    progress: Sequence[Progress | None],
    names: Sequence[str] | None = None,
) -> list[Fit]:
    """`fit` for steps of several lanes trained together (`steps.lanes`: seeds, in
    `tf_resnet9.training.seeds`), each lane with its own learning rate record, callbacks
    (called with its model holding its weights) and progress, all at the same epoch; one
    clock for all; `names`: each lane's, for the messages of `TrainingDiverged` (e.g.
    "seed 3"). Returns each lane's `Fit`.
    """
    progress = [p or Progress((), 0.0, 0.0) for p in progress]
    done = len(progress[0].records)
    if any(len(p.records) != done for p in progress):
        raise ValueError("the lanes resume from different epochs: they train together.")
    if epochs <= done:
        raise ValueError(f"epochs={epochs} is invalid: the run already has {epochs} or more.")
    records = [list(p.records) for p in progress]
    lists = [
        keras.callbacks.CallbackList(list(lane_callbacks), model=lane.model)
        for lane_callbacks, lane in zip(callbacks, steps.lanes)
    ]
    clock = Stopwatch(progress[0].training_time_s)
    train_input, eval_sets = make_inputs()
    clock.lap(counts=True)  # preprocessing
    times = {"eval": progress[0].eval_time_s, "hooks": progress[0].hooks_time_s}  # excluded
    names = names or [""] * len(steps.lanes)
    epoch = _Epoch(steps, train_input, eval_sets, lists, lr_of_update, clock, times, names)
    state = steps.initial_state()
    for callback_list in lists:
        callback_list.on_train_begin()
    for number in range(done + 1, epochs + 1):
        state, confusions = epoch.run(state, number, records)
    steps.finish(state)
    for callback_list, lane_records in zip(lists, records):
        callback_list.on_train_end(lane_records[-1].as_dict())
    return [
        Fit(tuple(lane_records), clock.total, times["eval"], times["hooks"], confusion)
        for lane_records, confusion in zip(records, confusions)
    ]


class _Epoch(NamedTuple):
    """One epoch of `fit_lanes`: what stays the same from epoch to epoch."""

    steps: object
    train_input: TrainInput
    eval_sets: dict[str, EvalSet]
    lists: list  # each lane's keras.callbacks.CallbackList
    lr_of_update: Sequence[Callable[[int], float]]
    clock: Stopwatch
    times: dict  # "eval" and "hooks": the seconds excluded from training so far
    names: Sequence[str]  # each lane's name in messages ("" alone)

    def run(self, state, number: int, records: list[list[EpochRecord]]):
        """Trains and evaluates epoch `number`, appends each lane's record to its
        `records` and calls its callbacks; returns (state, each lane's confusion matrix)."""
        steps, clock, times = self.steps, self.clock, self.times
        for callback_list in self.lists:
            callback_list.on_epoch_begin(number - 1)
        times["hooks"] += clock.lap(counts=False)

        def on_call(done):
            for callback_list in self.lists:
                callback_list.on_train_batch_end(done - 1, {"steps": done})

        state, calls = _dispatch(steps, state, self.train_input, number, on_call)
        per_call = [(steps.unstack(metrics), count) for metrics, count in calls]
        totals = [
            _epoch_totals([(lanes[k], count) for lanes, count in per_call])
            for k in range(len(steps.lanes))
        ]  # waits for the device: before the clock's lap
        epoch_time = clock.lap(counts=True)
        for name, lane_totals in zip(self.names, totals):
            with _named(name):
                _check_training(lane_totals, number, self.train_input.steps)
        per_set = {
            name: evaluation.evaluate_lanes(steps, state, s) for name, s in self.eval_sets.items()
        }
        evaluations = [
            {name: lanes[k] for name, lanes in per_set.items()} for k in range(len(steps.lanes))
        ]
        times["eval"] += clock.lap(counts=False)
        # The epoch's weights into the variables, before anything reads them (the records
        # read the optimizer's learning rate): the training calls consumed the arrays the
        # variables held.
        for lane, lane_state in zip(steps.lanes, steps.unstack(state)):
            lane.finish(lane_state)
        times_s = {"epoch_time_s": epoch_time, "training_time_s": clock.total}
        new = []  # every lane's figures checked before any callback sees one
        lanes = zip(self.names, totals, evaluations, self.lr_of_update)
        for name, lane_totals, lane_evaluations, lr in lanes:
            with _named(name):
                record = _record(
                    number, lane_totals, lane_evaluations, self.train_input, lr, times_s
                )
            new.append(record)
        # The first lane last: its progress rows are the ones shown (`experiment_seeds`),
        # and a row shown means that every lane's checkpoint of the epoch is on disk.
        for k in reversed(range(len(steps.lanes))):
            records[k].append(new[k])
            confusion = evaluations[k]["test"].confusion
            end = EpochEnd(new[k], confusion, totals[k].grad_norms, times["eval"], times["hooks"])
            self.lists[k].on_epoch_end(number - 1, end.logs())
        state = steps.stack([lane.initial_state() for lane in steps.lanes])  # as they left them
        times["hooks"] += clock.lap(counts=False)
        return state, [e["test"].confusion for e in evaluations]


@contextlib.contextmanager
def _named(name: str):
    """A `TrainingDiverged` inside, its message starting with the lane's name."""
    try:
        yield
    except TrainingDiverged as error:
        if not name:
            raise
        raise TrainingDiverged(f"{name}: {error}") from None


def _record(epoch, totals: EpochTotals, evaluations, train_input, lr_of_update, times_s):
    """The epoch's record, if every figure of it is finite."""
    steps_per_epoch = train_input.steps
    figures = {
        "epoch": epoch,
        "lr": lr_of_update(epoch * steps_per_epoch - 1),  # of the epoch's last update
        "train_loss": totals.mean_loss,
        "train_acc": totals.correct / (steps_per_epoch * train_input.batch_size),
    }
    for name, result in evaluations.items():
        figures |= {
            f"{name}_loss": result.mean_loss,
            f"{name}_acc": result.accuracy,
            f"{name}_top5_acc": result.top5_accuracy,
        }
    return _checked(EpochRecord(**figures, **times_s))


def _check_training(totals: EpochTotals, epoch: int, steps_per_epoch: int) -> None:
    step = totals.first_nonfinite_step
    if step is not None:
        raise TrainingDiverged(
            f"the training loss became NaN or infinite at epoch {epoch}, step {step} of "
            f"{steps_per_epoch} (step {(epoch - 1) * steps_per_epoch + step} overall); "
            "stopped, no results written."
        )


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
