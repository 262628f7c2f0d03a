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
from tf_resnet9.data import augment


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

    def epoch(self, number: int) -> Iterator[tuple]:
        """The chunks of epoch `number` (1-based), one per compiled call."""


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
    the device, cropped, flipped, normalised and (with `cutout`) cut out there."""

    cutout: bool
    geometry: augment.Geometry = augment.CIFAR  # the crop's and cutout's sizes
    normalization: tuple | None = None  # (mean, std) per channel; None: CIFAR-10's
    # The padded set, its labels and the steps' seeds on every device; each step's images
    # split along the batch.
    batch_axes = (None, None, 1, None)
    shared = (True, True, False, False)  # the set is every seed's; the draws are its own

    def count(self, chunk) -> int:
        return chunk[2].shape[0]

    def __call__(self, chunk, i):
        padded, labels, batches, seeds = chunk
        images = augment.augment_gathered(
            padded, batches[i], seeds[i], self.cutout, self.geometry, self.normalization
        )
        return images, ops.take(labels, batches[i], axis=0)


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
        self.batches = DeviceBatches(cutout, geometry, hashable_normalization(normalization))

    def reseeded(self, seed: int) -> DeviceInput:
        """The same input drawing its shuffles and augmentations from `seed`: the padded
        set on the device is shared, not padded and placed again."""
        other = copy.copy(self)
        other.seed = seed
        return other

    def epoch(self, number: int):
        seed = backends.make_seed(epoch_seed(self.seed, number))
        shuffle_seed, augment_seed = backends.split_seed(seed, 2)
        count = self.steps * self.batch_size
        order = backends.permutation(shuffle_seed, int(self.labels.shape[0]))[:count]
        batches = ops.reshape(order, (self.steps, self.batch_size))  # (S, B)
        step_seeds = backends.split_seed(augment_seed, self.steps)
        for start in range(0, self.steps, self.steps_per_call):
            end = start + self.steps_per_call
            yield self.padded, self.labels, batches[start:end], step_seeds[start:end]


def hashable_normalization(normalization):
    """(mean, std) as tuples of floats, hashable (the compiled steps key their programs on
    the `Batches`), or None."""
    if normalization is None:
        return None
    mean, std = normalization
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)
