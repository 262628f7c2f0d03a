"""The recipe's image ops on batches (B, H, W, C), in `keras.ops`: CIFAR's 32x32 by default,
other sizes by a `Geometry` that scales the padding and cutout with the side.

Random choices are explicit arguments (`AugmentParams`), one per example, drawn from a
stateless seed, so the same ops serve the tf.data pipeline and the compiled step on the
accelerator, and tests can pin them.
"""

from __future__ import annotations

from typing import NamedTuple

import keras
from keras import ops

from tf_resnet9 import backends
from tf_resnet9.data.cifar import IMAGE_SHAPE
from tf_resnet9.data.stats import MEAN, STD  # the recipe's normalisation

PAD = 4  # padding per side: 32x32 -> 40x40
CROP = 32  # crop size: offsets 0..2*PAD
CUTOUT = 8  # cutout square size: top-left 0..CROP-CUTOUT, always fully inside

MAX_CROP_OFFSET = 2 * PAD  # 8
MAX_CUTOUT_OFFSET = CROP - CUTOUT  # 24

# Page's padding and cutout as shares of the side, kept at other image sizes (`geometry`).
PAD_SHARE = PAD / CROP  # 1/8
CUTOUT_SHARE = CUTOUT / CROP  # 1/4


class Geometry(NamedTuple):
    """The random crop and cutout of images of one size: padded by `pad` per side, cropped
    back to `size` x `size`, a `cutout` x `cutout` square cut out (fully inside)."""

    size: int
    pad: int
    cutout: int

    @property
    def max_crop_offset(self) -> int:
        return 2 * self.pad

    @property
    def max_cutout_offset(self) -> int:
        return self.size - self.cutout


def geometry(size: int, pad: int | None = None, cutout: int | None = None) -> Geometry:
    """The augmentation of `size` x `size` images: Page's at 32 (pad 4, cutout 8); at other
    sizes the same shares of the side, rounded half up (64: 8 and 16; 28: 4 and 7; 96: 12
    and 24), unless `pad` or `cutout` are given.

    Raises:
        ValueError: a size under 2, a negative pad or one as large as the image (reflection
            needs pad < size), or a cutout outside 1..size.
    """
    pad = int(size * PAD_SHARE + 0.5) if pad is None else pad
    cutout = int(size * CUTOUT_SHARE + 0.5) if cutout is None else cutout
    if size < 2:
        raise ValueError(f"size={size} is invalid: expected 2 or more pixels.")
    if not 0 <= pad < size:
        raise ValueError(f"pad={pad} is invalid: expected 0..{size - 1} for {size}x{size}.")
    if not 1 <= cutout <= size:
        raise ValueError(f"cutout={cutout} is invalid: expected 1..{size} for {size}x{size}.")
    return Geometry(size, pad, cutout)


CIFAR = Geometry(CROP, PAD, CUTOUT)  # the recipe's, on CIFAR's 32x32


class AugmentParams(NamedTuple):
    """One random draw per example, each an int tensor of shape (B,)."""

    crop_y: object
    crop_x: object
    flip: object  # 1: mirror left-right
    cutout_y: object
    cutout_x: object


def draw_params(batch_size: int, seed, geometry: Geometry = CIFAR) -> AugmentParams:
    """Draws the recipe's augmentation for `batch_size` examples.

    Args:
        batch_size: Number of examples.
        seed: A stateless seed from `tf_resnet9.backends` (`make_seed` or `split_seed`):
            the same seed gives the same draws.
        geometry: The crop's and the cutout's sizes (`geometry`): the offsets' ranges.
    """
    seeds = backends.split_seed(seed, 5)
    shape = (batch_size,)
    return AugmentParams(
        crop_y=backends.randint(seeds[0], shape, 0, geometry.max_crop_offset + 1),
        crop_x=backends.randint(seeds[1], shape, 0, geometry.max_crop_offset + 1),
        flip=backends.randint(seeds[2], shape, 0, 2),
        cutout_y=backends.randint(seeds[3], shape, 0, geometry.max_cutout_offset + 1),
        cutout_x=backends.randint(seeds[4], shape, 0, geometry.max_cutout_offset + 1),
    )


def normalize(images, normalization=None):
    """uint8 (or float on the 0..255 scale) -> float32 with zero mean colour, unit std.

    Args:
        normalization: (mean, std) per channel on the 0..255 scale (a
            `tf_resnet9.data.stats.ChannelStats`, the training images'); None: CIFAR-10's,
            `MEAN` and `STD`.
    """
    mean, std = normalization if normalization is not None else (MEAN, STD)
    images = ops.cast(images, "float32")
    return (images - ops.convert_to_tensor(mean, "float32")) / ops.convert_to_tensor(std, "float32")


