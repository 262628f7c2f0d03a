"""Feeding the compiled training steps: the training set augmented on the accelerator
(`DeviceInput`), or by tf.data on the host (`HostInput`, in `tf_resnet9.data.host_input`).

Both are a `TrainInput`: per epoch, one chunk of arrays per compiled call (`epoch`), and
`batches`, the function the compiled steps call inside the compiled program to take step i's
(images, labels) out of a chunk. Each input owns its whole augmentation (pad, crop, flip,
cutout): the steps see only normalised, augmented float32 batches.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator
from typing import Protocol

import numpy as np
from keras import ops

from tf_resnet9 import backends
from tf_resnet9.backends.placement import SingleDevice
from tf_resnet9.data import airbench_augment, augment


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch's shuffle and augmentation, from the run's seed and the epoch.

    Any epoch can be drawn on its own, so a run resumed at epoch k draws exactly what an
    uninterrupted run draws there: no random state needs saving beyond the seed.
    """
    # 31 bits: a valid seed for both backends' stateless generators and for tf.data.
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0] >> 1)


def chunk_lengths(steps: int, steps_per_call: int) -> list[int]:
    """Steps of each call in an epoch (of its first `steps`): full chunks, then the
    remainder."""
    return [min(steps_per_call, steps - start) for start in range(0, steps, steps_per_call)]


class Batches(Protocol):
    """Takes a step's batch out of a chunk, inside the compiled steps. Hashable: the compiled
    steps keep one program per distinct `Batches` (a stand-in input for compiling and the
    real one share theirs)."""

    batch_axes: tuple  # per array of a chunk, its batch axis (None: not split by data parallel)
    # Per array of a chunk, whether it is the same for every seed (the training set), which
    # seeds trained together (`tf_resnet9.training.lanes`) then share instead of stacking.
    shared: tuple

    def count(self, chunk) -> int:
        """Steps in the chunk (a static shape)."""

    def __call__(self, chunk, i) -> tuple:
        """(float32 images (B, S, S, 3), int32 labels (B,)) of step i of the chunk (S: the
        image size, CIFAR's 32)."""


class TrainInput(Protocol):
    batch_size: int  # images per step
    steps: int  # steps per epoch; the last partial batch is dropped
    steps_per_call: int
    batches: Batches

    def epoch(self, number: int, steps: int | None = None) -> Iterator[tuple]:
        """The chunks of epoch `number` (1-based), one per compiled call: of its first
        `steps` steps (a run's last, partial epoch), or all."""


@dataclasses.dataclass(frozen=True)
class PreparedBatches:
    """Step i of a chunk of batches prepared already, (images (S, B, 32, 32, 3) float32,
    labels (S, B) int32): what `HostInput`'s tf.data pipeline yields."""

    batch_axes = (1, 1)
    shared = (False, False)

    def count(self, chunk) -> int:
        return chunk[0].shape[0]

    def __call__(self, chunk, i):
        images, labels = chunk
        return images[i], labels[i]


@dataclasses.dataclass(frozen=True)
class DeviceBatches:
    """Step i of a `DeviceInput` chunk: its images gathered from the padded training set on
    the device, cropped, flipped, normalised and (with `cutout`) cut out there: Page's
    augmentation (a flip drawn per image per epoch), or airbench's (`flip` "alternating":
    `tf_resnet9.data.airbench_augment`; its chunk adds each image's flip and the epoch)."""

    cutout: bool
    geometry: augment.Geometry = augment.CIFAR  # the crop's and cutout's sizes
    normalization: tuple | None = None  # (mean, std) per channel; None: CIFAR-10's
    flip: str = "random"

    @property
    def batch_axes(self) -> tuple:
        # The padded set, its labels and the steps' seeds (and the flips, the epoch) on
        # every device; each step's images split along the batch.
        return (None, None, 1, None) + ((None, None) if self.flip == "alternating" else ())

    @property
    def shared(self) -> tuple:
        # The set is every seed's; the draws (and the flips) are each seed's own.
        return (True, True, False, False) + ((False, True) if self.flip == "alternating" else ())

    def count(self, chunk) -> int:
        return chunk[2].shape[0]

    def __call__(self, chunk, i):
        padded, labels, batches, seeds = chunk[:4]
        indices = batches[i]
        if self.flip == "alternating":
            flips, epoch = chunk[4:]
            images = alternating_augmented(
                padded, indices, seeds[i], flips, epoch, self.cutout, self.geometry,
                self.normalization,
            )  # fmt: skip
        else:
            images = augment.augment_gathered(
                padded, indices, seeds[i], self.cutout, self.geometry, self.normalization
            )
        return images, ops.take(labels, indices, axis=0)


