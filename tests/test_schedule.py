"""The piecewise-linear learning rate and the recipe's knots."""

import keras
import numpy as np
import pytest

from tf_resnet9.config import TrainConfig
from tf_resnet9.schedule import PiecewiseLinear, cosine, multi_step

RECIPE = PiecewiseLinear([0, 5, 24], [0.0, 0.4, 0.0], steps_per_epoch=97)


def lr_at(schedule, k):
    """Learning rate of update k (1-based); Keras passes the updates done so far, k - 1."""
    return float(schedule(k - 1))


@pytest.mark.parametrize("k, expected", [(1, 0.4 / 485), (485, 0.4), (2328, 0.0)])
def test_recipe_values(k, expected):
    # float32 evaluation: within 2 ulp of the exact value.
    assert lr_at(RECIPE, k) == pytest.approx(expected, rel=2.5e-7, abs=1e-12)


def test_every_step_matches_numpy_interp():
    k = np.arange(1, 2329)
    got = np.asarray(RECIPE(k - 1))
    expected = np.interp(k / 97, [0, 5, 24], [0.0, 0.4, 0.0])
    # float32 round-off of values <= 0.4: absolute 1e-7 at most (measured 3e-8).
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-7)
    assert got.min() >= 0.0


def test_constant_beyond_the_last_knot():
    assert lr_at(RECIPE, 5000) == 0.0


def test_config_knots_are_the_recipe_for_24_epochs():
    assert TrainConfig().lr_knots == ((0.0, 5.0, 24.0), (0.0, 0.4, 0.0))
    # Shorter runs peak at the same fraction of training.
    assert TrainConfig(epochs=12).lr_knots == ((0.0, 2.5, 12.0), (0.0, 0.4, 0.0))


def test_config_round_trip():
    restored = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(RECIPE))
    assert isinstance(restored, PiecewiseLinear)
    assert restored.get_config() == RECIPE.get_config()


@pytest.mark.parametrize(
    "args, message",
    [
        (([0, 5, 5], [0, 1, 0], 10), "strictly increasing"),
        (([0, 5], [0, 1, 0], 10), "same length"),
        (([0, 5], [0, 1], 0), "steps_per_epoch=0 is invalid"),
    ],
)
def test_invalid_arguments_are_named(args, message):
    with pytest.raises(ValueError, match=message):
        PiecewiseLinear(*args)


def test_multi_step_against_its_formula_at_every_step():
    # 10 steps per epoch, milestones at epochs 2 and 3.5 (the update after 20 and 35 done).
    schedule = multi_step(0.1, [2, 3.5], gamma=0.1, steps_per_epoch=10)
    k = np.arange(1, 61)
    passed = (k[:, None] - 1 >= np.array([20, 35])[None, :]).sum(axis=1)
    expected = 0.1 * 0.1**passed
    got = np.array([lr_at(schedule, step) for step in k])
    # float32 values of 0.1, 0.01, 0.001: relative 1e-7.
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert lr_at(schedule, 20) == pytest.approx(0.1) and lr_at(schedule, 21) == pytest.approx(0.01)


def test_cosine_endpoints_and_every_step():
    schedule = cosine(0.2, epochs=3, steps_per_epoch=10, final_lr=0.02)
    k = np.arange(1, 41)
    t = np.minimum(k - 1, 30)
    expected = 0.02 + (0.2 - 0.02) * (1 + np.cos(np.pi * t / 30)) / 2
    got = np.array([lr_at(schedule, step) for step in k])
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)  # float32 cosines
    assert lr_at(schedule, 1) == pytest.approx(0.2) and lr_at(schedule, 31) == pytest.approx(0.02)


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: multi_step(0.1, [3, 2], 0.1, 10), "milestones=.*strictly increasing"),
        (lambda: multi_step(0.0, [2], 0.1, 10), "base_lr=0.0 is invalid"),
        (lambda: cosine(0.1, 3, 10, final_lr=0.5), "final_lr=0.5 are invalid"),
    ],
)
def test_decay_arguments_are_named(build, message):
    with pytest.raises(ValueError, match=message):
        build()
