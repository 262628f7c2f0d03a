"""The tf.data pipeline: what it draws, recovered from the images it produces."""

import numpy as np
import pytest
from scipy import stats

from tf_resnet9 import augment, pipeline

# Every pixel encodes where it came from: R = 8 * row, G = 8 * column of the 32x32 source.
ROWS, COLS = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
COORDINATE_IMAGE = np.stack([8 * ROWS, 8 * COLS, np.full((32, 32), 7)], axis=-1).astype(np.uint8)

# p-value below which a chi-square test calls a draw non-uniform. The pipeline is seeded,
# so each test is deterministic; 1e-4 would flag a correct sampler once in 10,000 seeds.
P_MIN = 1e-4


def decode(batch):
    """Recovers (crop_y, crop_x, flip, cutout_y, cutout_x) of each augmented image.

    Cutout pixels are exactly 0 (the mean colour, which no integer pixel normalises to).
    Output pixel (i, j) with 4 <= i, j < 28 comes from the unreflected middle of the padded
    image for every crop offset, so its source row is crop_y + i - 4, and its source column
    crop_x + j - 4, or crop_x + 27 - j when flipped.
    """
    draws = []
    for image in batch:
        cut = (image == 0).all(axis=-1)
        cut_rows, cut_cols = np.nonzero(cut)
        assert cut.sum() == 64 and np.ptp(cut_rows) == 7 and np.ptp(cut_cols) == 7
        pixels = np.rint(image * np.float32(augment.STD) + np.float32(augment.MEAN)).astype(int)
        valid = ~cut
        valid[:4], valid[28:], valid[:, :4], valid[:, 28:] = False, False, False, False
        i, j = np.nonzero(valid)
        src_rows, src_cols = pixels[i, j, 0] // 8, pixels[i, j, 1] // 8
        crop_y = np.unique(src_rows - i + 4)
        unflipped, flipped = np.unique(src_cols - j + 4), np.unique(src_cols + j - 27)
        assert len(crop_y) == 1 and (len(unflipped) == 1) != (len(flipped) == 1)
        flip = len(flipped) == 1
        crop_x = flipped[0] if flip else unflipped[0]
        draws.append((crop_y[0], crop_x, int(flip), cut_rows.min(), cut_cols.min()))
    return np.array(draws)


def first_epoch(dataset):
    images, labels = zip(*[(x.numpy(), y.numpy()) for x, y in dataset])
    return np.concatenate(images), np.concatenate(labels)


@pytest.fixture(scope="module")
def draws():
    images = np.repeat(COORDINATE_IMAGE[None], 2048, axis=0)
    images_out, _ = first_epoch(pipeline.train_dataset(images, np.zeros(2048), 512, seed=3))
    return decode(images_out)


def test_crop_offsets_are_uniform_over_0_to_8(draws):
    for column in (0, 1):
        counts = np.bincount(draws[:, column], minlength=9)
        assert len(counts) == 9 and counts.min() > 0
        assert stats.chisquare(counts).pvalue > P_MIN


def test_flip_rate_is_one_half(draws):
    # 2048 fair coin flips: the rate is within 4 standard errors (4 * 0.011) of 1/2.
    assert abs(draws[:, 2].mean() - 0.5) < 4 * 0.5 / np.sqrt(len(draws))


def test_cutout_is_inside_and_uniform_over_0_to_24(draws):
    for column in (3, 4):
        counts = np.bincount(draws[:, column], minlength=25)
        assert len(counts) == 25 and counts.min() > 0  # 0..24: the square never leaves
        assert stats.chisquare(counts).pvalue > P_MIN


def test_draws_differ_within_a_batch(draws):
    # Per example, not one draw per batch.
    assert len(np.unique(draws[:512], axis=0)) > 500


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
