"""Evaluation after every epoch: the test (and validation) set on the device in fixed-shape
batches, and their metrics under the compiled evaluation step."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from keras import ops

from tf_resnet9.backends.placement import SingleDevice
from tf_resnet9.training.steps import CompiledSteps


class EvalSet(NamedTuple):
    """The test set on the device in equal batches; the last one padded with weight 0.

    One compiled call per batch: a loop over the batches would be one call, but XLA's CPU
    backend runs convolutions inside loops far slower, and on a GPU 20 calls cost nothing.
    """

    images: object  # uint8 (S, B, 32, 32, 3)
    labels: object  # int32 (S, B)
    weights: object  # float32 (S, B)
    count: int

    @classmethod
    def build(
        cls, images: np.ndarray, labels: np.ndarray, batch_size: int, placement=None
    ) -> EvalSet:
        """The set in batches of `batch_size`, placed by `placement` (one device if None;
        data parallel splits each batch over the devices)."""
        put = (placement or SingleDevice()).put
        count = len(images)
        steps = -(-count // batch_size)
        pad = steps * batch_size - count
        images = np.concatenate([images, np.zeros((pad, *images.shape[1:]), images.dtype)])
        labels = np.concatenate([np.asarray(labels, np.int32), np.zeros(pad, np.int32)])
        weights = (np.arange(steps * batch_size) < count).astype(np.float32)
        return cls(
            put(ops.convert_to_tensor(images.reshape(steps, batch_size, *images.shape[1:])), 1),
            put(ops.convert_to_tensor(labels.reshape(steps, batch_size)), 1),
            put(ops.convert_to_tensor(weights.reshape(steps, batch_size)), 1),
            count,
        )


class Evaluation(NamedTuple):
    """An evaluation set's metrics after an epoch."""

    mean_loss: float
    accuracy: float
    top5_accuracy: float
    confusion: np.ndarray  # int64 (classes, classes): rows the true class, columns predicted


def evaluate(steps: CompiledSteps, state, eval_set: EvalSet) -> Evaluation:
    """Metrics of `state` on `eval_set`; waits for the device."""
    (result,) = evaluate_lanes(steps, state, eval_set)
    return result


def evaluate_lanes(steps, state, eval_set: EvalSet) -> list[Evaluation]:
    """Each lane's metrics on `eval_set` (`steps.lanes`: one run, or seeds trained together,
    whose `evaluate` maps over their stacked `state`); waits for the device."""
    totals = None
    for i in range(eval_set.images.shape[0]):
        batch = steps.evaluate(state, eval_set.images[i], eval_set.labels[i], eval_set.weights[i])
        totals = batch if totals is None else [a + b for a, b in zip(totals, batch)]
    return [_evaluation(lane_totals, eval_set.count) for lane_totals in steps.unstack(totals)]


def _evaluation(totals, count: int) -> Evaluation:
    loss_sum, confusion, top5 = (ops.convert_to_numpy(x) for x in totals)
    confusion = np.rint(confusion).astype(np.int64)  # counts below 2**24: exact in float32
    return Evaluation(
        float(loss_sum) / count, int(np.trace(confusion)) / count, float(top5) / count, confusion
    )
