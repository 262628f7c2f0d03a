"""CIFAR-10 and CIFAR-100 loading from official-format files the tests write themselves."""

import os
import pickle
import re
import sys
import types

import numpy as np
import pytest

from tests.cifar_files import (
    fake_cifar10,
    fake_cifar100,
    meta_dict,
    to_official_dict,
    write_archive,
    write_folder,
)
from tf_resnet9.data import cifar as data
from tf_resnet9.data.cifar import load_cifar10, load_dataset
from tf_resnet9.errors import DatasetError


@pytest.fixture(scope="module")
def batches():
    return fake_cifar10(train_per_batch=6, test=7)


def assert_loaded(arrays, batches, dataset="cifar10"):
    spec = data.DATASETS[dataset]
    (x_train, y_train), (x_test, y_test) = arrays
    expected_train = np.concatenate([batches[name][0] for name in spec.train_files])
    np.testing.assert_array_equal(x_train, expected_train)
    np.testing.assert_array_equal(
        y_train, np.concatenate([batches[n][1] for n in spec.train_files])
    )
    np.testing.assert_array_equal(x_test, batches[spec.test_file][0])
    np.testing.assert_array_equal(y_test, batches[spec.test_file][1])
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
    content = to_official_dict(*batches[data.DATASETS["cifar10"].test_file])
    corruption(content)
    with open(os.path.join(folder, data.DATASETS["cifar10"].test_file), "wb") as f:
        pickle.dump(content, f)
    with pytest.raises(DatasetError, match=f"test_batch: .*{message}"):
        load_cifar10(folder)


class _RunsCode:
    """A pickle payload that would call os.getcwd if it were unpickled unsafely."""

    def __reduce__(self):
        return (os.getcwd, ())


def test_pickle_that_runs_code_is_refused(tmp_path, batches):
    folder = write_folder(tmp_path, batches)
    with open(os.path.join(folder, data.DATASETS["cifar10"].test_file), "wb") as f:
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


# CIFAR-100: the same code paths as CIFAR-10, driven by its DATASETS entry.


@pytest.fixture(scope="module")
def batches100():
    return fake_cifar100(train=30, test=7)


def test_the_table_names_each_data_set_by_its_key():
    assert set(data.DATASETS) == {"cifar10", "cifar100"}
    for name, spec in data.DATASETS.items():
        assert spec.name == name and len(spec.class_names) == spec.num_classes
    assert data.num_classes("cifar10") == 10
    assert data.num_classes("cifar100") == 100


def test_unknown_data_set_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="dataset='cifar1000' is not one of: cifar10, cifar100"):
        data.locate("anywhere", dataset="cifar1000")
    with pytest.raises(ValueError, match="dataset='imagenet'"):
        data.num_classes("imagenet")


def test_load_cifar10_is_load_dataset_cifar10(tmp_path, batches):
    folder = write_folder(tmp_path, batches)
    assert_loaded(load_dataset("cifar10", folder), batches)
    assert data.locate(folder).dataset == "cifar10"


@pytest.mark.parametrize("given", ["folder", "parent"])
def test_reads_cifar100_folder(tmp_path, batches100, given):
    folder = write_folder(tmp_path, batches100, "cifar100")
    assert os.path.basename(folder) == "cifar-100-python"
    source = data.locate(folder if given == "folder" else tmp_path, "cifar100")
    assert (source.kind, source.dataset) == ("folder", "cifar100")
    assert_loaded(data.read(source), batches100, "cifar100")


@pytest.mark.parametrize("given", ["archive", "parent"])
def test_reads_cifar100_archive(tmp_path, batches100, given):
    archive = write_archive(tmp_path / "dl", batches100, "cifar100")
    assert os.path.basename(archive) == "cifar-100-python.tar.gz"
    given_path = archive if given == "archive" else tmp_path / "dl"
    assert_loaded(load_dataset("cifar100", given_path), batches100, "cifar100")
    assert data.locate(archive, "cifar100") == data.Source("archive", archive, dataset="cifar100")


# keras.datasets.cifar100.load_data() unpacks to datasets/cifar-100-python-target/
# cifar-100-python in Keras 3, datasets/cifar-100-python in Keras 2.
@pytest.mark.parametrize("under", ["cifar-100-python-target", "."])
def test_cifar100_keras_cache_is_used_without_data_dir(tmp_path, batches100, monkeypatch, under):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    write_folder(tmp_path / "keras" / "datasets" / under, batches100, "cifar100")
    assert_loaded(load_dataset("cifar100"), batches100, "cifar100")


