"""A run's data: the training, validation and test splits drawn from a data set (the
official CIFAR files, `tf_resnet9.data.cifar`; a class folder, `tf_resnet9.data.folders`;
tensorflow-datasets by name, `tf_resnet9.data.tfds_source`), the per-channel statistics of
the training images (`tf_resnet9.data.stats`), and the record of how they were drawn and
what was read, for results.json."""

from __future__ import annotations

import dataclasses
import hashlib
import os

import numpy as np

from tf_resnet9.data import cifar, folders, stats, tfds_source
from tf_resnet9.data import images as image_files
from tf_resnet9.errors import ConfigError, DatasetError

Split = tuple[np.ndarray, np.ndarray]  # uint8 images (N, S, S, 3), int32 labels (N,)

FOLDER = "folder"  # the `dataset` that reads data_dir as a class folder


@dataclasses.dataclass(frozen=True)
class Splits:
    """The images a run trains, validates and tests on.

    Attributes:
        source: Where they were read (`cifar.Source`, `folders.FolderSource`,
            `tfds_source.TfdsSource`; `str()` names it).
        class_names: The name of each class, in label order.
        train: The training images (after --val_split and --train_limit).
        test: The test images (after --test_limit); where the data has no test set, the
            images held out of the training set by --val_split.
        val: The validation images held out of the training set, or None.
        record: How they were drawn (where from, how many, the subsets): results.json's
            "data" as it has been; `results_record` adds what follows.
        normalization: The per-channel mean and standard deviation of `train`'s images.
        image_size: The images' height and width.
        read: What the source read: its format, files, what was resized or converted (a
            class folder's and a tfds data set's readers say more than CIFAR's).
    """

    source: object
    class_names: tuple[str, ...]
    train: Split
    test: Split
    val: Split | None
    record: dict
    normalization: stats.ChannelStats | None = None
    image_size: int = cifar.IMAGE_SHAPE[0]
    read: dict = dataclasses.field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def results_record(self) -> dict:
        """`record` with the image size, the normalisation and what was read: all of
        results.json's "data" once the run records it (`record` alone keeps the files
        of runs so far as they were)."""
        normalization = self.normalization.as_dict() if self.normalization else None
        return self.record | {
            "image_size": self.image_size,
            "normalization": normalization and normalization | {"of": "the training images"},
            "read": self.read,
        }

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
    *,
    image_size: int | None = None,
    skip_bad: bool = False,
    cache_dir: str | os.PathLike | None = None,
) -> Splits:
    """Reads the data set and draws the run's splits: `val_split` training images held out
    (random, class-balanced), then random, class-balanced subsets of `train_limit` of the
    rest and `test_limit` of the test set; each draw seeded by `subset_seed`.

    Args:
        data_dir: Where the data set is (see `dataset`).
        dataset: "cifar10" or "cifar100": the official files in `data_dir`
            (`cifar.load_dataset`). "folder": `data_dir` is a class folder
            (`folders.read_class_folder`). "tfds:NAME": a tensorflow-datasets data set
            prepared in `data_dir` (None: tfds' default; `tfds_source.read_tfds`).
        val_split, train_limit, test_limit, subset_seed: As above. Where the data has no
            test set (a class folder with train/ alone, a tfds data set without a test
            split), the `val_split` images held out are the test set.
        image_size: The side every image is made (Pillow, BICUBIC: `images`); None: the
            data's own (CIFAR's 32; a folder's most common size; a tfds data set's size).
        skip_bad: A class folder's unreadable or odd files are skipped (and counted)
            instead of refused.
        cache_dir: A class folder is decoded into memory-mapped files there (kept on disk,
            for a set larger than memory); subsets of it are written beside them.

    Raises:
        DatasetError: the data set is missing or corrupt.
        ConfigError: `val_split` leaves no training images, or the data has no test set
            and `val_split` is 0; `data_dir` missing for a class folder.
    """
    source, class_names, (x_train, y_train), test, read = _read(
        data_dir, dataset, image_size, skip_bad, cache_dir
    )
    (x_train, y_train), val = _hold_out(x_train, y_train, val_split, subset_seed)
    if test is None:
        test, val = _held_out_as_test(source, val, val_split, read)
    train = _subset(x_train, y_train, train_limit, subset_seed)
    test = _subset(*test, test_limit, subset_seed)
    classes = len(class_names)
    normalization = stats.channel_stats(train[0])
    record = {
        "source": str(source),
        "train_images": len(train[1]),
        "validation_images": len(val[1]) if val else 0,
        "test_images": len(test[1]),
        "train_subset": _subset_record(train_limit, subset_seed, train[1], classes),
        "test_subset": _subset_record(test_limit, subset_seed, test[1], classes),
    }
    size = int(train[0].shape[1])
    return Splits(source, class_names, train, test, val, record, normalization, size, read)


