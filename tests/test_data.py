"""CIFAR-10 loading from official-format files the tests write themselves."""

import os
import pickle
import sys
import types

import numpy as np
import pytest

from tests.cifar_files import fake_cifar10, to_official_dict, write_archive, write_folder
from tf_resnet9 import data
from tf_resnet9.data import DatasetError, load_cifar10


@pytest.fixture(scope="module")
def batches():
    return fake_cifar10(train_per_batch=6, test=7)


def assert_loaded(arrays, batches):
    (x_train, y_train), (x_test, y_test) = arrays
    expected_train = np.concatenate([batches[name][0] for name in data.TRAIN_FILES])
    np.testing.assert_array_equal(x_train, expected_train)
    np.testing.assert_array_equal(
        y_train, np.concatenate([batches[n][1] for n in data.TRAIN_FILES])
    )
    np.testing.assert_array_equal(x_test, batches[data.TEST_FILE][0])
    np.testing.assert_array_equal(y_test, batches[data.TEST_FILE][1])
    assert x_train.dtype == np.uint8 and x_train.shape == (30, 32, 32, 3)
    assert y_train.dtype == np.int32 and x_test.shape == (7, 32, 32, 3)


def test_rows_decode_channel_major_to_nhwc():
    # One image whose R plane is 1, G plane 2, B plane 3: NHWC puts them in the last axis.
    image = np.stack([np.full((32, 32), c, np.uint8) for c in (1, 2, 3)], axis=-1)[None]
    images, labels = data._validate_batch(to_official_dict(image, [4]), "inline")
    np.testing.assert_array_equal(images[0, 5, 7], [1, 2, 3])
    assert labels.tolist() == [4]


@pytest.mark.parametrize("given", ["folder", "parent"])
def test_reads_folder(tmp_path, batches, given):
    folder = write_folder(tmp_path, batches)
    assert_loaded(load_cifar10(folder if given == "folder" else tmp_path), batches)


@pytest.mark.parametrize("given", ["archive", "parent"])
def test_reads_archive(tmp_path, batches, given):
    archive = write_archive(tmp_path / "dl", batches)
    assert_loaded(load_cifar10(archive if given == "archive" else tmp_path / "dl"), batches)
    assert data.locate(archive).kind == "archive"


