"""The epoch loop's contract: the learning rate the run's `LearningRate` sets after an epoch
(the plateau rule's cut) is what the next epoch trains with, on every backend (the rate is
an input of the compiled steps); the callbacks read the epoch's state, not the Keras
variables; the DAWNBench clock; and a run stopped before any callback sees a non-finite
figure."""

import math
import time
from typing import NamedTuple

import keras
import numpy as np
import pytest

from tf_resnet9.data.inputs import DeviceInput
from tf_resnet9.errors import TrainingDiverged
from tf_resnet9.models.resnet9 import resnet9
from tf_resnet9.training import evaluation, loop
from tf_resnet9.training.evaluation import EvalSet, Evaluation
from tf_resnet9.training.optimizers import NesterovSGD
from tf_resnet9.training.records import EpochEnd, Progress
from tf_resnet9.training.schedules import LearningRate
from tf_resnet9.training.steps import CompiledSteps

RNG = np.random.default_rng(0)
IMAGES = RNG.integers(0, 256, (64, 32, 32, 3), np.uint8)
LABELS = RNG.integers(0, 10, 64)
# XLA where it is the quicker here (JAX: 27 s against 47 s without; TensorFlow: 5 s
# without).
JAX = JIT = keras.backend.backend() == "jax"


def tiny_steps() -> CompiledSteps:
    keras.utils.set_random_seed(0)
    # No momentum and no decay: with lr 0 an update leaves the weights exactly as they are.
    optimizer = NesterovSGD(0.0, momentum=0.0, weight_decay=0.0)
    return CompiledSteps(resnet9(width=0.0625), optimizer, jit=JIT, grad_norms=False)


