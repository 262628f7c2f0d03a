"""The augmentation at other image sizes (its padding and cutout scaled with the side), and
the inputs normalising with the training images' statistics instead of CIFAR-10's."""

import numpy as np
import pytest
from keras import ops

from tf_resnet9 import backends
from tf_resnet9.data import augment
from tf_resnet9.data.inputs import DeviceInput
from tf_resnet9.data.stats import ChannelStats
from tf_resnet9.data.streaming import StreamingInput


@pytest.mark.parametrize(
    "size, pad, cutout", [(32, 4, 8), (64, 8, 16), (28, 4, 7), (96, 12, 24), (16, 2, 4)]
)
def test_the_padding_and_cutout_are_page_s_shares_of_the_side(size, pad, cutout):
    assert augment.geometry(size) == augment.Geometry(size, pad, cutout)
    assert augment.geometry(32) == augment.CIFAR
    assert (
        augment.geometry(64).max_crop_offset == 16 and augment.geometry(64).max_cutout_offset == 48
    )


def test_given_padding_and_cutout_override_the_shares():
    assert augment.geometry(64, pad=4, cutout=8) == augment.Geometry(64, 4, 8)


@pytest.mark.parametrize(
    "args, message",
    [
        ((1,), "size=1 is invalid: expected 2 or more"),
        ((8, 8), "pad=8 is invalid: expected 0..7 for 8x8"),
        ((8, -1), "pad=-1 is invalid"),
        ((8, 1, 0), "cutout=0 is invalid: expected 1..8"),
        ((8, 1, 9), "cutout=9 is invalid"),
    ],
)
def test_impossible_geometries_are_refused(args, message):
    with pytest.raises(ValueError, match=message):
        augment.geometry(*args)


def test_draws_span_the_geometry_s_offsets():
    params = augment.draw_params(4000, backends.make_seed(0), augment.geometry(64))
    params = augment.AugmentParams(*(ops.convert_to_numpy(p) for p in params))
    assert set(params.crop_y.tolist()) == set(range(17)) == set(params.crop_x.tolist())
    assert set(params.cutout_y.tolist()) == set(range(49))


def test_a_64x64_set_is_padded_by_8_cropped_back_and_cut_out_16x16():
    images = np.full((8, 64, 64, 3), 200, np.uint8)
    device_input = DeviceInput(images, np.arange(8), 4, 2, seed=0, pad="zero")
    assert tuple(device_input.padded.shape) == (8, 80, 80, 3)
    (chunk,) = list(device_input.epoch(1))
    batch, _ = device_input.batches(chunk, 0)
    batch = ops.convert_to_numpy(batch)
    assert batch.shape == (4, 64, 64, 3)
    for image in batch:
        # The cutout: a 16x16 square at zero; the zero padding: black, normalised.
        cut = np.all(image == 0.0, axis=-1)
        assert cut.sum() == 16 * 16
        rows, cols = np.flatnonzero(cut.any(axis=1)), np.flatnonzero(cut.any(axis=0))
        assert rows[-1] - rows[0] == cols[-1] - cols[0] == 15


def test_non_square_images_are_refused():
    with pytest.raises(ValueError, match="images of 32x16 are invalid: expected square"):
        DeviceInput(np.zeros((4, 32, 16, 3), np.uint8), np.arange(4), 2, 1, 0)
    with pytest.raises(ValueError, match="is invalid for images of 16x16"):
        DeviceInput(
            np.zeros((4, 16, 16, 3), np.uint8), np.arange(4), 2, 1, 0, geometry=augment.CIFAR
        )


STATS = ChannelStats((100.0, 110.0, 120.0), (50.0, 40.0, 30.0))


def test_the_inputs_normalise_with_the_statistics_given():
    images = np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
    device_input = DeviceInput(
        images, np.arange(4), 4, 1, seed=0, cutout=False, normalization=STATS
    )
    (chunk,) = list(device_input.epoch(1))
    batch = ops.convert_to_numpy(device_input.batches(chunk, 0)[0])
    # Undo the normalisation with the statistics given: the pixels are whole numbers again
    # (crops and flips move pixels, they do not blend them). float32: within 1e-3 of 255.
    pixels = batch * np.float32(STATS.std) + np.float32(STATS.mean)
    np.testing.assert_allclose(pixels, np.rint(pixels), atol=1e-3)
    assert set(np.rint(pixels).astype(int).ravel()) <= set(images.ravel().tolist())
    expected = augment.normalize(images, STATS)
    np.testing.assert_allclose(
        ops.convert_to_numpy(expected),
        (images - np.float32(STATS.mean)) / np.float32(STATS.std),
        rtol=1e-6,
    )


@pytest.mark.parametrize("size", [16, 64])
def test_streamed_batches_are_the_device_input_s_at_other_sizes(size):
    rng = np.random.default_rng(size)
    images = rng.integers(0, 256, (10, size, size, 3), dtype=np.uint8)
    labels = rng.integers(0, 3, 10)
    options = dict(seed=2, normalization=STATS)
    placed = DeviceInput(images, labels, 4, 2, **options)
    streamed = StreamingInput(images, labels, 4, 2, loader="grain", **options)
    for c_placed, c_streamed in zip(placed.epoch(1), streamed.epoch(1)):
        for i in range(2):
            a = placed.batches(c_placed, i)
            b = streamed.batches(c_streamed, i)
            # Exactly: the same integer ops on the same pixels, then the same float32 ones.
            np.testing.assert_array_equal(ops.convert_to_numpy(a[0]), ops.convert_to_numpy(b[0]))
            np.testing.assert_array_equal(ops.convert_to_numpy(a[1]), ops.convert_to_numpy(b[1]))


@pytest.mark.tensorflow
def test_the_host_input_at_another_size():
    from tf_resnet9.data.host_input import HostInput

    images = np.zeros((8, 16, 16, 3), np.uint8)
    host_input = HostInput(images, np.arange(8), 4, 2, seed=0, normalization=STATS)
    assert tuple(host_input.padded.shape) == (8, 20, 20, 3)
    ((batch, _),) = list(host_input.dataset(0).take(1))
    assert tuple(batch.shape) == (4, 16, 16, 3)
    # Black pixels normalised by STATS; the cutout's 4x4 squares are the zeros.
    values = set(np.round(batch.numpy(), 4).ravel().tolist())
    assert values == {0.0, -2.0, -2.75, -4.0}
