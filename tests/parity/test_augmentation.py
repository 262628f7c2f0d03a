"""Test 6: reflect padding and augmentation, against the reference and the recipe."""

import importlib.util

import pytest

from tests.parity import cases, checks, distributions

SEED = 4
HAVE_TENSORFLOW = importlib.util.find_spec("tensorflow") is not None


def test_padding_and_same_draws_give_identical_images():
    pytest.importorskip("torch")
    images = cases.random_images(256, SEED)
    rows = distributions.exact_augment_rows(images, cases.augment_draws(256, SEED))
    assert all(row.ok for row in rows), checks.failures(rows)


def test_draws_follow_the_recipe_and_the_reference(have_torch):
    # Every sampler of the package: the draws themselves, the device input's (augmented in
    # the compiled step) and, where TensorFlow is installed, the tf.data pipeline's.
    rows = distributions.draw_rows(
        distributions.package_draws(distributions.DRAW_COUNT, SEED),
        distributions.device_draws(distributions.DRAW_COUNT, SEED),
        distributions.reference_draws(distributions.DRAW_COUNT, SEED) if have_torch else None,
        distributions.pipeline_draws(distributions.DRAW_COUNT, SEED) if HAVE_TENSORFLOW else None,
    )
    assert all(row.ok for row in rows), checks.failures(rows)
    assert any(row.item.startswith("device input") for row in rows)
