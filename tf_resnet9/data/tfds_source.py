"""tensorflow-datasets by name: `tfds:NAME[/CONFIG][:VERSION]` (`svhn_cropped`,
`fashion_mnist`, `cifar10_corrupted/brightness_1`), read from a data dir where it is prepared
already. Nothing is downloaded: these machines have no network, so the error says how to
prepare it elsewhere.

Two ways to read, chosen by the format it was prepared in:
- array_record (or parquet): tfds' random-access `data_source`, which needs no TensorFlow
  (images decoded by Pillow): the way on Keras' JAX backend where TensorFlow is absent.
- tfrecord (tfds' default): `as_dataset`, which needs TensorFlow. Without it the error
  says to prepare the data set as array_record (`tfds build NAME --file_format
  array_record`).

Images follow `tf_resnet9.data.images`' rules (grey and RGBA made RGB, other sizes resized
with Pillow's BICUBIC filter); the image size is `image_size`, else the data set's own where
its images have one fixed square size. Examples stay in the order tfds stores them (shuffled
when it prepared them). The splits: "train" trains; "test", else "validation", tests (none:
a test set is held out of the training set, as for a class folder with train/ alone).
"""

from __future__ import annotations

import collections
import dataclasses
import importlib.util
import os
from typing import NamedTuple

import numpy as np

from tf_resnet9.data import images as image_files
from tf_resnet9.errors import DatasetError

PREFIX = "tfds:"
TEST_SPLITS = ("test", "validation")  # the first the data set has is the test set
RANDOM_ACCESS_FORMATS = ("array_record", "parquet")  # tfds' data_source reads these


@dataclasses.dataclass(frozen=True)
class TfdsSource:
    """A tensorflow-datasets data set, as `Splits.source`: `str()` is how a run names it."""

    name: str  # NAME[/CONFIG][:VERSION], as given after "tfds:"
    data_dir: str | None = None  # None: tfds' default (TFDS_DATA_DIR, ~/tensorflow_datasets)
    kind: str = "tensorflow-datasets"

    def __str__(self) -> str:
        where = f" in {self.data_dir}" if self.data_dir else ""
        return f"{PREFIX}{self.name}{where}"


class TfdsData(NamedTuple):
    """A tfds data set read: `test` is None where it has no test (nor validation) split."""

    source: TfdsSource
    class_names: tuple[str, ...]
    train: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray] | None
    record: dict


def tfds_name(dataset: str) -> str | None:
    """NAME of a `tfds:NAME` data set setting, else None.

    Raises:
        ValueError: "tfds:" without a name.
    """
    if not dataset.startswith(PREFIX):
        return None
    name = dataset[len(PREFIX) :].strip()
    if not name:
        raise ValueError(
            f"dataset={dataset!r} is invalid: expected tfds:NAME, e.g. tfds:svhn_cropped."
        )
    return name


def read_tfds(
    name: str, data_dir: str | os.PathLike | None = None, image_size: int | None = None
) -> TfdsData:
    """Reads a prepared tensorflow-datasets data set: its training split and its test split
    (module docstring), as uint8 images (N, S, S, 3) and int32 labels.

    Args:
        name: NAME[/CONFIG][:VERSION], as tfds names it.
        data_dir: The tfds data dir it was prepared in; None: tfds' default.
        image_size: The size every image is made; None: the data set's own fixed size.

    Raises:
        DatasetError: tensorflow-datasets is not installed, the data set is unknown or not
            prepared there, has no training split or no (image, label) pair, or needs
            TensorFlow to read and it is absent.
    """
    source = TfdsSource(name, os.path.abspath(os.fspath(data_dir)) if data_dir else None)
    builder = _builder(source)
    if "train" not in builder.info.splits:
        raise DatasetError(
            f"{source}: has no train split (its splits: {', '.join(builder.info.splits)}): "
            "it can test a trained model (read_tfds_split), not train one."
        )
    test_split = next((s for s in TEST_SPLITS if s in builder.info.splits), None)
    image_key, label_key, class_names = _keys(source, builder)
    size, size_from = _image_size(source, builder, image_key, image_size)
    counts = collections.Counter()
    train = _read_split(source, builder, "train", image_key, label_key, size, counts)
    test = None
    if test_split:
        test = _read_split(source, builder, test_split, image_key, label_key, size, counts)
    record = {
        "format": "tensorflow-datasets",
        "name": name,
        "version": str(builder.info.version),
        "data_dir": builder.data_dir,
        "file_format": _file_format(builder),
        "splits": {split: info.num_examples for split, info in builder.info.splits.items()},
        "used": {"train": "train", "test": test_split},
        "features": {"image": image_key, "label": label_key},
        "image_size": size,
        "image_size_from": size_from,
        "resized": {"count": counts["resized"]},
        "converted_to_rgb": {"count": counts["converted"]},
        "order": "as tensorflow-datasets stores it (shuffled when prepared)",
    }
    return TfdsData(source, class_names, train, test, record)


