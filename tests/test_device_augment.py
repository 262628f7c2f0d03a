"""Augmentation on the device: the same draws as the recipe, and as the tf.data pipeline."""

import numpy as np
import pytest
from keras import ops
from scipy import stats

from tests.augment_decoding import COORDINATE_IMAGE, P_MIN, assert_recipe_distribution, decode
from tf_resnet9 import augment
from tf_resnet9.inputs import DeviceInput

COUNT = 2048


@pytest.fixture(scope="module")
def device_draws():
    """Draws of one epoch of `DeviceInput` batches through the device-side augmentation."""
    images = np.repeat(COORDINATE_IMAGE[None], COUNT, axis=0)
    device_input = DeviceInput(images, np.zeros(COUNT), 512, steps_per_call=4, seed=3)
    ((padded, _, batches, seeds),) = list(device_input.epoch())
    augmented = [
        ops.convert_to_numpy(augment.augment_gathered(padded, batches[i], seeds[i]))
        for i in range(batches.shape[0])
    ]
    return decode(np.concatenate(augmented))


def test_draws_follow_the_recipe(device_draws):
    assert_recipe_distribution(device_draws)


def test_draws_differ_within_a_batch(device_draws):
    assert len(np.unique(device_draws[:512], axis=0)) > 500


@pytest.mark.tensorflow
def test_same_distributions_as_the_tf_data_pipeline(device_draws):
    from tests.test_pipeline import first_epoch
    from tf_resnet9 import pipeline

    images = np.repeat(COORDINATE_IMAGE[None], COUNT, axis=0)
    host_images, _ = first_epoch(pipeline.train_dataset(images, np.zeros(COUNT), 512, seed=3))
    host_draws = decode(host_images)
    # Two-sample chi-square (homogeneity) per drawn quantity.
    for column, values in [(0, 9), (1, 9), (2, 2), (3, 25), (4, 25)]:
        table = [np.bincount(d[:, column], minlength=values) for d in (device_draws, host_draws)]
        assert stats.chi2_contingency(table).pvalue > P_MIN, f"column {column}: {table}"


def test_each_epoch_is_a_fresh_shuffle_of_every_image():
    device_input = DeviceInput(np.zeros((100, 32, 32, 3), np.uint8), np.arange(100), 32, 3, 0)
    orders = []
    for _ in range(2):
        ((_, _, batches, _),) = list(device_input.epoch())
        order = ops.convert_to_numpy(batches).ravel()
        assert batches.shape == (3, 32) and len(set(order.tolist())) == 96  # 100 // 32 steps
        orders.append(order)
    assert not np.array_equal(orders[0], orders[1])


def test_chunks_cover_the_epoch():
    device_input = DeviceInput(np.zeros((100, 32, 32, 3), np.uint8), np.arange(100), 10, 4, 0)
    chunks = list(device_input.epoch())
    assert [c[2].shape[0] for c in chunks] == [4, 4, 2]  # 10 steps in calls of 4
    assert device_input.padded.shape == (100, 40, 40, 3)
