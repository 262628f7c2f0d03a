"""The tf.data pipeline: batches, labels, shuffling, seeds. (Its draws are compared with the
recipe's distribution and the reference's in tests/parity/test_augmentation.py.)"""

import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="tf.data; runs in make test")
pytestmark = pytest.mark.tensorflow

from tests.augment_decoding import COORDINATE_IMAGE  # noqa: E402
from tf_resnet9 import augment, pipeline  # noqa: E402


def first_epoch(dataset):
    images, labels = zip(*[(x.numpy(), y.numpy()) for x, y in dataset])
    return np.concatenate(images), np.concatenate(labels)


def test_batches_shapes_and_dropped_remainder():
    images = np.zeros((100, 32, 32, 3), np.uint8)
    batches = list(pipeline.train_dataset(images, np.zeros(100), 32, seed=0))
    assert len(batches) == 3  # 100 // 32; the last 4 images are dropped
    x, y = batches[0]
    assert x.shape == (32, 32, 32, 3) and x.dtype == "float32" and y.dtype == "int32"


def test_labels_follow_their_images_and_each_epoch_reshuffles():
    # Image k is the constant colour k; label k % 10.
    count = 250
    images = np.broadcast_to(
        np.arange(count, dtype=np.uint8)[:, None, None, None], (count, 32, 32, 3)
    )
    dataset = pipeline.train_dataset(images, np.arange(count) % 10, 50, seed=1)
    orders = []
    for _ in range(2):
        x, y = first_epoch(dataset)
        red = x[..., 0].reshape(count, -1)
        kept = red[np.arange(count), np.argmax(red != 0, axis=1)]  # a pixel outside the cutout
        ids = np.rint(kept * augment.STD[0] + augment.MEAN[0]).astype(int)
        assert np.array_equal(np.sort(ids), np.arange(count))  # every image once per epoch
        assert np.array_equal(y, ids % 10)
        orders.append(ids)
    assert not np.array_equal(orders[0], orders[1])


def test_seeded_and_reproducible():
    images = np.repeat(COORDINATE_IMAGE[None], 64, axis=0)
    labels = np.arange(64) % 10
    a1, a2 = (first_epoch(pipeline.train_dataset(images, labels, 32, seed=5))[0] for _ in range(2))
    b = first_epoch(pipeline.train_dataset(images, labels, 32, seed=6))[0]
    np.testing.assert_array_equal(a1, a2)  # same seed: bit-identical
    assert not np.array_equal(a1, b)
    dataset = pipeline.train_dataset(images, labels, 32, seed=5)
    epoch1, epoch2 = first_epoch(dataset)[0], first_epoch(dataset)[0]
    np.testing.assert_array_equal(epoch1, a1)
    assert not np.array_equal(epoch1, epoch2)  # fresh draws every epoch


def test_eval_dataset_is_normalised_in_order_with_the_last_partial_batch():
    images = np.random.default_rng(0).integers(0, 256, (10, 32, 32, 3), dtype=np.uint8)
    batches = list(pipeline.eval_dataset(images, np.arange(10), 4))
    assert [len(y) for _, y in batches] == [4, 4, 2]
    x = np.concatenate([x.numpy() for x, _ in batches])
    expected = (images - np.float32(augment.MEAN)) / np.float32(augment.STD)
    np.testing.assert_allclose(x, expected, rtol=1e-6, atol=1e-6)  # float32 round-off
    assert np.concatenate([y.numpy() for _, y in batches]).tolist() == list(range(10))