def read_tfds_split(
    name: str, split: str, data_dir: str | os.PathLike | None = None, image_size: int = 32
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[str, ...]]:
    """One split of a prepared data set, for testing a trained model on it (e.g.
    `cifar10_corrupted/brightness_1`'s test): ((images, labels), class names).

    Raises:
        DatasetError: as `read_tfds`, or the split is not one the data set has.
    """
    source = TfdsSource(name, os.path.abspath(os.fspath(data_dir)) if data_dir else None)
    builder = _builder(source)
    if split not in builder.info.splits:
        raise DatasetError(
            f"{source}: no split {split!r} (its splits: {', '.join(builder.info.splits)})."
        )
    image_key, label_key, class_names = _keys(source, builder)
    counts = collections.Counter()
    arrays = _read_split(source, builder, split, image_key, label_key, image_size, counts)
    return arrays, class_names


def _builder(source: TfdsSource):
    """tfds' builder of a prepared data set (it reads the metadata only)."""
    try:
        import tensorflow_datasets as tfds
    except ModuleNotFoundError as e:
        raise DatasetError(
            f"{source}: needs tensorflow-datasets, which is not installed "
            f"(pip install tensorflow-datasets; {e.name} is missing)."
        ) from None
    try:
        builder = tfds.builder(source.name, data_dir=source.data_dir)
    except Exception as e:  # noqa: BLE001 - tfds raises many types for an unknown name
        first_line = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        if type(e).__name__ == "DatasetNotFoundError":  # a name tfds does not know: no build
            advice = "tfds.list_builders() names those it knows."
        else:
            advice = _how_to_prepare(source)
        raise DatasetError(f"{source}: {first_line} {advice}") from None
    if not builder.is_prepared():
        raise DatasetError(
            f"{source}: not prepared in {builder.data_dir}. {_how_to_prepare(source)}"
        )
    return builder


def _how_to_prepare(source: TfdsSource) -> str:
    """How to prepare a data set on a machine with a network, for these, which have none."""
    where = source.data_dir or "DIR"
    return (
        f"Prepare it on a machine with a network (pip install tensorflow tensorflow-datasets; "
        f"tfds build {source.name.split(':')[0]} --data_dir {where}, adding --file_format "
        f"array_record to read it without TensorFlow), copy {where} here and pass "
        "--data_dir with it."
    )


def _keys(source: TfdsSource, builder) -> tuple[str, str, tuple[str, ...]]:
    """(image feature, label feature, class names) of the data set's (image, label) pair."""
    features = builder.info.features
    keys = builder.info.supervised_keys
    if not (isinstance(keys, tuple) and len(keys) == 2 and all(isinstance(k, str) for k in keys)):
        keys = ("image", "label")
    image_key, label_key = keys
    image = features[image_key] if image_key in features.keys() else None
    label = features[label_key] if label_key in features.keys() else None
    if type(image).__name__ != "Image" or not hasattr(label, "names"):
        raise DatasetError(
            f"{source}: no (image, label) pair to train on: expected an Image feature and a "
            f"ClassLabel one (supervised keys {builder.info.supervised_keys}, features "
            f"{', '.join(features.keys())})."
        )
    return image_key, label_key, tuple(label.names)


def _image_size(source, builder, image_key: str, given: int | None) -> tuple[int, str]:
    if given is not None:
        return given, "given"
    height, width = builder.info.features[image_key].shape[:2]
    if height is None or width is None or height != width:
        sizes = "of varying size" if None in (height, width) else f"{width}x{height}"
        raise DatasetError(
            f"{source}: its images are {sizes}, not one square size: give --image_size N "
            "to resize every image to NxN."
        )
    return height, "the data set's image size"


def _file_format(builder) -> str:
    file_format = builder.info.file_format
    return getattr(file_format, "value", str(file_format))


def _read_split(source, builder, split, image_key, label_key, size, counts):
    """(uint8 images (N, size, size, 3), int32 labels (N,)) of one split."""
    count = builder.info.splits[split].num_examples
    images = np.empty((count, size, size, 3), np.uint8)
    labels = np.empty(count, np.int32)
    for k, example in enumerate(_examples(source, builder, split)):
        image = example[image_key]
        try:
            images[k] = image_files.from_array(image, size)
        except image_files.ImageFileError as e:
            raise DatasetError(f"{source}: {split} example {k}: {e}") from None
        counts["resized"] += image.shape[:2] != (size, size)
        counts["converted"] += image.shape[-1] != 3
        labels[k] = example[label_key]
    return images, labels


def _examples(source: TfdsSource, builder, split: str):
    """The examples of a split as dicts of NumPy values, in the order stored."""
    if _file_format(builder) in RANDOM_ACCESS_FORMATS:
        data_source = builder.as_data_source(split=split)
        for k in range(len(data_source)):
            yield data_source[k]
        return
    if importlib.util.find_spec("tensorflow") is None:
        raise DatasetError(
            f"{source}: prepared as {_file_format(builder)}, which needs TensorFlow to read, "
            "and it is not installed. Prepare it as array_record instead (tfds build "
            f"{source.name.split(':')[0]} --file_format array_record), which tfds reads "
            "without TensorFlow."
        )
    import tensorflow_datasets as tfds

    yield from tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False))
