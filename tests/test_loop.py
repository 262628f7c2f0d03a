"""The epoch loop's contract with callbacks: what one changes in the variables between
epochs (the plateau schedule's learning rate) is what the next epoch trains with, on every
backend (on JAX the variables' values are threaded through the compiled steps); the
DAWNBench clock; and a run stopped before any callback sees a non-finite figure."""

import time

import keras
import numpy as np
import pytest

from tf_resnet9.data.inputs import DeviceInput
from tf_resnet9.errors import TrainingDiverged
from tf_resnet9.models.resnet9 import resnet9
from tf_resnet9.training import evaluation, loop
from tf_resnet9.training.evaluation import EvalSet, Evaluation
from tf_resnet9.training.optimizers import NesterovSGD
from tf_resnet9.training.steps import CompiledSteps

RNG = np.random.default_rng(0)
IMAGES = RNG.integers(0, 256, (64, 32, 32, 3), np.uint8)
LABELS = RNG.integers(0, 10, 64)
# XLA where it is the quicker here (JAX: 27 s against 47 s without; TensorFlow: 5 s
# without). On JAX the learning rate is in the state threaded through the steps.
JIT = keras.backend.backend() == "jax"


def tiny_steps(lr: float = 0.05) -> CompiledSteps:
    keras.utils.set_random_seed(0)
    # No momentum and no decay: with lr 0 an update leaves the weights exactly as they are.
    optimizer = NesterovSGD(lr, momentum=0.0, weight_decay=0.0)
    return CompiledSteps(resnet9(width=0.0625), optimizer, jit=JIT, grad_norms=False)


def inputs(count: int = 64):
    return lambda: (
        DeviceInput(IMAGES[:count], LABELS[:count], 16, 1, seed=0),
        {"test": EvalSet.build(IMAGES[:16], LABELS[:16], 16)},
    )


def fit(steps, epochs=2, callbacks=(), count=64):
    # Read when asked: the array of an earlier epoch was donated to the training calls.
    current = lambda step: float(keras.ops.convert_to_numpy(steps.optimizer.learning_rate))  # noqa: E731
    return loop.fit(
        steps,
        inputs(count),
        epochs=epochs,
        lr_of_update=current,
        callbacks=callbacks,
    )


class StopLearningAfterFirstEpoch(keras.callbacks.Callback):
    def __init__(self, steps):
        super().__init__()
        self.steps = steps
        self.after_first = None

    def on_epoch_end(self, epoch, logs=None):
        if epoch == 0:
            self.after_first = [v.numpy() for v in self.steps.model.trainable_variables]
            self.steps.optimizer.learning_rate = 0.0


def test_a_learning_rate_set_by_a_callback_is_the_one_the_next_epoch_uses():
    steps = tiny_steps()
    callback = StopLearningAfterFirstEpoch(steps)
    fitted = fit(steps, callbacks=[callback])
    assert [record.lr for record in fitted.records] == [np.float32(0.05), 0.0]
    final = [v.numpy() for v in steps.model.trainable_variables]
    moved = any(not np.array_equal(a, b) for a, b in zip(callback.after_first, final))
    assert not moved  # epoch 2 trained at lr 0: not one weight moved
    assert fitted.records[1].train_loss > 0  # and it did run its steps


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
