"""The training set augmented on the host by a tf.data pipeline (TensorFlow backend,
`--augment host`); the `TrainInput` of `tf_resnet9.data.inputs`."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from keras import ops

from tf_resnet9.data import augment
from tf_resnet9.data.inputs import (
    PreparedBatches,
    alternating_augmented,
    check_flip,
    epoch_seed,
    input_geometry,
    run_flips,
)


class HostInput:
    """Augmented training batches from tf.data, `steps_per_call` of them per chunk.

    Padding happens once, here. Each epoch is its own dataset, drawn from its own seed
    (`epoch_seed`): a fresh shuffle and a fresh crop, flip and cutout for every example
    (vectorised per batch), the last partial batch dropped. The same seed gives the same
    batches, and any epoch can be drawn again without the ones before it (a resumed run
    needs that).

    Args: as `tf_resnet9.data.inputs.DeviceInput`.
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        batch_size: int,
        steps_per_call: int,
        seed: int,
        pad: str = "reflect",
        cutout: bool = True,
        placement=None,
        geometry: augment.Geometry | None = None,
        normalization=None,
        flip: str = "random",
    ):
        del placement  # one device: data parallel is JAX's, and tf.data is TensorFlow's
        self.flip = check_flip(flip)
        self.geometry = input_geometry(images, geometry)
        self.normalization = normalization
        padded = augment.pad_images(images, pad, self.geometry.pad)
        self.padded = tf.constant(ops.convert_to_numpy(padded))
        self.labels = tf.constant(labels, tf.int32)
        self.batch_size = batch_size
        self.steps = len(images) // batch_size
        self.steps_per_call = steps_per_call
        self.seed = seed
        self.cutout = cutout
        self.batches = PreparedBatches()

    def epoch(self, number: int, steps: int | None = None):
        batches = self.dataset(epoch_seed(self.seed, number), number)
        if steps is not None:
            batches = batches.take(steps)
        return batches.batch(self.steps_per_call)

    def dataset(self, seed: int, number: int = 1) -> tf.data.Dataset:
        """Epoch `number`'s (float32 (B, S, S, 3), int32 (B,)) batches, N // B of them,
        drawn from `seed`."""
        flips = run_flips(self.seed, int(self.labels.shape[0])) if self.flip != "random" else None

        def make_batch(indices, batch_seed):
            if flips is not None:
                images = alternating_augmented(
                    self.padded, indices, batch_seed, flips, number - 1, self.cutout,
                    self.geometry, self.normalization,
                )  # fmt: skip
                return images, tf.gather(self.labels, indices)
            params = augment.draw_params(self.batch_size, batch_seed, self.geometry)
            images = augment.augment(
                tf.gather(self.padded, indices),
                params,
                self.cutout,
                self.geometry,
                self.normalization,
            )
            return images, tf.gather(self.labels, indices)

        # Shuffle indices, not images: the images stay in one tensor, each batch a gather.
        count = int(self.labels.shape[0])
        indices = (
            tf.data.Dataset.range(count)
            .shuffle(count, seed=seed)
            .batch(self.batch_size, drop_remainder=True)
        )
        seeds = tf.data.Dataset.random(seed=seed).batch(2)  # one (2,) stateless seed a batch
        batches = tf.data.Dataset.zip(indices, seeds).map(
            make_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
        )
        return batches.prefetch(tf.data.AUTOTUNE)
