"""Feeding the compiled steps: training batches augmented on the device or by tf.data, and
the test set in fixed-shape batches.

Each training input yields, per epoch, the arguments of its `CompiledSteps` step function (after
the state) in chunks of `steps_per_call` steps.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from keras import ops

from tf_resnet9 import augment, backends
from tf_resnet9.steps import CompiledSteps


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch's shuffle and augmentation, from the run's seed and the epoch.

    Any epoch can be drawn on its own, so a run resumed at epoch k draws exactly what an
    uninterrupted run draws there: no random state needs saving beyond the seed.
    """
    # 31 bits: a valid seed for both backends' stateless generators and for tf.data.
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0] >> 1)


def chunk_lengths(steps: int, steps_per_call: int) -> list[int]:
    """Steps of each call in an epoch: full chunks, then the remainder."""
    return [min(steps_per_call, steps - start) for start in range(0, steps, steps_per_call)]


class DeviceInput:
    """The training set on the accelerator: shuffled, cropped, flipped and cut out there.

    Creating it is the recipe's preprocessing: the images go to the device once and are
    padded there. Whether a square is cut out is the compiled steps' setting
    (`CompiledSteps(cutout=...)`): the augmentation runs inside them.

    Args:
        images: uint8 (N, 32, 32, 3).
        labels: int (N,).
        batch_size: Images per step; the last partial batch of an epoch is dropped.
        steps_per_call: Steps per compiled call.
        seed: Seeds the shuffles and augmentations of all epochs (see `epoch_seed`).
        pad: "reflect" or "zero" (`tf_resnet9.augment.pad_images`).
    """

    def __init__(
        self,
        images,
        labels,
        batch_size: int,
        steps_per_call: int,
        seed: int,
        pad: str = "reflect",
    ):
        self.padded = augment.pad_images(ops.convert_to_tensor(images), pad)  # (N, 40, 40, 3)
        self.labels = ops.convert_to_tensor(np.asarray(labels, np.int32))
        self.batch_size = batch_size
        self.steps = len(images) // batch_size
        self.steps_per_call = steps_per_call
        self.seed = seed

    @staticmethod
    def step_fn(steps: CompiledSteps):
        return steps.device_steps

    def epoch(self, number: int):
        """Argument tuples (after the state) of the device steps of epoch `number`."""
        seed = backends.make_seed(epoch_seed(self.seed, number))
        shuffle_seed, augment_seed = backends.split_seed(seed, 2)
        count = self.steps * self.batch_size
        order = backends.permutation(shuffle_seed, int(self.labels.shape[0]))[:count]
        batches = ops.reshape(order, (self.steps, self.batch_size))  # (S, B)
        step_seeds = backends.split_seed(augment_seed, self.steps)
        for start in range(0, self.steps, self.steps_per_call):
            end = start + self.steps_per_call
            yield self.padded, self.labels, batches[start:end], step_seeds[start:end]


class HostInput:
    """Training batches from the tf.data pipeline (TensorFlow backend), augmented on the host.

    Args: as `DeviceInput`, and
        cutout: Cut out a square in every image.
    """

    def __init__(
        self,
        images,
        labels,
        batch_size: int,
        steps_per_call: int,
        seed: int,
        pad: str = "reflect",
        cutout: bool = True,
    ):
        from tf_resnet9 import pipeline  # tf.data: only where TensorFlow is installed

        self.batch_size = batch_size
        self.steps = len(images) // batch_size
        self.steps_per_call = steps_per_call
        self.seed = seed
        self.pipeline = pipeline.TrainPipeline(images, labels, batch_size, pad, cutout)

    @staticmethod
    def step_fn(steps: CompiledSteps):
        return steps.host_steps

    def epoch(self, number: int):
        """Argument tuples (after the state) of the host steps of epoch `number`."""
        yield from self.pipeline.epoch(epoch_seed(self.seed, number)).batch(self.steps_per_call)


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
    def build(cls, images: np.ndarray, labels: np.ndarray, batch_size: int) -> EvalSet:
        count = len(images)
        steps = -(-count // batch_size)
        pad = steps * batch_size - count
        images = np.concatenate([images, np.zeros((pad, *images.shape[1:]), images.dtype)])
        labels = np.concatenate([np.asarray(labels, np.int32), np.zeros(pad, np.int32)])
        weights = (np.arange(steps * batch_size) < count).astype(np.float32)
        return cls(
            ops.convert_to_tensor(images.reshape(steps, batch_size, *images.shape[1:])),
            ops.convert_to_tensor(labels.reshape(steps, batch_size)),
            ops.convert_to_tensor(weights.reshape(steps, batch_size)),
            count,
        )


class Evaluation(NamedTuple):
    """The test set's metrics after an epoch."""

    mean_loss: float
    accuracy: float
    top5_accuracy: float
    confusion: np.ndarray  # int64 (classes, classes): rows the true class, columns predicted


def evaluate(steps: CompiledSteps, state, eval_set: EvalSet) -> Evaluation:
    """Metrics of `state` on the test set; waits for the device."""
    totals = None
    for i in range(eval_set.images.shape[0]):
        batch = steps.evaluate(state, eval_set.images[i], eval_set.labels[i], eval_set.weights[i])
        totals = batch if totals is None else [a + b for a, b in zip(totals, batch)]
    loss_sum, confusion, top5 = (ops.convert_to_numpy(x) for x in totals)
    confusion = np.rint(confusion).astype(np.int64)  # counts below 2**24: exact in float32
    count = eval_set.count
    return Evaluation(
        float(loss_sum) / count, np.trace(confusion) / count, float(top5) / count, confusion
    )
