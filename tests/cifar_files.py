"""Writes small CIFAR-10 and CIFAR-100 files in the official python layout, for tests (no
download). Each data set's file names, label key and meta file come from `data.DATASETS`."""

from __future__ import annotations

import os
import pickle
import tarfile
from collections.abc import Sequence

import numpy as np

from tf_resnet9.data.cifar import DATASETS


def fake_batches(
    dataset: str = "cifar10", train_per_file: int = 8, test: int = 10, seed: int = 0
) -> dict:
    """Random uint8 images (N, 32, 32, 3) and labels for each train file and the test file."""
    spec = DATASETS[dataset]
    rng = np.random.default_rng(seed)
    batches = {}
    for name, count in [(n, train_per_file) for n in spec.train_files] + [(spec.test_file, test)]:
        images = rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)
        batches[name] = (images, rng.integers(0, spec.num_classes, count))
    return batches


def fake_cifar10(train_per_batch: int = 8, test: int = 10, seed: int = 0) -> dict:
    """Random images and labels 0..9 for the 5 train batches and test_batch."""
    return fake_batches("cifar10", train_per_batch, test, seed)


def fake_cifar100(train: int = 20, test: int = 10, seed: int = 0) -> dict:
    """Random images and fine labels 0..99 for the train and test files."""
    return fake_batches("cifar100", train, test, seed)


def to_official_dict(images: np.ndarray, labels, dataset: str = "cifar10") -> dict:
    """The official pickled dict: rows of 3072 bytes, the R plane then G then B."""
    rows = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    labels = [int(y) for y in labels]
    content = {b"data": np.ascontiguousarray(rows), DATASETS[dataset].label_key: labels}
    if dataset == "cifar100":
        # The official files hold the superclasses too; the loader must ignore them. These are
        # stand-ins: the real fine-to-coarse map is not y // 5.
        content[b"coarse_labels"] = [y // 5 for y in labels]
    return content


def meta_dict(dataset: str = "cifar10", names: Sequence[str] | None = None) -> dict:
    """The official meta file's dict: class names as bytes, as Python 2 pickled them."""
    spec = DATASETS[dataset]
    names = spec.class_names if names is None else names
    return {spec.names_key: [name.encode() for name in names]}


def write_folder(
    root: str | os.PathLike,
    batches: dict,
    dataset: str = "cifar10",
    names: Sequence[str] | None = None,
) -> str:
    """Writes the official folder under ROOT (`cifar-10-batches-py/{data_batch_1..5,
    test_batch,batches.meta}`, `cifar-100-python/{train,test,meta}`); returns the folder.

    Args:
        root: Where to make the folder.
        batches: File name -> (images, labels), as `fake_batches` returns.
        dataset: A key of `data.DATASETS`.
        names: The class names for the meta file; None: the data set's own.
    """
    spec = DATASETS[dataset]
    folder = os.path.join(root, spec.folder)
    os.makedirs(folder, exist_ok=True)
    files = {name: to_official_dict(*batch, dataset) for name, batch in batches.items()}
    files[spec.meta_file] = meta_dict(dataset, names)
    for name, content in files.items():
        with open(os.path.join(folder, name), "wb") as f:
            pickle.dump(content, f, protocol=2)
    return folder


def write_archive(
    root: str | os.PathLike,
    batches: dict,
    dataset: str = "cifar10",
    names: Sequence[str] | None = None,
) -> str:
    """Writes the official tarball under ROOT (`cifar-10-python.tar.gz`,
    `cifar-100-python.tar.gz`) holding the folder `write_folder` makes; returns its path."""
    spec = DATASETS[dataset]
    folder = write_folder(os.path.join(root, "staging"), batches, dataset, names)
    path = os.path.join(root, spec.archive)
    with tarfile.open(path, "w:gz") as tar:
        tar.add(folder, arcname=spec.folder)
    return path
