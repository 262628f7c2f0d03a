"""CIFAR-10 loading: the official python files, the Keras cache, or tensorflow-datasets.

Everything returned is validated: uint8 images (N, 32, 32, 3), int32 labels in 0..9.
"""

from __future__ import annotations

import dataclasses
import io
import os
import pickle
import tarfile
import zlib
from collections.abc import Iterator

import numpy as np

FOLDER = "cifar-10-batches-py"
ARCHIVE = "cifar-10-python.tar.gz"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
NUM_CLASSES = 10
IMAGE_SHAPE = (32, 32, 3)
OFFICIAL_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"

Arrays = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


class DatasetError(Exception):
    """CIFAR-10 could not be found or read; the message says where and how to fix it."""


@dataclasses.dataclass(frozen=True)
class Source:
    """Where CIFAR-10 is read from: an official `folder` or `archive`, or `tfds`.

    `looked` lists the places already searched, for the error message if tfds fails too.
    """

    kind: str
    path: str | None = None
    looked: tuple[str, ...] = ()

    def __str__(self) -> str:
        return f"{self.kind} {self.path}" if self.path else self.kind


def load_cifar10(data_dir: str | os.PathLike | None = None) -> Arrays:
    """Loads CIFAR-10 as NumPy arrays.

    Args:
        data_dir: The `cifar-10-batches-py` folder, its parent, or `cifar-10-python.tar.gz`
            (or a folder holding it). None: the Keras cache, else tensorflow-datasets (which
            downloads when there is a network).

    Returns:
        `((x_train, y_train), (x_test, y_test))`: uint8 images (N, 32, 32, 3), int32 labels.

    Raises:
        DatasetError: no data where it looked, or a file that is truncated or malformed.
    """
    return read(locate(data_dir))


def locate(data_dir: str | os.PathLike | None = None) -> Source:
    """Finds CIFAR-10 without reading it; see `load_cifar10` for the search order."""
    if data_dir is not None:
        data_dir = os.path.abspath(os.path.expanduser(os.fspath(data_dir)))
        candidates = [(data_dir, "given")]
    else:
        candidates = [(path, "Keras cache") for path in keras_cache_dirs()]
    looked = []
    for path, origin in candidates:
        for source in _official_layouts(path):
            if _present(source):
                return source
        looked.append(f"{path} ({origin}): no {FOLDER} folder or {ARCHIVE}")
    if data_dir is not None:
        raise DatasetError(_not_found_message(looked))
    return Source("tfds", looked=tuple(looked))


def keras_cache_dirs() -> list[str]:
    """Where `keras.datasets.cifar10.load_data()` leaves the data (Keras 3 and Keras 2)."""
    home = os.path.expanduser(os.environ.get("KERAS_HOME") or os.path.join("~", ".keras"))
    datasets = os.path.join(home, "datasets")
    return [os.path.join(datasets, "cifar-10-batches-py-target"), datasets]


def read(source: Source) -> Arrays:
    """Reads and validates CIFAR-10 from a located `Source`."""
    if source.kind == "tfds":
        return _read_tfds(list(source.looked))
    train = [_read_batch(source, name) for name in TRAIN_FILES]
    test = _read_batch(source, TEST_FILE)
    x_train = np.concatenate([x for x, _ in train])
    y_train = np.concatenate([y for _, y in train])
    return (x_train, y_train), test


