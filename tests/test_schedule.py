"""Learning-rate schedules against their formulas: the recipe's piecewise-linear one, step
and cosine decays, and the cut on a plateau."""

import keras
import numpy as np
import pytest

from tf_resnet9 import build
from tf_resnet9.config import TrainConfig
from tf_resnet9.training.records import EpochRecord
from tf_resnet9.training.schedules import LearningRate, PiecewiseLinear, cosine, multi_step

RECIPE = PiecewiseLinear([0, 5, 24], [0.0, 0.4, 0.0], steps_per_epoch=97)


def lr_at(schedule, k):
    """Learning rate of update k (1-based); Keras passes the updates done so far, k - 1 (a
    run's `LearningRate` takes that count too)."""
    if isinstance(schedule, LearningRate):
        return float(schedule.lr_at(k - 1))
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


def epoch_record(epoch: int, train_loss: float) -> EpochRecord:
    figures = dict(lr=0.0, train_acc=0.5, test_loss=1.0, test_acc=0.5, test_top5_acc=0.9)
    times = dict(epoch_time_s=1.0, training_time_s=1.0)
    return EpochRecord(epoch, train_loss=train_loss, **figures, **times)


def plateau_lrs(losses, patience=2, factor=0.1, min_lr=1e-6, lr=1e-3, earlier=()):
    """The lr after each epoch of `losses` (the monitored train_loss), following the epochs
    of `earlier` (replayed, as a resumed run does)."""
    rule = keras.callbacks.ReduceLROnPlateau(
        mode="min", monitor="train_loss", factor=factor, patience=patience, min_lr=min_lr
    )
    rate = LearningRate(lr, updates=100, plateau=rule)
    rate.replay([epoch_record(k + 1, loss) for k, loss in enumerate(earlier)])
    lrs = []
    for epoch, loss in enumerate(losses, start=len(earlier) + 1):
        rate.end_epoch(epoch_record(epoch, loss))
        lrs.append(float(rate.lr_at(0)))  # the same for every update of the next epoch
    return lrs


def test_plateau_cuts_exactly_after_patience_evaluations_without_improvement():
    # Keras' rule: an improvement is a loss below the best by more than min_delta = 1e-4.
    losses = [1.0, 0.9, 0.95, 0.90005, 0.8, 0.85, 0.85, 0.85, 0.85]
    lrs = plateau_lrs(losses, patience=2)
    expected = [1e-3, 1e-3, 1e-3, 1e-4, 1e-4, 1e-4, 1e-5, 1e-5, 1e-6]
    # 0.90005 is not an improvement on 0.9 (by less than min_delta): the 2nd in a row, a cut.
    # After a cut the count starts again: cuts after epochs 4, 7 and 9.
    np.testing.assert_allclose(lrs, expected, rtol=1e-6)


def test_plateau_never_goes_below_the_floor():
    lrs = plateau_lrs([1.0] * 12, patience=1, factor=0.1, min_lr=1e-6, lr=1e-3)
    assert min(lrs) == pytest.approx(1e-6) and min(lrs) >= np.float32(1e-6) * (1 - 1e-6)
    assert lrs[3:] == [lrs[3]] * 9  # at the floor from the 4th epoch on: no cut below it


def test_a_resumed_plateau_cuts_where_an_uninterrupted_one_does():
    losses = [1.0, 0.9, 0.95, 0.96, 0.97, 0.98, 0.99]
    whole = plateau_lrs(losses, patience=3)
    # The lr and the counters come back from replaying the records of the epochs done.
    resumed = plateau_lrs(losses[4:], patience=3, earlier=losses[:4])
    assert resumed == whole[4:]
    assert whole[4] < whole[3]  # the cut after epoch 5 needs the counts of epochs 3 and 4


def test_the_config_schedules_follow_the_settings():
    he = TrainConfig.from_recipe("he2016", epochs=8)
    schedule = build.learning_rate(he, steps_per_epoch=10)
    # Milestones at 50% and 75% of 8 epochs: the updates after 40 and 60 done.
    assert [lr_at(schedule, k) for k in (40, 41, 60, 61)] == pytest.approx([0.1, 0.01, 0.01, 0.001])
    cos = build.learning_rate(TrainConfig(lr_schedule="cosine", epochs=4, min_lr=0.01), 5)
    assert lr_at(cos, 1) == pytest.approx(0.4) and lr_at(cos, 21) == pytest.approx(0.01)
    plateau = build.learning_rate(TrainConfig.from_recipe("adam_plateau"), 10)
    assert lr_at(plateau, 1) == pytest.approx(1e-3)


def test_the_run_learning_rate_is_the_schedule_at_every_update():
    # The table the steps read (float32) against the Keras schedule it tabulates, called as
    # the optimizer would call it; past the run's last update, the last value.
    rate = LearningRate(RECIPE, updates=2328)
    k = np.arange(1, 2329)
    np.testing.assert_array_equal(rate.lr_at(k - 1), np.asarray(RECIPE(k - 1), np.float32))
    assert rate.lr_at(5000) == rate.lr_at(2327) and rate.lr_at(0).dtype == np.float32