class Tiny(NamedTuple):
    """What `loop.fit` trains: 64 (or `count`) images in steps of 16, one epoch per 4."""

    steps: CompiledSteps
    learning_rates: tuple
    epochs: float
    count: int = 64

    @property
    def updates(self) -> int:
        return math.ceil(self.epochs * (self.count // 16))

    def inputs(self):
        train = DeviceInput(IMAGES[: self.count], LABELS[: self.count], 16, 1, seed=0)
        return train, {"test": EvalSet.build(IMAGES[:16], LABELS[:16], 16)}


class StopAfterFirstEpoch(keras.callbacks.Callback):
    """A rule of the plateau's kind (Keras' protocol: `model.optimizer.learning_rate`) that
    cuts the rate to 0 after epoch 1."""

    def on_epoch_end(self, epoch, logs=None):
        if epoch == 0:
            self.model.optimizer.learning_rate = 0.0


class Weights(keras.callbacks.Callback):
    """Keeps the trainable weights of each epoch's state, as a checkpoint reads them."""

    def __init__(self):
        super().__init__()
        self.epochs = []

    def on_epoch_end(self, epoch, logs=None):
        arrays = EpochEnd.of_logs(logs).arrays()
        self.epochs.append({name: arrays[name] for name in trainable(self.model)})


def trainable(model) -> dict:
    """The model's trainable weights' values by their names in the state."""
    return {f"model/{v.path}": keras.ops.convert_to_numpy(v) for v in model.trainable_variables}


def fit(steps, epochs=2, callbacks=(), count=64, rule=None, rate=None):
    training = Tiny(steps, (), epochs, count)
    rate = rate or LearningRate(0.05, updates=training.updates, plateau=rule)
    training = training._replace(learning_rates=(rate,))
    (fitted,) = loop.fit(training, steps.initial_state(), [Progress((), 0.0, 0.0)], [callbacks])
    return fitted


def test_a_learning_rate_the_rule_sets_after_an_epoch_is_the_one_the_next_epoch_uses():
    steps = tiny_steps()
    weights = Weights()
    fitted = fit(steps, callbacks=[weights], rule=StopAfterFirstEpoch())
    assert [record.lr for record in fitted.records] == [np.float32(0.05), 0.0]
    first, second = weights.epochs
    # epoch 2 trained at lr 0: not one weight moved, in the state and in the saved model
    assert all(np.array_equal(first[name], value) for name, value in second.items())
    final = trainable(steps.model)
    assert all(np.array_equal(final[name], value) for name, value in second.items())
    assert fitted.records[1].train_loss > 0  # and it did run its steps


def test_a_fractional_run_ends_its_last_epoch_part_way():
    # 1.5 epochs of 4 steps: 6 updates, the second epoch 2 steps; its record has the rate
    # of update 6, its accuracy the share of its 32 images.
    steps = tiny_steps()
    rate = LearningRate(keras.optimizers.schedules.PolynomialDecay(0.05, 6, 0.01), 6)
    seen = []

    class Counter(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(logs["steps"])

    fitted = fit(steps, epochs=1.5, callbacks=[Counter()], rate=rate)
    assert [record.epoch for record in fitted.records] == [1, 2]
    assert seen == [1, 2, 3, 4, 1, 2]  # one call per step here
    assert int(keras.ops.convert_to_numpy(steps.optimizer.iterations)) == 6
    assert fitted.records[1].lr == rate.lr_at(5) and rate.lr_at(5) != rate.lr_at(7)
    correct = fitted.records[1].train_acc * 32  # a share of the epoch's 2 x 16 images
    assert correct == pytest.approx(round(correct))


def test_the_callbacks_read_the_state_the_model_holds_the_last_one():
    # The epochs pass their state along: on JAX the Keras variables keep the initial
    # weights until training ends (no round trip per epoch), when they take the last state;
    # on TensorFlow the variables are the state, updated in place.
    steps = tiny_steps()
    initial = trainable(steps.model)
    unchanged, asked = [], []

    class ModelReader(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            now = trainable(self.model)
            unchanged.append(all(np.array_equal(now[k], v) for k, v in initial.items()))
            if epoch == 1:  # asked for, the model holds the epoch's state
                end = EpochEnd.of_logs(logs)
                state, model = end.arrays(), trainable(end.model())
                asked.append(all(np.array_equal(model[k], state[k]) for k in model))

    weights = Weights()
    fit(steps, callbacks=[weights, ModelReader()])
    assert unchanged == [JAX, JAX] and asked == [True]
    moved = [np.max(np.abs(weights.epochs[1][k] - initial[k])) for k in initial]
    assert max(moved) > 1e-4  # the state trained
    final = trainable(steps.model)
    assert all(np.array_equal(final[k], v) for k, v in weights.epochs[1].items())


def test_the_training_clock_stops_for_evaluation_and_callbacks(monkeypatch):
    # A stand-in evaluation and a callback that take 0.5 s each per epoch: neither may
    # count as training time, whatever the machine's speed.
    real_evaluate = evaluation.evaluate_lanes

    def slow_evaluate(*args):
        time.sleep(0.5)
        return real_evaluate(*args)

    class SlowCallback(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            time.sleep(0.5)

    monkeypatch.setattr(evaluation, "evaluate_lanes", slow_evaluate)
    start = time.perf_counter()
    fitted = fit(tiny_steps(), callbacks=[SlowCallback()], count=16)
    wall = time.perf_counter() - start
    assert fitted.eval_time_s >= 2 * 0.5 and fitted.hooks_time_s >= 2 * 0.5
    # The laps partition the wall time: what is excluded is not in the training time.
    assert fitted.training_time_s + fitted.eval_time_s + fitted.hooks_time_s <= wall
    assert fitted.training_time_s == pytest.approx(fitted.records[-1].training_time_s)


def test_a_nonfinite_evaluation_stops_the_run_before_any_callback_sees_it(monkeypatch):
    def nan_evaluate(steps, state, eval_set):
        return [Evaluation(float("nan"), 0.1, 0.5, np.zeros((10, 10), np.int64))]

    class Recorder(keras.callbacks.Callback):
        epochs_seen = 0

        def on_epoch_end(self, epoch, logs=None):
            Recorder.epochs_seen += 1

    monkeypatch.setattr(evaluation, "evaluate_lanes", nan_evaluate)
    with pytest.raises(TrainingDiverged, match="test_loss became NaN or infinite at epoch 1"):
        fit(tiny_steps(), callbacks=[Recorder()], count=16)
    assert Recorder.epochs_seen == 0  # no checkpoint, table row or log saw the NaN
