"""Layers of Page's faster recipe that Keras lacks: ghost BatchNorm and CELU."""

from __future__ import annotations

import keras
from keras import layers, ops


@keras.saving.register_keras_serializable(package="tf_resnet9")
class GhostBatchNorm(layers.BatchNormalization):
    """BatchNorm whose training statistics come from `splits` equal sub-batches.

    In training, the batch (B, H, W, C) is cut into `splits` consecutive groups of B / splits
    images; each group is normalised with its own mean and (biased, as Keras') variance.
    The running statistics move towards the mean over the groups of their statistics, so
    inference, which uses them, normalises with the groups' average. With splits=1 this is
    `BatchNormalization`.

    Args:
        splits: Sub-batches per batch (Page: 16 of 32 images); it must divide the batch.
        **kwargs: Passed to `keras.layers.BatchNormalization` (axis -1 only).
    """

    def __init__(self, splits: int = 16, **kwargs):
        super().__init__(**kwargs)
        if splits < 1:
            raise ValueError(f"splits={splits!r} is invalid: expected an integer >= 1.")
        self.splits = splits

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable) or self.splits == 1:
            return super().call(inputs, training=training, mask=mask)
        batch = inputs.shape[0]
        if batch is not None and batch % self.splits:
            raise ValueError(
                f"a batch of {batch} is invalid for {self.name}: expected a multiple of "
                f"splits={self.splits}."
            )
        # float32 statistics, as Keras' BatchNormalization computes them under bf16/fp16.
        x = ops.cast(inputs, keras.backend.result_type(inputs.dtype, "float32"))
        ghosts = ops.reshape(x, (self.splits, -1, *x.shape[1:]))  # (splits, B/splits, ...)
        axes = tuple(range(1, len(ghosts.shape) - 1))
        mean, variance = ops.moments(ghosts, axes=axes, keepdims=True)
        normalized = (ghosts - mean) * ops.rsqrt(variance + self.epsilon)
        if self.scale:
            normalized = normalized * ops.cast(self.gamma, x.dtype)
        if self.center:
            normalized = normalized + ops.cast(self.beta, x.dtype)
        for moving, batch_value in ((self.moving_mean, mean), (self.moving_variance, variance)):
            average = ops.reshape(ops.mean(batch_value, axis=0), moving.shape)
            moving.assign(
                ops.cast(moving, x.dtype) * self.momentum + average * (1.0 - self.momentum)
            )
        return ops.cast(ops.reshape(normalized, ops.shape(x)), self.compute_dtype)

    def get_config(self):
        return super().get_config() | {"splits": self.splits}


@keras.saving.register_keras_serializable(package="tf_resnet9")
class CELU(layers.Layer):
    """CELU(x) = max(0, x) + min(0, alpha * (exp(x / alpha) - 1)) (`keras.ops.celu`)."""

    def __init__(self, alpha: float = 0.3, **kwargs):
        super().__init__(**kwargs)
        self.alpha = alpha

    def call(self, x):
        return ops.celu(x, alpha=self.alpha)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return super().get_config() | {"alpha": self.alpha}
