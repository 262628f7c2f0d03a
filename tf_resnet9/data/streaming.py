"""The training set streamed from the host each epoch (`StreamingInput`), for a set that does
not fit the accelerator (or a `--max_device_memory` budget): `fits_on_device` decides.

`DeviceInput` (`tf_resnet9.data.inputs`) places the padded set on the device once and
gathers each step's batch there. Here the set stays on the host, in memory or memory-mapped
from disk (`folders.read_class_folder(cache_dir=...)`), and each step's images are gathered
there by a data loader: tf.data on TensorFlow, grain on JAX (where the GPU machine has no
TensorFlow), both reading ahead on threads while the device trains. The augmentation stays
on the device, inside the compiled step, as `DeviceInput`'s.

For a seed, the batches are `DeviceInput`'s exactly: the epoch's shuffle is the same
backend permutation of `epoch_seed` (drawn on the device, then read back: N int32), every
step has the same augmentation seed, and padding per image then augmenting is the same ops
on the same pixels as padding the set then gathering (`tests/test_streaming.py` checks it
step for step).
"""

from __future__ import annotations

import copy
import dataclasses
import os
from typing import NamedTuple

import numpy as np
from keras import ops

from tf_resnet9 import backends
from tf_resnet9.backends.device import format_bytes
from tf_resnet9.data import augment
from tf_resnet9.data.inputs import (
    alternating_augmented,
    check_flip,
    epoch_seed,
    hashable_normalization,
    input_geometry,
    run_flips,
)

LOADERS = ("tf.data", "grain")
# The share of the device's memory the padded training set may take and still be placed
# there: the rest is the model's, its optimizer's and the activations' (ResNet9 at batch
# 512 in float32 needs a few GB), and the evaluation sets'.
DEVICE_SHARE = 0.5
READ_AHEAD = 4  # chunks the loaders prepare ahead of the device
# The most image bytes in one chunk: a GPU run's steps_per_call is an epoch, which streamed
# would gather the whole set before the first call (and hold it on the device, which is what
# streaming avoids); chunks this size let the loader work while the device trains (CIFAR at
# batch 512: 21 steps a call; 64x64: 5).
CHUNK_BYTES = 32 * 2**20
LOADER_THREADS = max(1, min(8, os.cpu_count() or 1))  # threads gathering batches


@dataclasses.dataclass(frozen=True)
class StreamBatches:
    """Step i of a `StreamingInput` chunk: its images, gathered on the host, padded,
    cropped, flipped, normalised and (with `cutout`) cut out on the device, as
    `DeviceBatches` does (with `flip` "alternating" the chunk adds the step's images'
    flips and the epoch)."""

    pad: str
    cutout: bool
    geometry: augment.Geometry = augment.CIFAR  # the padding's, crop's and cutout's sizes
    normalization: tuple | None = None  # (mean, std) per channel; None: CIFAR-10's
    flip: str = "random"

    @property
    def batch_axes(self) -> tuple:
        # Each step's images (and flips) split along the batch; the seeds, the epoch whole.
        return (1, 1, None) + ((1, None) if self.flip == "alternating" else ())

    @property
    def shared(self) -> tuple:
        # Each seed streams its own batches.
        return (False, False, False) + ((False, True) if self.flip == "alternating" else ())

    def count(self, chunk) -> int:
        return chunk[2].shape[0]

    def __call__(self, chunk, i):
        images, labels, seeds = chunk[:3]  # (S, B, H, W, 3) uint8, (S, B) int32, S seeds
        geometry = self.geometry
        padded = augment.pad_images(images[i], self.pad, geometry.pad)  # (B, H + 2 pad, ...)
        if self.flip == "alternating":
            flips, epoch = chunk[3:]
            batch = ops.arange(padded.shape[0])
            images = alternating_augmented(
                padded, batch, seeds[i], flips[i], epoch, self.cutout, geometry,
                self.normalization,
            )  # fmt: skip
            return images, labels[i]
        params = augment.draw_params(padded.shape[0], seeds[i], geometry)
        images = augment.augment(padded, params, self.cutout, geometry, self.normalization)
        return images, labels[i]