def test_cifar10_and_cifar100_do_not_stand_in_for_each_other(tmp_path, batches, batches100):
    write_folder(tmp_path / "ten", batches)
    write_folder(tmp_path / "hundred", batches100, "cifar100")
    with pytest.raises(DatasetError, match="(?s)CIFAR-100 not found.*no cifar-100-python folder"):
        load_dataset("cifar100", tmp_path / "ten")
    with pytest.raises(DatasetError, match="(?s)CIFAR-10 not found.*no cifar-10-batches-py folder"):
        load_cifar10(tmp_path / "hundred")


def test_cifar100_missing_data_dir_says_how_to_supply_it(tmp_path):
    with pytest.raises(DatasetError) as error:
        load_dataset("cifar100", tmp_path / "nowhere")
    message = str(error.value)
    assert str(tmp_path / "nowhere") in message and "--data_dir" in message
    assert "cifar-100-python.tar.gz" in message
    assert "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz" in message


def stand_in_tfds(monkeypatch, load):
    """Replaces tensorflow_datasets with a module whose load is `load`."""
    fake_tfds = types.SimpleNamespace(load=load, as_numpy=lambda x: x)
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", fake_tfds)


def test_cifar100_offline_without_data_lists_every_place(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty-keras-home"))

    def offline_load(*args, **kwargs):
        raise ConnectionError("no network")

    stand_in_tfds(monkeypatch, offline_load)
    with pytest.raises(DatasetError) as error:
        load_dataset("cifar100")
    message = str(error.value)
    assert message.startswith("CIFAR-100 not found.")
    for place in data.keras_cache_dirs("cifar100"):
        assert place in message
    assert "cifar-100-python-target" in message
    assert "could not load or download cifar100 (ConnectionError: no network)" in message
    assert "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz" in message


def tfds_arrays(count: int, labels: list[int], seed: int):
    images = np.random.default_rng(seed).integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)
    return images, np.array(labels, np.int64)  # tfds gives int64 labels


