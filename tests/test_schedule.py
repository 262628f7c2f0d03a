"""The piecewise-linear learning rate and the recipe's knots."""

import keras
import numpy as np
import pytest

from tf_resnet9.config import TrainConfig
from tf_resnet9.schedule import PiecewiseLinear

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
