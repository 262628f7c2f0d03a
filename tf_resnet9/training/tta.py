"""Test-time augmentation: logits averaged over mirrored and translated views of each image,
airbench's levels 0, 1 and 2. Pure functions of a model call, for the evaluation step."""

from __future__ import annotations

from collections.abc import Callable

from keras import ops

from tf_resnet9.data.augment import reflect_pad

LEVELS = (0, 1, 2)


def _mirrored(predict: Callable, images):
    """1/2 the logits of the images and 1/2 those of their mirror images, float32."""
    logits = ops.cast(predict(images), "float32")
    mirrored = ops.cast(predict(ops.flip(images, axis=2)), "float32")
    return 0.5 * logits + 0.5 * mirrored


def tta_logits(predict: Callable, images, level: int):
    """The logits of `images` (B, H, W, C), averaged over views, float32.

    Level 0: the images alone. 1: the images and their mirror images, 1/2 each (Page's
    faster recipe's). 2 (airbench's): those, 1/4 each, and both moved by one pixel
    diagonally, down-right and up-left, the edge filled by reflection, 1/8 each: six
    calls of `predict`.

    Args:
        predict: images -> logits (B, classes), e.g. a model called in inference mode.
        images: Normalised images.
        level: 0, 1 or 2.
    """
    if level not in LEVELS:
        raise ValueError(f"level={level!r} is invalid: expected 0, 1 or 2.")
    if level == 0:
        return ops.cast(predict(images), "float32")
    logits = _mirrored(predict, images)
    if level == 1:
        return logits
    height, width = images.shape[1], images.shape[2]
    padded = reflect_pad(images, 1)  # (B, H + 2, W + 2, C)
    down_right = padded[:, :height, :width]  # pixel (y, x) shows (y - 1, x - 1)
    up_left = padded[:, 2:, 2:]  # pixel (y, x) shows (y + 1, x + 1)
    moved = _mirrored(predict, down_right) + _mirrored(predict, up_left)
    return 0.5 * logits + 0.25 * moved
