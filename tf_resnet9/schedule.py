"""The recipe's learning rate: piecewise linear in fractional epochs."""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="tf_resnet9")
class PiecewiseLinear(keras.optimizers.schedules.LearningRateSchedule):
    """Linear interpolation between knots (epoch, value), constant outside them.

    Update number k (1-based) uses `interp(k / steps_per_epoch)`, so the very first update
    of the recipe has lr = 0.4 / 485, not 0. Keras calls a schedule with the number of
    updates already applied (`optimizer.iterations`), which is k - 1.

    Args:
        epochs: Knot positions in epochs, strictly increasing.
        values: Learning rate at each knot.
        steps_per_epoch: Optimizer steps in one epoch.
    """

    def __init__(self, epochs: Sequence[float], values: Sequence[float], steps_per_epoch: int):
        epochs, values = [float(e) for e in epochs], [float(v) for v in values]
        if len(epochs) < 2 or len(epochs) != len(values):
            raise ValueError(
                f"epochs={epochs!r} and values={values!r} are invalid: expected two sequences "
                "of the same length, at least 2."
            )
        if any(b <= a for a, b in zip(epochs, epochs[1:])):
            raise ValueError(f"epochs={epochs!r} is invalid: expected strictly increasing knots.")
        if int(steps_per_epoch) != steps_per_epoch or steps_per_epoch < 1:
            raise ValueError(
                f"steps_per_epoch={steps_per_epoch!r} is invalid: expected an integer >= 1."
            )
        self.epochs = epochs
        self.values = values
        self.steps_per_epoch = int(steps_per_epoch)

    def __call__(self, step):
        # Work in steps, not epochs: step counts and knot positions like 5 * 97 are exact in
        # float32, so `x1 - k` near the end of training does not lose digits to round-off.
        k = ops.cast(step, "float32") + 1.0
        knots = [(x * self.steps_per_epoch, y) for x, y in zip(self.epochs, self.values)]
        k = ops.clip(k, knots[0][0], knots[-1][0])
        lr = ops.convert_to_tensor(self.values[-1], "float32")
        for (x0, y0), (x1, y1) in reversed(list(zip(knots, knots[1:]))):
            inside = y0 * ((x1 - k) / (x1 - x0)) + y1 * ((k - x0) / (x1 - x0))
            lr = ops.where(k < x1, inside, lr)
        return lr

    def get_config(self):
        return {
            "epochs": self.epochs,
            "values": self.values,
            "steps_per_epoch": self.steps_per_epoch,
        }
