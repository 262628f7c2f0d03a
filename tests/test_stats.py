"""The training images' per-channel statistics: exact counts, whatever the chunking."""

import numpy as np
import pytest

from tf_resnet9.data import stats
from tf_resnet9.data.stats import channel_stats


def test_the_statistics_are_numpy_s_mean_and_population_std_rounded():
    images = np.random.default_rng(0).integers(0, 256, (7, 5, 6, 3), dtype=np.uint8)
    found = channel_stats(images)
    pixels = images.reshape(-1, 3).astype(np.float64)
    # Rounded to 4 decimals: within half a unit of the 4th decimal of NumPy's float64.
    np.testing.assert_allclose(found.mean, pixels.mean(axis=0), rtol=0, atol=5e-5)
    np.testing.assert_allclose(found.std, pixels.std(axis=0), rtol=0, atol=5e-5)
    assert found.as_dict() == {"mean": list(found.mean), "std": list(found.std)}


def test_chunks_and_a_memory_mapped_copy_give_the_same_figures(tmp_path, monkeypatch):
    images = np.random.default_rng(1).integers(0, 256, (9, 4, 4, 3), dtype=np.uint8)
    whole = channel_stats(images)
    np.save(tmp_path / "x.npy", images)
    monkeypatch.setattr(stats, "CHUNK_BYTES", 2 * images[0].nbytes)  # 2 images a chunk
    assert channel_stats(np.load(tmp_path / "x.npy", mmap_mode="r")) == whole  # exact
    assert channel_stats(images[::-1].copy()) == whole  # the order does not matter


def test_constant_channels_have_zero_std():
    images = np.zeros((2, 3, 3, 3), np.uint8) + np.array([0, 128, 255], np.uint8)
    assert channel_stats(images) == stats.ChannelStats((0.0, 128.0, 255.0), (0.0, 0.0, 0.0))


@pytest.mark.parametrize("images", [np.zeros((0, 2, 2, 3), np.uint8), np.zeros((1, 2, 2, 3))])
def test_anything_but_uint8_images_is_refused(images):
    with pytest.raises(ValueError, match="expected uint8 \\(N>0, H, W, C\\)"):
        channel_stats(images)
