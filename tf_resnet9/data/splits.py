"""A run's data: the training, validation and test splits drawn from a located data set
(`tf_resnet9.data.cifar`), and the record of how they were drawn, for results.json."""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from tf_resnet9.data import cifar
from tf_resnet9.errors import ConfigError

Split = tuple[np.ndarray, np.ndarray]  # uint8 images (N, 32, 32, 3), int32 labels (N,)


@dataclasses.dataclass(frozen=True)
class Splits:
    """The images a run trains, validates and tests on.

    Attributes:
        source: Where they were read.
        class_names: The name of each class, in label order.
        train: The training images (after --val_split and --train_limit).
        test: The test images (after --test_limit).
        val: The validation images held out of the training set, or None.
        record: How they were drawn: results.json's "data".
    """

    source: cifar.Source | str
    class_names: tuple[str, ...]
    train: Split
    test: Split
    val: Split | None
    record: dict

    @classmethod
    def of_arrays(cls, train: Split, test: Split | None = None, dataset="cifar10") -> Splits:
        """Splits of arrays in memory (the benchmarks' synthetic images; the test set the
        training set where not given), named as `dataset`'s classes."""
        test = train if test is None else test
        record = {"source": "arrays", "train_images": len(train[1]), "test_images": len(test[1])}
        return cls("arrays", cifar.class_names(dataset), train, test, None, record)


def load_splits(
    data_dir: str | os.PathLike | None,
    dataset: str,
    val_split: int = 0,
    train_limit: int | None = None,
    test_limit: int | None = None,
    subset_seed: int = 0,
) -> Splits:
    """Reads the data set and draws the run's splits: `val_split` training images held out
    (random, class-balanced), then random, class-balanced subsets of `train_limit` of the
    rest and `test_limit` of the test set; each draw seeded by `subset_seed`.

    Raises:
        DatasetError: the data set is missing or corrupt.
        ConfigError: `val_split` leaves no training images.
    """
    source = cifar.locate(data_dir, dataset)
    (x_train, y_train), (x_test, y_test) = cifar.read(source)
    (x_train, y_train), val = _hold_out(x_train, y_train, val_split, subset_seed)
    train = _subset(x_train, y_train, train_limit, subset_seed)
    test = _subset(x_test, y_test, test_limit, subset_seed)
    classes = cifar.num_classes(dataset)
    record = {
        "source": str(source),
        "train_images": len(train[1]),
        "validation_images": len(val[1]) if val else 0,
        "test_images": len(test[1]),
        "train_subset": _subset_record(train_limit, subset_seed, train[1], classes),
        "test_subset": _subset_record(test_limit, subset_seed, test[1], classes),
    }
    return Splits(source, cifar.class_names(source), train, test, val, record)


def _hold_out(images, labels, count: int, seed: int) -> tuple[Split, Split | None]:
    """((training images, labels), (held-out images, labels) or None), before any
    --train_limit subset is drawn."""
    if not count:
        return (images, labels), None
    if count >= len(labels):
        raise ConfigError(
            "val_split",
            count,
            f"it must leave training images: the training set has {len(labels)}.",
        )
    held_out = balanced_subset(labels, count, seed)
    keep = np.setdiff1d(np.arange(len(labels)), held_out)
    return (images[keep], labels[keep]), (images[held_out], labels[held_out])


def _subset(images, labels, limit: int | None, seed: int) -> Split:
    chosen = balanced_subset(labels, limit, seed)
    return images[chosen], labels[chosen]


def _subset_record(limit: int | None, seed: int, labels: np.ndarray, classes: int) -> dict | None:
    """How a --train_limit / --test_limit subset was drawn, and its images per class."""
    if limit is None:
        return None
    return {
        "limit": limit,
        "method": "random, class-balanced",
        "seed": seed,
        "per_class": np.bincount(labels, minlength=classes).tolist(),
    }


def balanced_subset(labels: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    """Indices of a random subset of `limit` images, as even across classes as the data allows.

    Every class gets limit // classes images (one more for a random choice of classes, for
    the remainder); a class with fewer images gives all it has, and the others make up the
    difference. The classes are those in `labels`, however many (10 for CIFAR-10, 100 for
    CIFAR-100). The indices are in the data's order. Copies of a data set sorted by class
    make a first-N subset hold one class only: this one represents them all.

    Args:
        labels: int (N,).
        limit: Images wanted; None, or N or more: all of them.
        seed: Seeds the choice: the same seed, labels and limit give the same subset.
    """
    if limit is None or limit >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    members = [rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    available = np.array([len(m) for m in members])
    quota = np.zeros(len(members), np.int64)
    while quota.sum() < limit:
        open_classes = np.flatnonzero(quota < available)
        share = (limit - quota.sum()) // len(open_classes)
        if share == 0:  # fewer images left to give than classes that can give them
            quota[rng.choice(open_classes, limit - quota.sum(), replace=False)] += 1
        else:
            quota[open_classes] = np.minimum(quota[open_classes] + share, available[open_classes])
    return np.sort(np.concatenate([m[:q] for m, q in zip(members, quota)]))
