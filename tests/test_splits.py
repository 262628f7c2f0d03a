"""A run's splits: class-balanced subsets, the validation set held out, and their record."""

import numpy as np
import pytest

from tests.cifar_files import fake_cifar10, write_folder
from tf_resnet9.data.splits import balanced_subset, load_splits
from tf_resnet9.data.stats import channel_stats
from tf_resnet9.errors import ConfigError

CLASS_SORTED = np.repeat(np.arange(10), 100)  # 1,000 labels, class by class


@pytest.mark.parametrize("limit", [512, 10, 7, 999])
def test_subset_is_class_balanced_where_the_data_allows(limit):
    indices = balanced_subset(CLASS_SORTED, limit, seed=0)
    assert len(indices) == limit == len(set(indices.tolist()))
    counts = np.bincount(CLASS_SORTED[indices], minlength=10)
    assert counts.max() - counts.min() <= 1  # 512 -> 51 or 52 of each class
    assert np.all(np.diff(indices) > 0)  # in the data's order


def test_subset_fills_from_other_classes_where_one_is_short():
    labels = np.concatenate([np.zeros(3, int), np.repeat(np.arange(1, 10), 50)])
    counts = np.bincount(labels[balanced_subset(labels, 100, seed=1)], minlength=10)
    assert counts[0] == 3 and counts.sum() == 100 and counts[1:].max() - counts[1:].min() <= 1


def test_subset_is_seeded_and_random():
    first = balanced_subset(CLASS_SORTED, 100, seed=3)
    np.testing.assert_array_equal(first, balanced_subset(CLASS_SORTED, 100, seed=3))
    assert not np.array_equal(first, balanced_subset(CLASS_SORTED, 100, seed=4))
    assert not np.array_equal(first[:10], np.arange(10))  # not the first images of a class


def test_no_limit_or_a_large_one_keeps_everything():
    for limit in (None, 1000, 5000):
        np.testing.assert_array_equal(balanced_subset(CLASS_SORTED, limit, 0), np.arange(1000))


def test_subset_is_class_balanced_over_100_classes():
    labels = np.repeat(np.arange(100), 20)  # CIFAR-100 sorted by fine label
    indices = balanced_subset(labels, 250, seed=0)
    counts = np.bincount(labels[indices], minlength=100)
    assert counts.sum() == 250 and counts.min() == 2 and counts.max() == 3


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    # 5 x 40 = 200 training images, 50 test images, labels drawn at random.
    return write_folder(tmp_path_factory.mktemp("cifar"), fake_cifar10(40, 50, seed=3))


def test_the_validation_set_is_held_out_before_the_training_subset(data_dir):
    splits = load_splits(data_dir, "cifar10", val_split=30, train_limit=100, test_limit=20)
    (x_train, y_train), (x_val, y_val), (x_test, _) = splits.train, splits.val, splits.test
    assert (len(y_train), len(y_val), len(x_test)) == (100, 30, 20)
    # No image is in both: the training subset comes from what the hold-out left.
    train_rows = {image.tobytes() for image in x_train}
    assert not any(image.tobytes() in train_rows for image in x_val)
    assert splits.record["validation_images"] == 30 and splits.record["train_images"] == 100
    subset = splits.record["train_subset"]
    assert subset["limit"] == 100 and sum(subset["per_class"]) == 100
    assert subset["per_class"] == np.bincount(y_train, minlength=10).tolist()
    assert splits.record["test_subset"]["limit"] == 20


def test_a_validation_set_that_leaves_nothing_to_train_on_is_refused(data_dir):
    with pytest.raises(ConfigError, match="val_split=200 is invalid: it must leave training"):
        load_splits(data_dir, "cifar10", val_split=200)


def test_without_limits_the_splits_are_the_whole_data(data_dir):
    splits = load_splits(data_dir, "cifar10")
    assert (len(splits.train[1]), len(splits.test[1]), splits.val) == (200, 50, None)
    assert splits.record["train_subset"] is None and splits.record["test_subset"] is None
    assert splits.class_names[0] == "airplane"


def test_the_results_record_adds_the_statistics_size_and_source_to_the_record(data_dir):
    splits = load_splits(data_dir, "cifar10", train_limit=100)
    assert splits.image_size == 32 and splits.num_classes == 10
    assert splits.normalization == channel_stats(splits.train[0])
    # The record as runs so far wrote it; the results record adds to it.
    assert set(splits.record) == {
        "source", "train_images", "validation_images", "test_images", "train_subset",
        "test_subset",
    }  # fmt: skip
    assert splits.results_record == splits.record | {
        "image_size": 32,
        "normalization": {
            "mean": list(splits.normalization.mean),
            "std": list(splits.normalization.std),
            "of": "the training images",
        },
        "read": {"format": "official CIFAR-10 files (folder)"},
    }


def test_cifar_resized_to_another_image_size(data_dir):
    splits = load_splits(data_dir, "cifar10", image_size=16)
    assert splits.train[0].shape == (200, 16, 16, 3) and splits.test[0].shape == (50, 16, 16, 3)
    assert splits.read["resized"] == {"count": 250, "to": 16}
    same = load_splits(data_dir, "cifar10", image_size=32)  # the size it has: untouched
    np.testing.assert_array_equal(same.train[0], load_splits(data_dir, "cifar10").train[0])