def test_keras_cache_is_used_without_data_dir(tmp_path, batches, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    write_folder(tmp_path / "keras" / "datasets" / "cifar-10-batches-py-target", batches)
    assert_loaded(load_cifar10(), batches)


def test_missing_data_dir_says_where_it_looked(tmp_path):
    with pytest.raises(DatasetError) as error:
        load_cifar10(tmp_path / "nowhere")
    message = str(error.value)
    assert str(tmp_path / "nowhere") in message and "--data_dir" in message


def test_offline_without_data_lists_every_place(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty-keras-home"))

    def offline_load(*args, **kwargs):
        raise ConnectionError("no network")

    # A stand-in tensorflow_datasets whose download fails, as it does offline.
    fake_tfds = types.SimpleNamespace(load=offline_load, as_numpy=lambda x: x)
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", fake_tfds)
    with pytest.raises(DatasetError) as error:
        load_cifar10()
    message = str(error.value)
    for place in data.keras_cache_dirs():
        assert place in message
    assert "tensorflow-datasets" in message and "--data_dir" in message


def truncate(path: str) -> None:
    """Cuts the file to its first half, as an interrupted download or copy leaves it."""
    with open(path, "rb") as f:
        content = f.read()
    with open(path, "wb") as f:
        f.write(content[: len(content) // 2])


def test_truncated_batch_names_the_file(tmp_path, batches):
    folder = write_folder(tmp_path, batches)
    truncate(os.path.join(folder, "data_batch_3"))
    with pytest.raises(DatasetError, match="data_batch_3: truncated or corrupt"):
        load_cifar10(folder)


def test_truncated_archive_names_the_archive(tmp_path, batches):
    archive = write_archive(tmp_path, batches)
    truncate(archive)
    with pytest.raises(DatasetError, match="cifar-10-python.tar.gz"):
        load_cifar10(archive)


def test_missing_batch_names_the_file(tmp_path, batches):
    folder = write_folder(tmp_path, batches)
    os.remove(os.path.join(folder, "data_batch_5"))
    with pytest.raises(DatasetError, match="data_batch_5: cannot read"):
        load_cifar10(folder)


@pytest.mark.parametrize(
    "corruption, message",
    [
        (
            lambda d: d.update({b"labels": [10] * len(d[b"labels"])}),
            "labels must be integers in 0..9",
        ),
        (lambda d: d.update({b"labels": d[b"labels"][:-1]}), "labels for"),
        (lambda d: d.update({b"data": d[b"data"][:, :100]}), "expected \\(N>0, 3072\\)"),
        (lambda d: d.update({b"data": d[b"data"].astype(np.float32)}), "uint8"),
        (lambda d: d.pop(b"labels"), "not a CIFAR-10 batch"),
    ],
)
def test_malformed_batch_is_rejected(tmp_path, batches, corruption, message):
    folder = write_folder(tmp_path, batches)
    content = to_official_dict(*batches[data.TEST_FILE])
    corruption(content)
    with open(os.path.join(folder, data.TEST_FILE), "wb") as f:
        pickle.dump(content, f)
    with pytest.raises(DatasetError, match=f"test_batch: .*{message}"):
        load_cifar10(folder)


class _RunsCode:
    """A pickle payload that would call os.getcwd if it were unpickled unsafely."""

    def __reduce__(self):
        return (os.getcwd, ())


def test_pickle_that_runs_code_is_refused(tmp_path, batches):
    folder = write_folder(tmp_path, batches)
    with open(os.path.join(folder, data.TEST_FILE), "wb") as f:
        pickle.dump({b"data": _RunsCode(), b"labels": [0]}, f)
    with pytest.raises(DatasetError, match="refusing to load posix.getcwd|refusing to load os"):
        load_cifar10(folder)


def test_tfds_names_a_package_it_needs_but_lacks(tmp_path, monkeypatch):
    # tensorflow-datasets imports some of its dependencies only inside load(), as it did
    # with importlib_resources: the error must name the package, not just its type.
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty-keras-home"))

    def load_missing_a_dependency(*args, **kwargs):
        raise ModuleNotFoundError(
            "No module named 'importlib_resources'", name="importlib_resources"
        )

    fake_tfds = types.SimpleNamespace(load=load_missing_a_dependency, as_numpy=lambda x: x)
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", fake_tfds)
    with pytest.raises(DatasetError, match="needs importlib_resources, which is not installed"):
        load_cifar10()


@pytest.mark.tensorflow
def test_tfds_and_what_it_loads_lazily_are_installed():
    # The fallback must get as far as downloading: these imports are what tfds.load needs
    # before it reaches the network (importlib_resources was missing once).
    import importlib_resources  # noqa: F401
    import tensorflow_datasets  # noqa: F401


CLASS_SORTED = np.repeat(np.arange(10), 100)  # 1,000 labels, class by class


@pytest.mark.parametrize("limit", [512, 10, 7, 999])
def test_subset_is_class_balanced_where_the_data_allows(limit):
    indices = data.balanced_subset(CLASS_SORTED, limit, seed=0)
    assert len(indices) == limit == len(set(indices.tolist()))
    counts = np.bincount(CLASS_SORTED[indices], minlength=10)
    assert counts.max() - counts.min() <= 1  # 512 -> 51 or 52 of each class
    assert np.all(np.diff(indices) > 0)  # in the data's order


def test_subset_fills_from_other_classes_where_one_is_short():
    labels = np.concatenate([np.zeros(3, int), np.repeat(np.arange(1, 10), 50)])
    counts = np.bincount(labels[data.balanced_subset(labels, 100, seed=1)], minlength=10)
    assert counts[0] == 3 and counts.sum() == 100 and counts[1:].max() - counts[1:].min() <= 1


def test_subset_is_seeded_and_random():
    first = data.balanced_subset(CLASS_SORTED, 100, seed=3)
    np.testing.assert_array_equal(first, data.balanced_subset(CLASS_SORTED, 100, seed=3))
    assert not np.array_equal(first, data.balanced_subset(CLASS_SORTED, 100, seed=4))
    assert not np.array_equal(first[:10], np.arange(10))  # not the first images of a class


def test_no_limit_or_a_large_one_keeps_everything():
    for limit in (None, 1000, 5000):
        np.testing.assert_array_equal(data.balanced_subset(CLASS_SORTED, limit, 0), np.arange(1000))