def alternating_augmented(
    padded, indices, seed, flips, epoch, with_cutout: bool, geometry, normalization
):
    """airbench's augmentation of the images at `indices` of a padded set: each image's
    flip drawn once (`flips`, the whole set's) and every image mirrored on odd `epoch`s
    (from 0), a translation within `geometry.pad` and (`with_cutout`) a cutout of
    `geometry.cutout`, drawn from `seed` (`tf_resnet9.data.airbench_augment`)."""
    size = geometry.cutout if with_cutout else 0
    draws = airbench_augment.draw_epoch(indices.shape[0], seed, geometry.pad, size, geometry.size)
    images, image_flips = ops.take(padded, indices, axis=0), ops.take(flips, indices, axis=0)
    normalization = normalization or (augment.MEAN, augment.STD)  # as Page's path's default
    return airbench_augment.augment(
        images, image_flips, draws, epoch, geometry.pad, size, normalization
    )


def run_flips(seed: int, count: int):
    """Each image's flip of a run with airbench's alternating flip: drawn once, before the
    first epoch, from the run's seed (epoch 0's, which no epoch of training draws)."""
    return airbench_augment.draw_flips(count, backends.make_seed(epoch_seed(seed, 0)))


def input_geometry(images, geometry: augment.Geometry | None) -> augment.Geometry:
    """`geometry`, else the recipe's scaled to the images' size (`augment.geometry`).

    Raises:
        ValueError: the images are not square, or not of `geometry`'s size.
    """
    height, width = images.shape[1:3]
    if height != width:
        raise ValueError(f"images of {height}x{width} are invalid: expected square images.")
    geometry = geometry or augment.geometry(height)
    if geometry.size != height:
        raise ValueError(f"geometry={geometry} is invalid for images of {height}x{width}.")
    return geometry


class DeviceInput:
    """The training set on the accelerator: shuffled, cropped, flipped and cut out there.

    Creating it is the recipe's preprocessing: the images go to the device once and are
    padded there. Each epoch's shuffle and every step's random draws are made on the device
    too; a chunk is (padded images, labels, the steps' image indices, the steps' seeds).

    Args:
        images: uint8 (N, 32, 32, 3).
        labels: int (N,).
        batch_size: Images per step; the last partial batch of an epoch is dropped.
        steps_per_call: Steps per compiled call.
        seed: Seeds the shuffles and augmentations of all epochs (see `epoch_seed`).
        pad: "reflect" or "zero" (`tf_resnet9.data.augment.pad_images`).
        cutout: Cut out a square in every image.
        placement: Where the arrays live (`tf_resnet9.backends.placement`); the padded set
            is placed once, here.
        geometry: The padding, crop and cutout (`augment.Geometry`); None: the recipe's
            at the images' size (`augment.geometry`: CIFAR's 4 and 8 at 32x32).
        normalization: (mean, std) per channel on the 0..255 scale (the training images',
            `Splits.normalization`); None: CIFAR-10's (`augment.MEAN`, `STD`).
        flip: "random" (a flip drawn per image per epoch: Page's) or "alternating"
            (airbench's: drawn once per image, the whole set mirrored every other epoch).
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
        placement=None,
        geometry: augment.Geometry | None = None,
        normalization=None,
        flip: str = "random",
    ):
        placement = placement or SingleDevice()
        geometry = input_geometry(images, geometry)
        padded = augment.pad_images(ops.convert_to_tensor(images), pad, geometry.pad)
        self.padded = placement.put(padded)  # (N, 40, 40, 3) for CIFAR
        self.labels = placement.put(ops.convert_to_tensor(np.asarray(labels, np.int32)))
        self.batch_size = batch_size
        self.steps = len(images) // batch_size
        self.steps_per_call = steps_per_call
        self.seed = seed
        self.placement = placement
        normalization = hashable_normalization(normalization)
        self.batches = DeviceBatches(cutout, geometry, normalization, check_flip(flip))

    def reseeded(self, seed: int) -> DeviceInput:
        """The same input drawing its shuffles and augmentations from `seed`: the padded
        set on the device is shared, not padded and placed again."""
        other = copy.copy(self)
        other.seed = seed
        return other

    def epoch(self, number: int, steps: int | None = None):
        seed = backends.make_seed(epoch_seed(self.seed, number))
        shuffle_seed, augment_seed = backends.split_seed(seed, 2)
        count = self.steps * self.batch_size
        order = backends.permutation(shuffle_seed, int(self.labels.shape[0]))[:count]
        batches = ops.reshape(order, (self.steps, self.batch_size))  # (S, B)
        step_seeds = backends.split_seed(augment_seed, self.steps)
        extra = ()
        if self.batches.flip == "alternating":  # the run's flips, the epoch from 0
            flips = run_flips(self.seed, int(self.labels.shape[0]))
            extra = (self.placement.put(flips), ops.convert_to_tensor(number - 1, "int32"))
        last = self.steps if steps is None else steps
        for start in range(0, last, self.steps_per_call):
            end = min(start + self.steps_per_call, last)
            yield self.padded, self.labels, batches[start:end], step_seeds[start:end], *extra


FLIPS = ("random", "alternating")


def check_flip(flip: str) -> str:
    if flip not in FLIPS:
        raise ValueError(f"flip={flip!r} is invalid: expected one of {', '.join(FLIPS)}.")
    return flip


def hashable_normalization(normalization):
    """(mean, std) as tuples of floats, hashable (the compiled steps key their programs on
    the `Batches`), or None."""
    if normalization is None:
        return None
    mean, std = normalization
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)
