"""tensorflow-datasets by name, on a tiny data set built here (`tests.tfds_fixture`): read
without TensorFlow from its array_record copy, and with TensorFlow from a fresh build."""

import collections
import types

import numpy as np
import pytest

from tests import tfds_fixture
from tests.tfds_fixture import FIXTURE_DIR
from tf_resnet9.data import images as image_files
from tf_resnet9.data import tfds_source
from tf_resnet9.data.splits import load_splits
from tf_resnet9.data.tfds_source import read_tfds, read_tfds_split, tfds_name
from tf_resnet9.errors import DatasetError

pytest.importorskip("tensorflow_datasets")


def as_multiset(images, labels) -> collections.Counter:
    """The (image bytes, label) pairs of a split: tfds stores them in its own order (it
    shuffles them when it prepares a data set)."""
    return collections.Counter((image.tobytes(), int(y)) for image, y in zip(images, labels))


def expected(config: str, split: str, size: int) -> collections.Counter:
    """The generated examples under the image rules, spelled with Pillow's resize."""
    pairs = tfds_fixture.examples(config, split)
    rgb = [image_files.from_array(image, size) for image, _ in pairs]
    return as_multiset(rgb, [label for _, label in pairs])


def test_the_name_follows_tfds_colon():
    assert tfds_name("tfds:svhn_cropped") == "svhn_cropped"
    assert tfds_name("tfds:cifar10_corrupted/brightness_1") == "cifar10_corrupted/brightness_1"
    assert tfds_name("cifar10") is None
    with pytest.raises(ValueError, match="dataset='tfds:' is invalid: expected tfds:NAME"):
        tfds_name("tfds:")


def test_an_rgb_data_set_of_one_size_is_read_at_it():
    data = read_tfds("tf_resnet9_tiny/rgb", FIXTURE_DIR)
    assert data.class_names == tfds_fixture.CLASS_NAMES
    assert str(data.source) == f"tfds:tf_resnet9_tiny/rgb in {FIXTURE_DIR}"
    (x_train, y_train), (x_test, y_test) = data.train, data.test
    assert x_train.shape == (12, 8, 8, 3) and y_train.dtype == np.int32
    assert as_multiset(x_train, y_train) == expected("rgb", "train", 8)
    assert as_multiset(x_test, y_test) == expected("rgb", "test", 8)
    record = data.record
    assert record["file_format"] == "array_record" and record["version"] == "1.0.0"
    assert record["splits"] == {"train": 12, "test": 6}
    assert record["used"] == {"train": "train", "test": "test"}
    assert record["image_size"] == 8 and record["image_size_from"] == "the data set's image size"
    assert record["resized"] == {"count": 0} and record["converted_to_rgb"] == {"count": 0}


def test_grey_images_of_two_sizes_are_made_rgb_at_the_size_given():
    data = read_tfds("tf_resnet9_tiny/grey", FIXTURE_DIR, image_size=8)
    assert as_multiset(*data.train) == expected("grey", "train", 8)
    assert as_multiset(*data.test) == expected("grey", "test", 8)
    # Grey copied to three channels: every pixel's channels equal where nothing was resized.
    assert data.record["converted_to_rgb"] == {"count": 18}
    assert data.record["resized"] == {"count": 9}  # the 6x6 ones: 6 train, 3 test


def test_images_of_varying_size_ask_for_image_size():
    with pytest.raises(DatasetError, match="its images are of varying size, .* --image_size N"):
        read_tfds("tf_resnet9_tiny/grey", FIXTURE_DIR)


def test_load_splits_reads_tfds_by_name():
    splits = load_splits(FIXTURE_DIR, "tfds:tf_resnet9_tiny/rgb", train_limit=9)
    assert len(splits.train[1]) == 9 and len(splits.test[1]) == 6
    assert splits.class_names == tfds_fixture.CLASS_NAMES and splits.image_size == 8
    assert splits.read["format"] == "tensorflow-datasets"
    assert splits.record["source"] == f"tfds:tf_resnet9_tiny/rgb in {FIXTURE_DIR}"
    assert splits.normalization is not None


