"""airbench's augmentation, in `keras.ops`: an alternating flip, a random translation, and
(airbench96) cutout.

- Alternating flip: each image's flip is drawn once, before the first epoch
  (`draw_flips`), and the whole set is mirrored on every odd epoch (from 0): each image is
  seen both ways in every two epochs, where an independent flip per epoch leaves a quarter
  of them the same way twice running.
- Translation: each epoch, each image moved by (dy, dx), each uniform in -pad..pad, its
  edge filled by reflection (`draw_epoch`).
- Cutout: each epoch, a size x size square inside the image set to 0 (the mean colour,
  after normalising).

As in `tf_resnet9.data.augment`, random choices are explicit arguments drawn from stateless
seeds (`draw_flips`, `draw_epoch`), apart from the ops that apply them, so that tests can
pin them and a compiled step can draw them. airbench draws every image's translation and
cutout once per epoch for the whole set; drawing them per batch from per-step seeds gives
the same distribution.

airbench normalises with CIFAR-10's statistics on the 0..1 scale (`MEAN`, `STD` here),
which differ from Page's 0..255 figures (`tf_resnet9.data.augment`) in the fourth digit.
"""

from __future__ import annotations

from typing import NamedTuple

from keras import ops

from tf_resnet9 import backends
from tf_resnet9.data.augment import crop, cutout, flip_left_right
from tf_resnet9.data.augment import normalize as normalize_images
from tf_resnet9.data.cifar import IMAGE_SHAPE
from tf_resnet9.data.stats import AIRBENCH_MEAN as MEAN  # of pixels / 255
from tf_resnet9.data.stats import AIRBENCH_STD as STD

TRANSLATE = 2  # airbench94/95; airbench96: 4
CUTOUT = 12  # airbench96's; the others none


class EpochDraws(NamedTuple):
    """One epoch's choices per image, int32 (N,)."""

    shift_y: object  # the image moved down by this many pixels (-pad..pad)
    shift_x: object  # ... and right
    cutout_y: object  # the square's top-left corner, 0..H - size
    cutout_x: object


def draw_flips(count: int, seed):
    """Which images start mirrored: int32 (count,), 1 with probability 1/2; drawn once per
    run. `seed` is a stateless seed (`tf_resnet9.backends.make_seed`)."""
    return backends.randint(seed, (count,), 0, 2)


def draw_epoch(
    count: int, seed, pad: int = TRANSLATE, cutout_size: int = 0, size: int = IMAGE_SHAPE[0]
) -> EpochDraws:
    """One epoch's translations (-pad..pad in y and x) and cutout corners (0..size - cutout
    size, all zeros without cutout) for `count` images of `size` x `size`."""
    seeds = backends.split_seed(seed, 4)
    shape = (count,)
    corner = size - cutout_size
    return EpochDraws(
        shift_y=backends.randint(seeds[0], shape, -pad, pad + 1),
        shift_x=backends.randint(seeds[1], shape, -pad, pad + 1),
        cutout_y=backends.randint(seeds[2], shape, 0, corner + 1),
        cutout_x=backends.randint(seeds[3], shape, 0, corner + 1),
    )


def normalize(images):
    """uint8 (or float on the 0..255 scale) -> float32 (pixel / 255 - MEAN) / STD, in
    airbench's order of operations (so that the values are the same bits as its)."""
    images = ops.cast(images, "float32") / 255.0
    return (images - ops.convert_to_tensor(MEAN, "float32")) / ops.convert_to_tensor(STD, "float32")


def alternating_flip(images, flips, epoch):
    """Image b mirrored left-right where flips[b] XOR (epoch is odd): its flip drawn once
    (`draw_flips`), then the whole set mirrored every other epoch. `epoch` counts from 0
    (an int or a scalar tensor)."""
    odd = ops.cast(ops.mod(epoch, 2), "int32")
    return flip_left_right(images, ops.not_equal(ops.cast(flips, "int32"), odd))


def translate(padded_images, shift_y, shift_x, pad: int = TRANSLATE):
    """Image b of reflect-padded images (B, H + 2 pad, W + 2 pad, C) moved by
    (shift_y[b], shift_x[b]) pixels: output (y, x) is input (y - shift_y, x - shift_x),
    read from the padding where that falls outside. (B, H, W, C)."""
    size = padded_images.shape[1] - 2 * pad
    y0 = pad - ops.cast(shift_y, "int32")
    x0 = pad - ops.cast(shift_x, "int32")
    return crop(padded_images, y0, x0, size)


def augment(
    padded_images,
    flips,
    draws: EpochDraws,
    epoch,
    pad: int = TRANSLATE,
    cutout_size: int = 0,
    normalization=None,
):
    """airbench's training images of one epoch from reflect-padded images.

    airbench mirrors each image by its drawn flip, pads, translates, mirrors the whole set
    on odd epochs, then cuts out. Mirroring and reflect padding commute, and normalising is
    per pixel, so this mirrors the padded images, translates, mirrors on odd epochs,
    normalises, then cuts out: the same values (cutout's zeros after normalising, the mean
    colour).

    Args:
        padded_images: uint8 (B, 32 + 2 pad, 32 + 2 pad, 3), reflect-padded by `pad`
            (`tf_resnet9.data.augment.reflect_pad`), unflipped.
        flips: int (B,): each image's flip, drawn once per run (`draw_flips`).
        draws: This epoch's choices for these images (`draw_epoch`).
        epoch: The epoch, from 0 (odd epochs mirror every image).
        cutout_size: The cutout square's side; 0 for none (airbench94/95).
        normalization: (mean, std) per channel on the 0..255 scale, as
            `tf_resnet9.data.augment.normalize` takes it (a run's); None: airbench's own
            statistics in airbench's order of operations (`normalize` here).

    Returns:
        float32 (B, 32, 32, 3), normalised.
    """
    images = flip_left_right(padded_images, flips)
    images = translate(images, draws.shift_y, draws.shift_x, pad)
    images = alternating_flip(images, ops.zeros_like(flips), epoch)
    if normalization is None:
        images = normalize(images)
    else:
        images = normalize_images(images, normalization)
    if cutout_size:
        images = cutout(images, draws.cutout_y, draws.cutout_x, cutout_size)
    return images