class StreamingInput:
    """The training set read from the host each epoch: a `TrainInput`
    (`tf_resnet9.data.inputs`) whose batches are `DeviceInput`'s for the same seed.

    A chunk is (uint8 images (S, B, H, W, 3), int32 labels (S, B), the S steps' seeds).

    Args:
        images: uint8 (N, H, W, 3): an array, or one memory-mapped from disk (np.load with
            mmap_mode="r"), which is then read, not loaded.
        labels: int (N,).
        batch_size, seed, pad, cutout: As `DeviceInput`'s.
        steps_per_call: The most steps per compiled call; fewer where that many would hold
            over `CHUNK_BYTES` of images.
        placement: Where the chunks go (`tf_resnet9.backends.placement`): the compiled
            steps place them as they call (`CompiledSteps.train_fn`).
        loader: "tf.data" or "grain"; None: tf.data on TensorFlow, grain on JAX.
        threads: Threads gathering batches.
        geometry, normalization: As `DeviceInput`'s.
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
        loader: str | None = None,
        threads: int = LOADER_THREADS,
        geometry: augment.Geometry | None = None,
        normalization=None,
        flip: str = "random",
    ):
        del placement  # the compiled steps place each chunk (`batches.batch_axes`)
        loader = loader or ("tf.data" if backends.NAME == "tensorflow" else "grain")
        if loader not in LOADERS:
            raise ValueError(f"loader={loader!r} is invalid: expected one of {LOADERS}.")
        if pad not in ("reflect", "zero"):  # checked now, not at the first compiled step
            raise ValueError(f"mode={pad!r} is invalid: expected 'reflect' or 'zero'.")
        self.images = images
        self.labels = np.asarray(labels, np.int32)
        self.batch_size = batch_size
        self.steps = len(self.labels) // batch_size
        step_bytes = batch_size * int(np.prod(images.shape[1:]))
        self.steps_per_call = max(1, min(steps_per_call, CHUNK_BYTES // step_bytes))
        self.seed = seed
        self.loader = loader
        self.threads = threads
        geometry = input_geometry(images, geometry)
        normalization = hashable_normalization(normalization)
        self.batches = StreamBatches(pad, cutout, geometry, normalization, check_flip(flip))

    def reseeded(self, seed: int) -> StreamingInput:
        """The same input drawing its shuffles and augmentations from `seed`."""
        other = copy.copy(self)
        other.seed = seed
        return other

    def epoch(self, number: int, steps: int | None = None):
        """The chunks of epoch `number` (1-based), of its first `steps` steps or all, read
        ahead by the loader."""
        order, step_seeds = self.epoch_draws(number)
        last = self.steps if steps is None else steps
        order = order[:last]
        extra = None
        if self.batches.flip == "alternating":  # each image's flip, the epoch from 0
            flips = ops.convert_to_numpy(run_flips(self.seed, len(self.labels)))[order]
            extra = flips, ops.convert_to_tensor(number - 1, "int32")
        chunks = self._tf_data(order) if self.loader == "tf.data" else self._grain(order)
        for start, (images, labels) in zip(range(0, last, self.steps_per_call), chunks):
            end = min(start + self.steps_per_call, last)
            chunk = images, labels, step_seeds[start:end]
            yield chunk if extra is None else (*chunk, extra[0][start:end], extra[1])

    def epoch_draws(self, number: int) -> tuple[np.ndarray, object]:
        """(the steps' image indices (S, B), on the host; the steps' seeds): what
        `DeviceInput.epoch` draws on the device, from the same seeds."""
        seed = backends.make_seed(epoch_seed(self.seed, number))
        shuffle_seed, augment_seed = backends.split_seed(seed, 2)
        count = self.steps * self.batch_size
        order = backends.permutation(shuffle_seed, len(self.labels))[:count]
        order = ops.convert_to_numpy(order).reshape(self.steps, self.batch_size)
        return order, backends.split_seed(augment_seed, self.steps)

    def gather(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One step's (images, labels) from the host copy; a memory-mapped copy is read
        in ascending order (its pages in file order), then put in the step's order."""
        ascending = np.argsort(indices, kind="stable")
        images = np.empty((len(indices), *self.images.shape[1:]), np.uint8)
        images[ascending] = self.images[indices[ascending]]
        return images, self.labels[indices]

    def _grain(self, order: np.ndarray):
        import grain

        steps = grain.MapDataset.source(order).map(self.gather)
        chunks = steps.batch(self.steps_per_call)  # the last chunk may be shorter
        options = grain.ReadOptions(num_threads=self.threads, prefetch_buffer_size=READ_AHEAD)
        return iter(chunks.to_iter_dataset(options))

    def _tf_data(self, order: np.ndarray):
        import tensorflow as tf

        image_shape = (self.batch_size, *self.images.shape[1:])

        def gather(indices):
            images, labels = tf.numpy_function(
                self.gather, [indices], (tf.uint8, tf.int32), stateful=False
            )
            return tf.ensure_shape(images, image_shape), tf.ensure_shape(labels, image_shape[:1])

        steps = tf.data.Dataset.from_tensor_slices(order).map(
            gather, num_parallel_calls=self.threads, deterministic=True
        )
        options = tf.data.Options()
        options.threading.private_threadpool_size = self.threads
        chunks = steps.batch(self.steps_per_call).prefetch(READ_AHEAD).with_options(options)
        return iter(chunks)


class Placement(NamedTuple):
    """Where the training set goes, and why: `fits_on_device`'s answer, for results.json."""

    stream: bool  # True: StreamingInput; False: DeviceInput
    set_bytes: int  # what DeviceInput would place: the padded set, with the unpadded one
    limit_bytes: int | None  # what it may take: DEVICE_SHARE of the memory, or the budget
    reason: str

    def as_dict(self) -> dict:
        return self._asdict()


def fits_on_device(
    shape: tuple[int, ...],
    device_bytes: int | None,
    budget_bytes: int | None = None,
    pad: int = augment.PAD,
) -> Placement:
    """Whether a training set of uint8 images `shape` (N, H, W, C) is placed on the device
    (`DeviceInput`) or streamed (`StreamingInput`).

    `DeviceInput` holds the padded set, (N, H + 2 pad, W + 2 pad, C) bytes, and, while it
    pads, the unpadded one too: their sum must be within `budget_bytes` where one is given
    (`--max_device_memory`), else within `DEVICE_SHARE` of the device's memory. An unknown
    memory (None) and no budget: placed, as before this choice existed.
    """
    n, height, width, channels = shape
    set_bytes = n * channels * (height * width + (height + 2 * pad) * (width + 2 * pad))
    if budget_bytes is not None:
        limit, source = budget_bytes, f"the budget ({format_bytes(budget_bytes)})"
    elif device_bytes is not None:
        limit = int(device_bytes * DEVICE_SHARE)
        source = f"{DEVICE_SHARE:.0%} of the device's {format_bytes(device_bytes)}"
    else:
        return Placement(False, set_bytes, None, "the device's memory is unknown: placed")
    stream = set_bytes > limit
    verdict = "over" if stream else "within"
    reason = f"the set's {format_bytes(set_bytes)} are {verdict} {source}"
    return Placement(stream, set_bytes, limit, reason + (": streamed" if stream else ": placed"))