def test_one_split_for_testing_a_trained_model():
    (images, labels), names = read_tfds_split("tf_resnet9_tiny/grey", "test", FIXTURE_DIR, 4)
    assert images.shape == (6, 4, 4, 3) and names == tfds_fixture.CLASS_NAMES
    with pytest.raises(DatasetError, match="no split 'validation' \\(its splits: train, test\\)"):
        read_tfds_split("tf_resnet9_tiny/grey", "validation", FIXTURE_DIR)


def test_an_unprepared_data_set_says_how_to_prepare_it(tmp_path):
    with pytest.raises(DatasetError) as error:
        read_tfds("svhn_cropped", tmp_path)
    message = str(error.value)
    assert message.startswith(f"tfds:svhn_cropped in {tmp_path}: not prepared in {tmp_path}")
    assert f"tfds build svhn_cropped --data_dir {tmp_path}" in message
    assert "--file_format array_record to read it without TensorFlow" in message
    assert "\n" not in message


def test_an_unknown_data_set_is_named(tmp_path):
    with pytest.raises(DatasetError, match="tfds:no_such_data_set_xyz in .*: Dataset no_such") as e:
        read_tfds("no_such_data_set_xyz", tmp_path)
    assert str(e.value).endswith(" tfds.list_builders() names those it knows.")  # no build


def test_a_data_set_without_a_train_split_is_for_testing_only(monkeypatch):
    splits = {"test": types.SimpleNamespace(num_examples=3)}
    builder = types.SimpleNamespace(info=types.SimpleNamespace(splits=splits))
    monkeypatch.setattr(tfds_source, "_builder", lambda source: builder)
    with pytest.raises(DatasetError, match="has no train split \\(its splits: test\\): it can"):
        read_tfds("cifar10_corrupted/brightness_1")


# With TensorFlow: tfds' default format, and the committed copy against a fresh build.


@pytest.fixture(scope="module")
def tfrecord_dir(tmp_path_factory):
    pytest.importorskip("tensorflow")
    data_dir = tmp_path_factory.mktemp("tfds")
    tfds_fixture.prepare(data_dir, "tfrecord")
    return data_dir


@pytest.mark.tensorflow
def test_a_tfrecord_copy_reads_as_the_array_record_one(tfrecord_dir):
    from_tfrecord = read_tfds("tf_resnet9_tiny/rgb", tfrecord_dir)
    assert from_tfrecord.record["file_format"] == "tfrecord"
    from_array_record = read_tfds("tf_resnet9_tiny/rgb", FIXTURE_DIR)
    for split in ("train", "test"):
        for k in range(2):  # the same order too: tfds shuffles by key, in either format
            np.testing.assert_array_equal(
                getattr(from_tfrecord, split)[k], getattr(from_array_record, split)[k]
            )


@pytest.mark.tensorflow
def test_tfrecord_without_tensorflow_says_to_prepare_array_record(tfrecord_dir, monkeypatch):
    real = tfds_source.importlib.util.find_spec
    monkeypatch.setattr(
        tfds_source.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "tensorflow" else real(name, *a),
    )
    with pytest.raises(DatasetError, match="prepared as tfrecord, which needs TensorFlow .*"):
        read_tfds("tf_resnet9_tiny/rgb", tfrecord_dir)


@pytest.mark.tensorflow
def test_the_committed_copy_is_a_fresh_build(tmp_path):
    pytest.importorskip("tensorflow")
    tfds_fixture.prepare(tmp_path, "array_record")
    for config, size in (("rgb", None), ("grey", 8)):
        fresh = read_tfds(f"tf_resnet9_tiny/{config}", tmp_path, size)
        committed = read_tfds(f"tf_resnet9_tiny/{config}", FIXTURE_DIR, size)
        assert fresh.class_names == committed.class_names
        for split in ("train", "test"):
            for k in range(2):
                np.testing.assert_array_equal(
                    getattr(fresh, split)[k], getattr(committed, split)[k]
                )
