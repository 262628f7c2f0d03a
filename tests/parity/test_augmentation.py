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


@pytest.mark.parametrize(
    "with_pipeline",
    [False, pytest.param(True, marks=pytest.mark.tensorflow, id="tf.data")],
)
def test_draws_follow_the_reference_distributions(with_pipeline, have_torch):
    if with_pipeline and not HAVE_TENSORFLOW:
        pytest.skip("tf.data needs TensorFlow")
    rows = distributions.draw_rows(
        distributions.package_draws(distributions.DRAW_COUNT, SEED),
        distributions.reference_draws(distributions.DRAW_COUNT, SEED) if have_torch else None,
        distributions.pipeline_draws(distributions.DRAW_COUNT, SEED) if with_pipeline else None,
    )
    assert all(row.ok for row in rows), checks.failures(rows)