def test_cifar100_from_tfds_takes_its_supervised_fine_labels(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty-keras-home"))
    train, test = tfds_arrays(4, [0, 42, 99, 7], seed=1), tfds_arrays(2, [99, 0], seed=2)
    calls = []

    def load(name, **kwargs):
        calls.append((name, kwargs))
        return train, test

    stand_in_tfds(monkeypatch, load)
    source = data.locate(None, "cifar100")
    assert source.kind == "tfds" and str(source) == "tfds cifar100"
    (x_train, y_train), (x_test, y_test) = data.read(source)
    assert calls == [
        ("cifar100", {"split": ["train", "test"], "batch_size": -1, "as_supervised": True})
    ]
    np.testing.assert_array_equal(x_train, train[0])
    assert y_train.dtype == np.int32 and y_train.tolist() == [0, 42, 99, 7]
    assert y_test.tolist() == [99, 0] and x_test.shape == (2, 32, 32, 3)


def test_cifar100_from_tfds_refuses_label_100(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty-keras-home"))
    stand_in_tfds(
        monkeypatch, lambda *a, **k: (tfds_arrays(2, [0, 100], 0), tfds_arrays(1, [1], 1))
    )
    with pytest.raises(DatasetError, match="tensorflow-datasets cifar100/train: .*0..99"):
        load_dataset("cifar100")


def rewrite(folder: str, name: str, content) -> None:
    with open(os.path.join(folder, name), "wb") as f:
        pickle.dump(content, f, protocol=2)


def test_cifar100_accepts_fine_labels_0_to_99(tmp_path, batches100):
    folder = write_folder(tmp_path, batches100, "cifar100")
    images = batches100["test"][0]
    labels = [0, 99, 50, 99, 1, 98, 0]
    rewrite(folder, "test", to_official_dict(images, labels, "cifar100"))
    _, (_, y_test) = load_dataset("cifar100", folder)
    assert y_test.tolist() == labels


@pytest.mark.parametrize("name", ["train", "test"])
def test_cifar100_fine_label_100_is_refused_naming_the_file(tmp_path, batches100, name):
    folder = write_folder(tmp_path, batches100, "cifar100")
    images, labels = batches100[name]
    labels = labels.copy()
    labels[-1] = 100
    rewrite(folder, name, to_official_dict(images, labels, "cifar100"))
    where = os.path.join(folder, name)
    with pytest.raises(
        DatasetError, match=f"^{re.escape(where)}: labels must be integers in 0..99"
    ):
        load_dataset("cifar100", folder)


def test_cifar100_wants_fine_labels_not_cifar10_labels(tmp_path, batches100):
    folder = write_folder(tmp_path, batches100, "cifar100")
    rewrite(folder, "test", to_official_dict(*batches100["test"], "cifar10"))
    with pytest.raises(
        DatasetError, match="test: not a CIFAR-100 batch \\(expected a dict with data, fine_labels"
    ):
        load_dataset("cifar100", folder)


def test_cifar100_truncated_file_names_the_file(tmp_path, batches100):
    folder = write_folder(tmp_path, batches100, "cifar100")
    truncate(os.path.join(folder, "train"))
    with pytest.raises(DatasetError, match="cifar-100-python/train: truncated or corrupt"):
        load_dataset("cifar100", folder)


def test_cifar100_missing_train_names_the_file(tmp_path, batches100):
    folder = write_folder(tmp_path, batches100, "cifar100")
    os.remove(os.path.join(folder, "train"))
    with pytest.raises(DatasetError, match="cifar-100-python/train: cannot read"):
        load_dataset("cifar100", folder)


def test_cifar100_truncated_archive_names_the_archive(tmp_path, batches100):
    archive = write_archive(tmp_path, batches100, "cifar100")
    truncate(archive)
    with pytest.raises(DatasetError, match="cifar-100-python.tar.gz: truncated or corrupt"):
        load_dataset("cifar100", archive)


def test_class_names():
    assert data.class_names("cifar10") == (
        "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
    )  # fmt: skip
    names = data.class_names("cifar100")
    assert len(names) == len(set(names)) == 100
    assert names[0] == "apple" and names[-1] == "worm"
    # The official fine_label_names are in alphabetical order; spot checks by label.
    assert list(names) == sorted(names)
    assert [names[i] for i in (1, 19, 41, 58, 83, 95)] == [
        "aquarium_fish", "cattle", "lawn_mower", "pickup_truck", "sweet_pepper", "whale",
    ]  # fmt: skip
    assert data.class_names(data.Source("tfds", dataset="cifar100")) == names


@pytest.mark.parametrize("layout", ["folder", "archive"])
@pytest.mark.parametrize("dataset", ["cifar10", "cifar100"])
def test_class_names_come_from_the_meta_file(tmp_path, dataset, layout):
    count = data.num_classes(dataset)
    names = [f"class_{i:03d}" for i in range(count)]
    batches = fake_cifar10(1, 1) if dataset == "cifar10" else fake_cifar100(1, 1)
    write = write_folder if layout == "folder" else write_archive
    path = write(tmp_path, batches, dataset, names)
    source = data.locate(path, dataset)
    assert source.kind == layout
    assert data.class_names(source) == tuple(names)


def test_malformed_meta_file_is_named_and_a_missing_one_means_the_official_names(
    tmp_path, batches100
):
    folder = write_folder(tmp_path, batches100, "cifar100")
    source = data.locate(folder, "cifar100")
    meta = os.path.join(folder, "meta")
    rewrite(folder, "meta", meta_dict("cifar100", data.class_names("cifar100")[:99]))
    expected = f"^{re.escape(meta)}: fine_label_names: 99 names are invalid: expected 100"
    with pytest.raises(DatasetError, match=expected):
        data.class_names(source)
    rewrite(folder, "meta", meta_dict("cifar100", ["apple"] * 100))
    with pytest.raises(
        DatasetError, match=f"^{re.escape(meta)}: fine_label_names: .* a name appears twice"
    ):
        data.class_names(source)
    rewrite(folder, "meta", {b"label_names": []})
    with pytest.raises(DatasetError, match=f"^{re.escape(meta)}: not a CIFAR-100 meta file"):
        data.class_names(source)
    os.remove(meta)  # copies without one exist: the names are the data set's own
    assert data.class_names(source) == data.class_names("cifar100")