def preprocess(images, normalization=None, size: int = IMAGE_SHAPE[0]):
    """Prepares images for the networks (`tf_resnet9.resnet9`, a saved `resnet9.keras`,
    ...): the recipe's per-channel normalisation, the one the model was trained with.

    Args:
        images: uint8 RGB images (B, size, size, 3) on the 0..255 scale, as CIFAR-10 stores
            them (a NumPy array or a tensor).
        normalization: The training images' (mean, std), as `normalize`; None: CIFAR-10's.
        size: The side the model was trained at.

    Returns:
        float32 (B, size, size, 3): (pixel - mean) / std per channel.

    Raises:
        ValueError: the images are not uint8 (B, size, size, 3). Images already scaled to
            0..1 or normalised would be normalised again and classified silently wrong.
    """
    shape = tuple(images.shape)
    dtype = keras.backend.standardize_dtype(images.dtype)
    if dtype != "uint8":
        raise ValueError(
            f"images of dtype {dtype} are invalid: expected uint8 pixels on the 0..255 scale "
            "(the raw images, not scaled by 1/255 nor normalised)."
        )
    if len(shape) != 4 or shape[1:] != (size, size, 3):
        raise ValueError(f"images of shape {shape} are invalid: expected (B, {size}, {size}, 3).")
    return normalize(images, normalization)


def reflect_pad(images, pad: int = PAD):
    """Pads H and W by `pad` mirroring without repeating the edge (numpy mode 'reflect')."""
    return ops.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]], mode="reflect")


def pad_images(images, mode: str = "reflect", pad: int = PAD):
    """Pads uint8 images (B, H, W, 3) by `pad` per side for the random crop (CIFAR: 4, to
    40x40).

    "reflect" is the recipe's (`reflect_pad`). "zero" pads with black pixels (0 on the
    0..255 scale, so normalised to -mean/std), as torchvision's `RandomCrop(32, padding=4)`
    does in the PyTorch codebases that train the classic CIFAR ResNets.
    """
    if mode == "reflect":
        return reflect_pad(images, pad)
    if mode == "zero":
        return ops.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
    raise ValueError(f"mode={mode!r} is invalid: expected 'reflect' or 'zero'.")


def crop(images, y0, x0, size: int = CROP):
    """Crops a size x size window at (y0[b], x0[b]) from each image b."""
    offsets = ops.arange(size, dtype="int32")
    rows = ops.cast(y0, "int32")[:, None] + offsets  # (B, size)
    cols = ops.cast(x0, "int32")[:, None] + offsets
    images = ops.take_along_axis(images, rows[:, :, None, None], axis=1)  # (B, size, W, C)
    return ops.take_along_axis(images, cols[:, None, :, None], axis=2)  # (B, size, size, C)


def flip_left_right(images, flip):
    """Mirrors image b left-right where flip[b] is 1."""
    flip = ops.cast(flip, "bool")[:, None, None, None]
    return ops.where(flip, ops.flip(images, axis=2), images)


def cutout(images, y0, x0, size: int = CUTOUT):
    """Sets a size x size square with top-left (y0[b], x0[b]) to 0 in each image b."""
    height, width = images.shape[1], images.shape[2]
    y0 = ops.cast(y0, "int32")[:, None]
    x0 = ops.cast(x0, "int32")[:, None]
    ys = ops.arange(height, dtype="int32")[None, :]  # (1, H)
    xs = ops.arange(width, dtype="int32")[None, :]
    in_rows = (ys >= y0) & (ys < y0 + size)  # (B, H)
    in_cols = (xs >= x0) & (xs < x0 + size)  # (B, W)
    square = in_rows[:, :, None, None] & in_cols[:, None, :, None]  # (B, H, W, 1)
    return ops.where(square, ops.zeros((), images.dtype), images)


def augment(
    padded_images,
    params: AugmentParams,
    with_cutout: bool = True,
    geometry: Geometry = CIFAR,
    normalization=None,
):
    """Recipe augmentation of padded uint8 images (B, 40, 40, 3) -> float32 (B, 32, 32, 3)
    (other sizes: `geometry`'s, padded by its `pad`).

    The recipe normalises, pads, crops, flips, then cuts out. Normalising is per pixel, so
    doing it after the crop and flip gives identical values on 40/32 squared fewer pixels;
    cutout comes after normalising, so its zeros are the mean colour. Without cutout the
    draws are the same (`params`), and the cutout ones unused. `normalization`: as
    `normalize`'s.
    """
    images = crop(padded_images, params.crop_y, params.crop_x, geometry.size)
    images = normalize(flip_left_right(images, params.flip), normalization)
    if not with_cutout:
        return images
    return cutout(images, params.cutout_y, params.cutout_x, geometry.cutout)


def augment_gathered(
    padded_images,
    indices,
    seed,
    with_cutout: bool = True,
    geometry: Geometry = CIFAR,
    normalization=None,
):
    """`augment` of the images at `indices` of a padded set, with draws from `seed`.

    This is the whole of device-side augmentation: the set stays on the accelerator and
    each step gathers and augments its batch inside the compiled step.

    Args:
        padded_images: uint8 (N, 40, 40, 3) (other sizes: padded by `geometry.pad`).
        indices: int (B,), the batch.
        seed: A stateless seed from `tf_resnet9.backends`.
        with_cutout: Cut out a square (the recipe's last step).
        geometry: The crop's and cutout's sizes (`geometry`).
        normalization: As `normalize`'s.
    """
    params = draw_params(indices.shape[0], seed, geometry)
    images = ops.take(padded_images, indices, axis=0)
    return augment(images, params, with_cutout, geometry, normalization)
