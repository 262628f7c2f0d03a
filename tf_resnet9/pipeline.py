"""tf.data input pipelines (TensorFlow backend): augmented training batches, test batches."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from keras import ops

from tf_resnet9 import augment


def train_dataset(
    images: np.ndarray, labels: np.ndarray, batch_size: int, seed: int
) -> tf.data.Dataset:
    """Training batches for any number of epochs: each iteration is one epoch.

    Reflect padding happens once, here; every iteration reshuffles and draws a fresh crop,
    flip and cutout for every example (the draws are vectorised per batch). The last
    partial batch is dropped. The same `seed` gives the same batches, epoch after epoch.

    Args:
        images: uint8 (N, 32, 32, 3).
        labels: int (N,).
        batch_size: Images per batch.
        seed: Seeds the shuffle and the augmentation.

    Returns:
        A dataset of (float32 (B, 32, 32, 3), int32 (B,)) with N // batch_size elements.
    """
    padded = tf.constant(ops.convert_to_numpy(augment.reflect_pad(images)))  # (N, 40, 40, 3)
    labels = tf.constant(labels, tf.int32)
    count = len(images)

    def make_batch(indices, batch_seed):
        params = augment.draw_params(batch_size, batch_seed)
        return augment.augment(tf.gather(padded, indices), params), tf.gather(labels, indices)

    # Shuffle indices, not images: the images stay in one tensor and each batch is a gather.
    indices = (
        tf.data.Dataset.range(count)
        .shuffle(count, seed=seed, reshuffle_each_iteration=True)
        .batch(batch_size, drop_remainder=True)
    )
    # One (2,) stateless seed per batch, different in every epoch yet fixed by `seed`.
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    batches = tf.data.Dataset.zip(indices, seeds).map(
        make_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )
    return batches.prefetch(tf.data.AUTOTUNE)


def eval_dataset(images: np.ndarray, labels: np.ndarray, batch_size: int) -> tf.data.Dataset:
    """Normalised, unaugmented batches of (float32 (B, 32, 32, 3), int32 (B,)), in order."""
    return (
        tf.data.Dataset.from_tensor_slices((images, labels.astype(np.int32)))
        .batch(batch_size)
        .map(lambda x, y: (augment.normalize(x), y), num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )
