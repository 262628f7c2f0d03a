"""The host input's tf.data pipeline: batches, labels, shuffling, a seed per epoch. (Its
draws are compared with the recipe's distribution and the reference's in
tests/parity/test_augmentation.py.)"""

import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="tf.data; runs in make test")
pytestmark = pytest.mark.tensorflow

from tests.augment_decoding import COORDINATE_IMAGE  # noqa: E402
from tf_resnet9.data import augment  # noqa: E402
from tf_resnet9.data.host_input import HostInput  # noqa: E402


def pipeline(images, labels, batch_size):
    return HostInput(images, labels, batch_size, steps_per_call=1, seed=0)


def as_arrays(dataset):
    images, labels = zip(*[(x.numpy(), y.numpy()) for x, y in dataset])
    return np.concatenate(images), np.concatenate(labels)


def test_batches_shapes_and_dropped_remainder():
    images = np.zeros((100, 32, 32, 3), np.uint8)
    batches = list(pipeline(images, np.zeros(100), 32).dataset(seed=0))
    assert len(batches) == 3  # 100 // 32; the last 4 images are dropped
    x, y = batches[0]
    assert x.shape == (32, 32, 32, 3) and x.dtype == "float32" and y.dtype == "int32"


def test_labels_follow_their_images_and_each_epoch_reshuffles():
    # Image k is the constant colour k; label k % 10.
    count = 250
    images = np.broadcast_to(
        np.arange(count, dtype=np.uint8)[:, None, None, None], (count, 32, 32, 3)
    )
    train = pipeline(images, np.arange(count) % 10, 50)
    orders = []
    for seed in (1, 2):
        x, y = as_arrays(train.dataset(seed))
        red = x[..., 0].reshape(count, -1)
        kept = red[np.arange(count), np.argmax(red != 0, axis=1)]  # a pixel outside the cutout
        ids = np.rint(kept * augment.STD[0] + augment.MEAN[0]).astype(int)
        assert np.array_equal(np.sort(ids), np.arange(count))  # every image once per epoch
        assert np.array_equal(y, ids % 10)
        orders.append(ids)
    assert not np.array_equal(orders[0], orders[1])


def test_an_epoch_is_fixed_by_its_seed():
    images = np.repeat(COORDINATE_IMAGE[None], 64, axis=0)
    train = pipeline(images, np.arange(64) % 10, 32)
    a1, a2 = as_arrays(train.dataset(5))[0], as_arrays(train.dataset(5))[0]
    np.testing.assert_array_equal(a1, a2)  # same seed: bit-identical, in any order
    again = pipeline(images, np.arange(64) % 10, 32)
    np.testing.assert_array_equal(as_arrays(again.dataset(5))[0], a1)
    assert not np.array_equal(a1, as_arrays(train.dataset(6))[0])  # fresh draws per seed