def _held_out_as_test(source, val: Split | None, val_split: int, read: dict):
    """(test, val) of data without a test set: the images held out are the test set."""
    if val is None:
        raise ConfigError(
            "val_split",
            val_split,
            f"{source} has no test set: hold one out of the training images with --val_split N.",
        )
    read["test_set"] = f"the {len(val[1])} images of --val_split"
    return val, None


def _read(data_dir, dataset: str, image_size, skip_bad, cache_dir):
    """(source, class names, training split, test split or None, what was read)."""
    if dataset == FOLDER:
        if data_dir is None:
            raise ConfigError(
                "data_dir", None, "--dataset folder reads a class folder: give its path."
            )
        data = folders.read_class_folder(data_dir, image_size, skip_bad, cache_dir)
        return data.source, data.class_names, data.train, data.test, data.record
    name = tfds_source.tfds_name(dataset)
    if name is not None:
        data = tfds_source.read_tfds(name, data_dir, image_size)
        return data.source, data.class_names, data.train, data.test, data.record
    try:
        source = cifar.locate(data_dir, dataset)
    except DatasetError as e:
        if data_dir is None or not folders.is_class_folder(data_dir):
            raise
        raise DatasetError(
            f"{e} {data_dir} is a class folder (train/<class>/*): read it with --dataset {FOLDER}."
        ) from None
    train, test = cifar.read(source)
    read = {"format": f"official {cifar.DATASETS[dataset].title} files ({source.kind})"}
    if image_size is not None and image_size != cifar.IMAGE_SHAPE[0]:
        train, test = [(image_files.resized(x, image_size), y) for x, y in (train, test)]
        read["resized"] = {"count": len(train[1]) + len(test[1]), "to": image_size}
    return source, cifar.class_names(source), train, test, read


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
    return (take(images, keep), labels[keep]), (np.asarray(images[held_out]), labels[held_out])


def _subset(images, labels, limit: int | None, seed: int) -> Split:
    chosen = balanced_subset(labels, limit, seed)
    return take(images, chosen), labels[chosen]


def take(images: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """`images[indices]`; all of them in order: `images` itself; from a memory-mapped set,
    a memory-mapped copy written beside it (a set larger than memory stays on disk)."""
    if len(indices) == len(images) and np.array_equal(indices, np.arange(len(images))):
        return images
    if not isinstance(images, np.memmap) or images.filename is None:
        return images[indices]
    digest = hashlib.sha256(np.ascontiguousarray(indices, np.int64).tobytes()).hexdigest()
    path = f"{os.path.splitext(images.filename)[0]}-{digest[:16]}.npy"
    if not os.path.exists(path):
        tmp = path + ".tmp.npy"
        shape = (len(indices), *images.shape[1:])
        copy = np.lib.format.open_memmap(tmp, "w+", images.dtype, shape)
        rows = max(1, stats.CHUNK_BYTES // max(1, images[0].nbytes))
        for start in range(0, len(indices), rows):
            copy[start : start + rows] = images[indices[start : start + rows]]
        copy.flush()
        del copy
        os.replace(tmp, path)
    return np.load(path, mmap_mode="r")


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
