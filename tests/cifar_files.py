"""Writes small CIFAR-10 files in the official python layout, for tests (no download)."""

from __future__ import annotations

import os
import pickle
import tarfile

import numpy as np

from tf_resnet9.data import ARCHIVE, FOLDER, TEST_FILE, TRAIN_FILES


def fake_cifar10(train_per_batch: int = 8, test: int = 10, seed: int = 0):
    """Random uint8 images (N, 32, 32, 3) and labels 0..9 for the 5 train batches and test."""
    rng = np.random.default_rng(seed)
    batches = {}
    for name, count in [(n, train_per_batch) for n in TRAIN_FILES] + [(TEST_FILE, test)]:
        images = rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)
        batches[name] = (images, rng.integers(0, 10, count))
    return batches


def to_official_dict(images: np.ndarray, labels) -> dict:
    """The official pickled dict: rows of 3072 bytes, the R plane then G then B."""
    rows = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    return {b"data": np.ascontiguousarray(rows), b"labels": [int(y) for y in labels]}


def write_folder(root: str | os.PathLike, batches: dict) -> str:
    """Writes ROOT/cifar-10-batches-py/{data_batch_1..5,test_batch}; returns the folder."""
    folder = os.path.join(root, FOLDER)
    os.makedirs(folder, exist_ok=True)
    for name, (images, labels) in batches.items():
        with open(os.path.join(folder, name), "wb") as f:
            pickle.dump(to_official_dict(images, labels), f, protocol=2)
    return folder


def write_archive(root: str | os.PathLike, batches: dict) -> str:
    """Writes ROOT/cifar-10-python.tar.gz holding cifar-10-batches-py/...; returns its path."""
    folder = write_folder(os.path.join(root, "staging"), batches)
    path = os.path.join(root, ARCHIVE)
    with tarfile.open(path, "w:gz") as tar:
        tar.add(folder, arcname=FOLDER)
    return path