def balanced_subset(labels: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    """Indices of a random subset of `limit` images, as even across classes as the data allows.

    Every class gets limit // classes images (one more for a random choice of classes, for
    the remainder); a class with fewer images gives all it has, and the others make up the
    difference. The indices are in the data's order. Copies of CIFAR-10 sorted by class
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


def _official_layouts(path: str) -> Iterator[Source]:
    if path.endswith(".tar.gz") or path.endswith(".tgz"):
        yield Source("archive", path)
        return
    yield Source("folder", path)
    yield Source("folder", os.path.join(path, FOLDER))
    yield Source("archive", os.path.join(path, ARCHIVE))


def _present(source: Source) -> bool:
    if source.kind == "archive":
        return os.path.isfile(source.path)
    return os.path.isfile(os.path.join(source.path, TEST_FILE))


def _not_found_message(looked: list[str]) -> str:
    places = "\n".join(f"  - {place}" for place in looked)
    return (
        f"CIFAR-10 not found. Looked in:\n{places}\n"
        f"Supply it with --data_dir: the {FOLDER} folder, its parent, or {ARCHIVE} "
        f"(download {OFFICIAL_URL} on a machine with a network)."
    )


def _tfds_failure(error: Exception) -> str:
    """Why tensorflow-datasets gave no CIFAR-10, naming a missing package where one is."""
    if isinstance(error, ModuleNotFoundError) and error.name:
        if error.name.split(".")[0] == "tensorflow_datasets":
            return "tensorflow-datasets: not installed (pip install tensorflow-datasets)"
        # tfds imports some of its dependencies only when it loads a data set.
        package = error.name.split(".")[0]
        return (
            f"tensorflow-datasets: needs {package}, which is not installed (pip install {package})"
        )
    first_line = (str(error).strip().splitlines() or [""])[0][:200]
    return (
        f"tensorflow-datasets: could not load or download cifar10 ({type(error).__name__}: "
        f"{first_line})"
    )


def _read_batch(source: Source, name: str) -> tuple[np.ndarray, np.ndarray]:
    if source.kind == "folder":
        where = os.path.join(source.path, name)
        try:
            with open(where, "rb") as f:
                raw = f.read()
        except OSError as e:
            raise DatasetError(f"{where}: cannot read it ({e.strerror}).") from None
    else:
        where = f"{source.path}:{FOLDER}/{name}"
        raw = _read_archive_member(source.path, f"{FOLDER}/{name}")
    try:
        batch = _SafeUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as e:  # noqa: BLE001 - any failure to unpickle means a corrupt file
        raise DatasetError(f"{where}: truncated or corrupt ({type(e).__name__}: {e}).") from None
    return _validate_batch(batch, where)


def _read_archive_member(archive: str, member: str) -> bytes:
    try:
        with tarfile.open(archive, "r:gz") as tar:
            try:
                f = tar.extractfile(tar.getmember(member))
            except KeyError:
                raise DatasetError(f"{archive}: has no member {member}.") from None
            if f is None:
                raise DatasetError(f"{archive}: {member} is not a regular file.")
            return f.read()
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise DatasetError(f"{archive}: truncated or corrupt archive ({e}).") from None


class _SafeUnpickler(pickle.Unpickler):
    """Unpickles the official batch dicts but refuses anything that could run code."""

    _ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("_codecs", "encode"),
    }

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _validate_batch(batch, where: str) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise DatasetError(f"{where}: not a CIFAR-10 batch (expected a dict with data, labels).")
    data, labels = batch[b"data"], np.asarray(batch[b"labels"])
    pixels = int(np.prod(IMAGE_SHAPE))
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        raise DatasetError(f"{where}: data must be a uint8 array (N, {pixels}).")
    if data.shape[1] != pixels or len(data) == 0:
        raise DatasetError(f"{where}: data has shape {data.shape}, expected (N>0, {pixels}).")
    if labels.shape != (len(data),):
        raise DatasetError(f"{where}: {labels.size} labels for {len(data)} images.")
    _check_labels(labels, where)
    # Rows are channel-major (R plane, G plane, B plane); the model wants NHWC.
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels.astype(np.int32)


def _check_labels(labels: np.ndarray, where: str) -> None:
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() >= 10:
        raise DatasetError(f"{where}: labels must be integers in 0..{NUM_CLASSES - 1}.")


def _read_tfds(looked: list[str]) -> Arrays:
    try:
        import tensorflow_datasets as tfds

        train, test = tfds.as_numpy(
            tfds.load("cifar10", split=["train", "test"], batch_size=-1, as_supervised=True)
        )
    except Exception as e:  # noqa: BLE001 - tfds raises many types when offline
        raise DatasetError(_not_found_message(looked + [_tfds_failure(e)])) from None
    arrays = []
    for (images, labels), split in ((train, "train"), (test, "test")):
        where = f"tensorflow-datasets cifar10/{split}"
        if images.dtype != np.uint8 or images.shape[1:] != IMAGE_SHAPE:
            raise DatasetError(f"{where}: unexpected images {images.dtype} {images.shape}.")
        _check_labels(labels, where)
        arrays.append((images, labels.astype(np.int32)))
    return tuple(arrays)
