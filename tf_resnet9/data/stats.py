"""The per-channel mean and standard deviation of a training set, on the 0..255 scale: what
the recipe normalises with (`tf_resnet9.data.augment.MEAN`, `STD` are CIFAR-10's) and the
faster recipe's whitening is computed after.

They are counted exactly: a histogram of the 256 values per channel, in integers, whatever
the order or the chunking, so an in-memory and an on-disk copy of a set give the same
figures; the mean and the standard deviation then follow in float64.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

# Per-channel statistics of the CIFAR-10 training set, 0..255 scale: what the recipe
# normalises with (README.org, "The recipe").
MEAN = (125.31, 122.95, 113.87)
STD = (62.99, 62.09, 66.70)
# airbench's CIFAR_MEAN and CIFAR_STD, of pixels / 255 (it divides by 255 first), and the
# same on the 0..255 scale: its recipes' normalisation (`--normalize airbench`).
AIRBENCH_MEAN = (0.4914, 0.4822, 0.4465)
AIRBENCH_STD = (0.2470, 0.2435, 0.2616)
AIRBENCH = tuple(255 * m for m in AIRBENCH_MEAN), tuple(255 * s for s in AIRBENCH_STD)
DECIMALS = 4  # kept in the record and used by the model alike: 1e-4 of 255, far below noise
CHUNK_BYTES = 64 * 2**20  # images counted at once (a memory-mapped set is read in chunks)


class ChannelStats(NamedTuple):
    """Per-channel mean and standard deviation (population), 0..255 scale, each a tuple of
    one float per channel, rounded to `DECIMALS`."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def as_dict(self) -> dict:
        return {"mean": list(self.mean), "std": list(self.std)}


def channel_stats(images: np.ndarray) -> ChannelStats:
    """The per-channel mean and standard deviation of uint8 images (N, H, W, C).

    The standard deviation is the population one (divided by the pixel count), over every
    pixel of every image. The JPEG copy of CIFAR-10's training set gives (125.2688,
    122.9330, 113.8628) and (62.5341, 61.9093, 66.4603) (benchmarks/results/cifar-jpeg-
    folder-check.json); the recipe's constants, `augment.MEAN` and `STD`, are the original
    set's, which is not on these machines to check them against.

    Raises:
        ValueError: not uint8 (N, H, W, C) with N > 0.
    """
    if images.dtype != np.uint8 or images.ndim != 4 or len(images) == 0:
        raise ValueError(
            f"images {images.dtype} {images.shape} are invalid: expected uint8 (N>0, H, W, C)."
        )
    channels = images.shape[-1]
    counts = np.zeros((channels, 256), np.int64)
    rows = max(1, CHUNK_BYTES // max(1, images[0].nbytes))
    for start in range(0, len(images), rows):
        chunk = np.asarray(images[start : start + rows]).reshape(-1, channels)
        for c in range(channels):
            counts[c] += np.bincount(chunk[:, c], minlength=256)
    values = np.arange(256, dtype=np.float64)
    total = counts.sum(axis=1).astype(np.float64)  # pixels per channel
    mean = (counts @ values) / total
    variance = (counts @ values**2) / total - mean**2
    std = np.sqrt(np.maximum(variance, 0.0))
    return ChannelStats(_rounded(mean), _rounded(std))


def _rounded(values: np.ndarray) -> tuple[float, ...]:
    return tuple(round(float(v), DECIMALS) for v in values)
