"""CIFAR-10 and CIFAR-100 loading: the official python files, the Keras cache, or
tensorflow-datasets.

Both data sets share every code path; what differs (file names, label key, number of
classes, class names) is one `DatasetSpec` per data set in `DATASETS`. Everything returned
is validated: uint8 images (N, 32, 32, 3), int32 labels in 0..num_classes(dataset) - 1
(CIFAR-100: its 100 fine labels).
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

from tf_resnet9.errors import DatasetError

IMAGE_SHAPE = (32, 32, 3)

Arrays = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """One data set's official python layout and what its files hold.

    Attributes:
        name: Its key in `DATASETS`, and its name in tensorflow-datasets.
        title: Its name in messages, as its authors write it.
        num_classes: Labels are 0..num_classes - 1.
        folder: The folder the official tarball unpacks to.
        archive: The official tarball's file name.
        url: Where to download `archive`.
        train_files: The pickled training files in `folder`, in the order they are joined.
        test_file: The pickled test file in `folder`.
        label_key: The labels' key in the dicts those files hold.
        meta_file: The pickled file in `folder` that names the classes.
        names_key: The class names' key in `meta_file`'s dict.
        class_names: The class names in label order, as `meta_file` lists them.
    """

    name: str
    title: str
    num_classes: int
    folder: str
    archive: str
    url: str
    train_files: tuple[str, ...]
    test_file: str
    label_key: bytes
    meta_file: str
    names_key: bytes
    class_names: tuple[str, ...]


# The fine label names in label order, as the official `meta` file lists them (alphabetical;
# checked against published copies of its fine_label_names: tensorflow-datasets ships none,
# it reads them from the download).
_CIFAR100_FINE_NAMES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle",
    "bottle", "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle",
    "caterpillar", "cattle", "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch",
    "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish", "forest", "fox",
    "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion",
    "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse", "mushroom",
    "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road",
    "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake",
    "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone",
    "television", "tiger", "tractor", "train", "trout", "tulip", "turtle", "wardrobe", "whale",
    "willow_tree", "wolf", "woman", "worm",
)  # fmt: skip

DATASETS = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            name="cifar10",
            title="CIFAR-10",
            num_classes=10,
            folder="cifar-10-batches-py",
            archive="cifar-10-python.tar.gz",
            url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
            train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
            test_file="test_batch",
            label_key=b"labels",
            meta_file="batches.meta",
            names_key=b"label_names",
            class_names=(
                "airplane",
                "automobile",
                "bird",
                "cat",
                "deer",
                "dog",
                "frog",
                "horse",
                "ship",
                "truck",
            ),
        ),
        DatasetSpec(
            name="cifar100",
            title="CIFAR-100",
            num_classes=100,
            folder="cifar-100-python",
            archive="cifar-100-python.tar.gz",
            url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
            train_files=("train",),
            test_file="test",
            # The 100 fine labels; the files also hold the 20 superclasses, b"coarse_labels".
            label_key=b"fine_labels",
            meta_file="meta",
            names_key=b"fine_label_names",
            class_names=_CIFAR100_FINE_NAMES,
        ),
    )
}


@dataclasses.dataclass(frozen=True)
class Source:
    """Where a data set is read from: an official `folder` or `archive`, or `tfds`.

    `dataset` is its key in `DATASETS`. `looked` lists the places already searched, for the
    error message if tfds fails too.
    """

    kind: str
    path: str | None = None
    looked: tuple[str, ...] = ()
    dataset: str = "cifar10"

    def __str__(self) -> str:
        # A folder or archive path names its data set already; "tfds" alone would not.
        return f"{self.kind} {self.path}" if self.path else f"{self.kind} {self.dataset}"


def load_dataset(name: str, data_dir: str | os.PathLike | None = None) -> Arrays:
    """Loads CIFAR-10 or CIFAR-100 as NumPy arrays.

    Args:
        name: A key of `DATASETS`: "cifar10" or "cifar100".
        data_dir: The official folder (`cifar-10-batches-py`, `cifar-100-python`), its
            parent, or the official tarball (`cifar-10-python.tar.gz`,
            `cifar-100-python.tar.gz`) or a folder holding it. None: the Keras cache, else
            tensorflow-datasets (which downloads when there is a network).

    Returns:
        `((x_train, y_train), (x_test, y_test))`: uint8 images (N, 32, 32, 3), int32 labels
        in 0..num_classes(name) - 1 (CIFAR-100: the fine labels).

    Raises:
        ValueError: `name` is not a key of `DATASETS`.
        DatasetError: no data where it looked, or a file that is truncated or malformed.
    """
    return read(locate(data_dir, name))


def load_cifar10(data_dir: str | os.PathLike | None = None) -> Arrays:
    """Loads CIFAR-10 as NumPy arrays: `load_dataset("cifar10", data_dir)`.

    Args:
        data_dir: The `cifar-10-batches-py` folder, its parent, or `cifar-10-python.tar.gz`
            (or a folder holding it). None: the Keras cache, else tensorflow-datasets (which
            downloads when there is a network).

    Returns:
        `((x_train, y_train), (x_test, y_test))`: uint8 images (N, 32, 32, 3), int32 labels.

    Raises:
        DatasetError: no data where it looked, or a file that is truncated or malformed.
    """
    return load_dataset("cifar10", data_dir)


def locate(data_dir: str | os.PathLike | None = None, dataset: str = "cifar10") -> Source:
    """Finds a data set without reading it; see `load_dataset` for the search order.

    Raises:
        ValueError: `dataset` is not a key of `DATASETS`.
        DatasetError: `data_dir` was given and holds no copy of the data set.
    """
    spec = _spec(dataset)
    if data_dir is not None:
        data_dir = os.path.abspath(os.path.expanduser(os.fspath(data_dir)))
        candidates = [(data_dir, "given")]
    else:
        candidates = [(path, "Keras cache") for path in keras_cache_dirs(spec.name)]
    looked = []
    for path, origin in candidates:
        for source in _official_layouts(path, spec):
            if _present(source, spec):
                return source
        looked.append(f"{path} ({origin}): no {spec.folder} folder or {spec.archive}")
    if data_dir is not None:
        raise DatasetError(_not_found_message(spec, looked))
    return Source("tfds", looked=tuple(looked), dataset=spec.name)


def keras_cache_dirs(dataset: str = "cifar10") -> list[str]:
    """Where `keras.datasets.cifar10` / `cifar100.load_data()` leave the data.

    Keras 3 unpacks into `datasets/<folder>-target/<folder>`, Keras 2 into `datasets/<folder>`
    (keras/src/datasets/cifar10.py and cifar100.py); both are searched for the official layouts.
    """
    spec = _spec(dataset)
    home = os.path.expanduser(os.environ.get("KERAS_HOME") or os.path.join("~", ".keras"))
    datasets = os.path.join(home, "datasets")
    return [os.path.join(datasets, f"{spec.folder}-target"), datasets]


def read(source: Source) -> Arrays:
    """Reads and validates the data set a located `Source` holds."""
    spec = _spec(source)
    if source.kind == "tfds":
        return _read_tfds(spec, list(source.looked))
    train = [_read_batch(source, name) for name in spec.train_files]
    test = _read_batch(source, spec.test_file)
    x_train = np.concatenate([x for x, _ in train])
    y_train = np.concatenate([y for _, y in train])
    return (x_train, y_train), test


def num_classes(dataset: str | Source) -> int:
    """How many classes a data set has (CIFAR-100: its fine labels), by name or `Source`."""
    return _spec(dataset).num_classes


def class_names(dataset: str | Source) -> tuple[str, ...]:
    """The class names of a data set, in label order.

    Args:
        dataset: A key of `DATASETS`: the names its official meta file lists. Or a located
            `Source`: an official folder's or archive's meta file (`batches.meta`, `meta`),
            read and validated where the copy has one (not every copy does: then, as for a
            tfds source, the official names).

    Raises:
        ValueError: `dataset` is not a key of `DATASETS`.
        DatasetError: the meta file is missing, truncated or malformed.
    """
    spec = _spec(dataset)
    if not isinstance(dataset, Source) or not _has_member(dataset, spec.meta_file):
        return spec.class_names
    meta, where = _load_pickle(dataset, spec.meta_file)
    key = spec.names_key.decode()
    if not isinstance(meta, dict) or spec.names_key not in meta:
        raise DatasetError(f"{where}: not a {spec.title} meta file (expected a dict with {key}).")
    names = meta[spec.names_key]
    if isinstance(names, list | tuple):
        # Pickled by Python 2, the names unpickle as bytes (encoding="bytes" keeps them so).
        names = [n.decode("utf-8", "replace") if isinstance(n, bytes) else n for n in names]
    try:
        return checked_class_names(names, spec.num_classes)
    except ValueError as e:
        raise DatasetError(f"{where}: {key}: {e}") from None


def checked_class_names(names, count: int | None = None) -> tuple[str, ...]:
    """`names` as a tuple, if it is a list of `count` (any number, if None) distinct,
    non-empty strings.

    Raises:
        ValueError: it is not; the message says why.
    """
    if isinstance(names, str) or not isinstance(names, list | tuple):
        raise ValueError(f"{names!r} is invalid: expected a list of class names.")
    names = tuple(names)
    if not names or not all(isinstance(name, str) and name for name in names):
        raise ValueError(f"{names!r} is invalid: expected one or more non-empty strings.")
    if count is not None and len(names) != count:
        raise ValueError(f"{len(names)} names are invalid: expected {count}.")
    if len(set(names)) != len(names):
        raise ValueError(f"{names!r} is invalid: a name appears twice.")
    return names


def _has_member(source: Source, name: str) -> bool:
    """Whether an official folder or archive holds the file `name` (never a tfds source)."""
    if source.kind == "folder":
        return os.path.isfile(os.path.join(source.path, name))
    if source.kind == "archive":
        try:
            with tarfile.open(source.path, "r:gz") as tar:
                tar.getmember(f"{_spec(source).folder}/{name}")
            return True
        except (KeyError, tarfile.TarError, OSError, EOFError, zlib.error):
            return False  # a damaged archive: reading its batches will say so
    return False


def _spec(dataset: str | Source) -> DatasetSpec:
    name = dataset.dataset if isinstance(dataset, Source) else dataset
    if isinstance(name, str) and name in DATASETS:
        return DATASETS[name]
    raise ValueError(f"dataset={name!r} is not one of: {', '.join(DATASETS)}.")


def _official_layouts(path: str, spec: DatasetSpec) -> Iterator[Source]:
    if path.endswith(".tar.gz") or path.endswith(".tgz"):
        yield Source("archive", path, dataset=spec.name)
        return
    yield Source("folder", path, dataset=spec.name)
    yield Source("folder", os.path.join(path, spec.folder), dataset=spec.name)
    yield Source("archive", os.path.join(path, spec.archive), dataset=spec.name)


def _present(source: Source, spec: DatasetSpec) -> bool:
    if source.kind == "archive":
        return os.path.isfile(source.path)
    return os.path.isfile(os.path.join(source.path, spec.test_file))


def _not_found_message(spec: DatasetSpec, looked: list[str]) -> str:
    places = "\n".join(f"  - {place}" for place in looked)
    return (
        f"{spec.title} not found. Looked in:\n{places}\n"
        f"Supply it with --data_dir: the {spec.folder} folder, its parent, or {spec.archive} "
        f"(download {spec.url} on a machine with a network)."
    )


def _tfds_failure(spec: DatasetSpec, error: Exception) -> str:
    """Why tensorflow-datasets gave no data, naming a missing package where one is."""
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
        f"tensorflow-datasets: could not load or download {spec.name} "
        f"({type(error).__name__}: {first_line})"
    )


def _read_batch(source: Source, name: str) -> tuple[np.ndarray, np.ndarray]:
    batch, where = _load_pickle(source, name)
    return _validate_batch(batch, where, _spec(source))


def _load_pickle(source: Source, name: str) -> tuple[object, str]:
    """Unpickles file `name` of an official folder or archive; returns it and where it was."""
    if source.kind == "folder":
        where = os.path.join(source.path, name)
        try:
            with open(where, "rb") as f:
                raw = f.read()
        except OSError as e:
            raise DatasetError(f"{where}: cannot read it ({e.strerror}).") from None
    else:
        member = f"{_spec(source).folder}/{name}"
        where = f"{source.path}:{member}"
        raw = _read_archive_member(source.path, member)
    try:
        return _SafeUnpickler(io.BytesIO(raw), encoding="bytes").load(), where
    except Exception as e:  # noqa: BLE001 - any failure to unpickle means a corrupt file
        raise DatasetError(f"{where}: truncated or corrupt ({type(e).__name__}: {e}).") from None


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
    """Unpickles the official dicts but refuses anything that could run code."""

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


def _validate_batch(
    batch, where: str, spec: DatasetSpec = DATASETS["cifar10"]
) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(batch, dict) or b"data" not in batch or spec.label_key not in batch:
        raise DatasetError(
            f"{where}: not a {spec.title} batch "
            f"(expected a dict with data, {spec.label_key.decode()})."
        )
    data, labels = batch[b"data"], np.asarray(batch[spec.label_key])
    pixels = int(np.prod(IMAGE_SHAPE))
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        raise DatasetError(f"{where}: data must be a uint8 array (N, {pixels}).")
    if data.shape[1] != pixels or len(data) == 0:
        raise DatasetError(f"{where}: data has shape {data.shape}, expected (N>0, {pixels}).")
    if labels.shape != (len(data),):
        raise DatasetError(f"{where}: {labels.size} labels for {len(data)} images.")
    _check_labels(labels, where, spec)
    # Rows are channel-major (R plane, G plane, B plane); the model wants NHWC.
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels.astype(np.int32)


def _check_labels(labels: np.ndarray, where: str, spec: DatasetSpec) -> None:
    if (
        not np.issubdtype(labels.dtype, np.integer)
        or labels.min() < 0
        or labels.max() >= spec.num_classes
    ):
        raise DatasetError(f"{where}: labels must be integers in 0..{spec.num_classes - 1}.")


def _read_tfds(spec: DatasetSpec, looked: list[str]) -> Arrays:
    try:
        import tensorflow_datasets as tfds

        # The supervised label is the one we want for both: cifar100's ("image", "label")
        # pair gives the fine label (tensorflow_datasets/image_classification/cifar.py:
        # Cifar100 reads "label" with fine_label_names.txt; the superclass is "coarse_label").
        train, test = tfds.as_numpy(
            tfds.load(spec.name, split=["train", "test"], batch_size=-1, as_supervised=True)
        )
    except Exception as e:  # noqa: BLE001 - tfds raises many types when offline
        raise DatasetError(_not_found_message(spec, looked + [_tfds_failure(spec, e)])) from None
    arrays = []
    for (images, labels), split in ((train, "train"), (test, "test")):
        where = f"tensorflow-datasets {spec.name}/{split}"
        if images.dtype != np.uint8 or images.shape[1:] != IMAGE_SHAPE:
            raise DatasetError(f"{where}: unexpected images {images.dtype} {images.shape}.")
        _check_labels(labels, where, spec)
        arrays.append((images, labels.astype(np.int32)))
    return tuple(arrays)
