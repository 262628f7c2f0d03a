"""Each image op, with pinned random choices, eagerly and inside tf.data's Dataset.map."""

import numpy as np
import pytest
from keras import ops

import tf_resnet9
from tf_resnet9 import backends
from tf_resnet9.data import augment

RNG = np.random.default_rng(0)
IMAGES = RNG.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
PADDED = np.pad(IMAGES, ((0, 0), (4, 4), (4, 4), (0, 0)), mode="reflect")
NORMALIZED = ((IMAGES - np.float32(augment.MEAN)) / np.float32(augment.STD)).astype(np.float32)
OFFSETS_Y = np.array([0, 8, 3, 5], np.int32)
OFFSETS_X = np.array([8, 0, 4, 1], np.int32)
FLIPS = np.array([1, 0, 1, 0], np.int32)
CUTOUT_Y = np.array([0, 24, 10, 3], np.int32)
CUTOUT_X = np.array([24, 0, 7, 19], np.int32)


def expected_crop():
    return np.stack([p[y : y + 32, x : x + 32] for p, y, x in zip(PADDED, OFFSETS_Y, OFFSETS_X)])


def expected_cutout():
    out = NORMALIZED.copy()
    for image, y, x in zip(out, CUTOUT_Y, CUTOUT_X):
        image[y : y + 8, x : x + 8] = 0.0
    return out


CASES = {
    "normalize": (augment.normalize, (IMAGES,), NORMALIZED),
    "reflect_pad": (augment.reflect_pad, (IMAGES,), PADDED),
    "zero_pad": (
        lambda images: augment.pad_images(images, "zero"),
        (IMAGES,),
        np.pad(IMAGES, ((0, 0), (4, 4), (4, 4), (0, 0))),  # black: torchvision's RandomCrop
    ),
    "crop": (augment.crop, (PADDED, OFFSETS_Y, OFFSETS_X), expected_crop()),
    "flip_left_right": (
        augment.flip_left_right,
        (IMAGES, FLIPS),
        np.where(FLIPS[:, None, None, None] == 1, IMAGES[:, :, ::-1], IMAGES),
    ),
    "cutout": (augment.cutout, (NORMALIZED, CUTOUT_Y, CUTOUT_X), expected_cutout()),
}


def run_in_dataset_map(fn, args):
    """Runs fn on args inside a tf.data graph, as the input pipeline does."""
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensors(tuple(args)).map(fn)
    return next(iter(dataset)).numpy()


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize(
    "mode", ["eager", pytest.param("dataset_map", marks=pytest.mark.tensorflow)]
)
def test_op_matches_numpy(name, mode):
    fn, args, expected = CASES[name]
    got = ops.convert_to_numpy(fn(*args)) if mode == "eager" else run_in_dataset_map(fn, args)
    assert got.dtype == expected.dtype and got.shape == expected.shape
    # Only normalize computes; float32 (x - m) / s in either order is within 1 ulp.
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6, err_msg=f"{name} ({mode})")


def test_reflect_does_not_repeat_the_edge():
    row = np.arange(1, 33, dtype=np.uint8)[None, None, :, None] * np.ones((1, 32, 1, 1), np.uint8)
    padded = ops.convert_to_numpy(augment.reflect_pad(row))
    assert padded[0, 10, :9, 0].tolist() == [5, 4, 3, 2, 1, 2, 3, 4, 5]


def test_mean_colour_normalises_to_zero():
    got = ops.convert_to_numpy(
        augment.normalize(np.array(augment.MEAN, np.float32)[None, None, None])
    )
    np.testing.assert_allclose(got, 0.0, atol=1e-6)


def test_cutout_zeroes_exactly_one_8x8_square():
    ones = np.ones((len(CUTOUT_Y), 32, 32, 3), np.float32)
    out = ops.convert_to_numpy(augment.cutout(ones, CUTOUT_Y, CUTOUT_X))
    for image, y, x in zip(out, CUTOUT_Y, CUTOUT_X):
        zero = np.argwhere((image == 0).all(axis=-1))
        assert len(zero) == 64 and (image == 0).sum() == 64 * 3
        assert zero.min(axis=0).tolist() == [y, x] and zero.max(axis=0).tolist() == [y + 7, x + 7]


def test_augment_composes_crop_flip_normalize_cutout():
    params = augment.AugmentParams(OFFSETS_Y, OFFSETS_X, FLIPS, CUTOUT_Y, CUTOUT_X)
    got = ops.convert_to_numpy(augment.augment(PADDED, params))
    cropped = expected_crop()
    flipped = np.where(FLIPS[:, None, None, None] == 1, cropped[:, :, ::-1], cropped)
    expected = (flipped - np.float32(augment.MEAN)) / np.float32(augment.STD)
    for image, y, x in zip(expected, CUTOUT_Y, CUTOUT_X):
        image[y : y + 8, x : x + 8] = 0.0
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


def test_augment_without_cutout_is_crop_flip_normalize():
    params = augment.AugmentParams(OFFSETS_Y, OFFSETS_X, FLIPS, CUTOUT_Y, CUTOUT_X)
    got = ops.convert_to_numpy(augment.augment(PADDED, params, with_cutout=False))
    cropped = expected_crop()
    flipped = np.where(FLIPS[:, None, None, None] == 1, cropped[:, :, ::-1], cropped)
    expected = (flipped - np.float32(augment.MEAN)) / np.float32(augment.STD)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)  # float32 round-off


def test_unknown_pad_mode_is_named():
    with pytest.raises(ValueError, match="mode='edge' is invalid: expected 'reflect' or 'zero'"):
        augment.pad_images(IMAGES, "edge")


def test_draw_params_ranges():
    drawn = augment.draw_params(1000, backends.make_seed(0))
    drawn = augment.AugmentParams(*(ops.convert_to_numpy(p) for p in drawn))
    assert set(drawn.crop_y.tolist()) == set(range(9)) == set(drawn.crop_x.tolist())
    assert set(drawn.flip.tolist()) == {0, 1}
    assert set(drawn.cutout_y.tolist()) == set(range(25)) == set(drawn.cutout_x.tolist())


def test_preprocess_is_the_training_normalisation():
    got = ops.convert_to_numpy(tf_resnet9.preprocess(IMAGES))
    np.testing.assert_array_equal(got, ops.convert_to_numpy(augment.normalize(IMAGES)))


@pytest.mark.parametrize(
    "images, message",
    [
        (IMAGES / np.float32(255), "dtype float32 are invalid: expected uint8"),
        (NORMALIZED, "dtype float32 are invalid"),
        (IMAGES[0], r"shape \(32, 32, 3\) are invalid: expected \(B, 32, 32, 3\)"),
        (np.zeros((2, 28, 28, 3), np.uint8), "shape"),
    ],
)
def test_preprocess_refuses_what_would_be_classified_silently_wrong(images, message):
    with pytest.raises(ValueError, match=message):
        tf_resnet9.preprocess(images)
