"""Learning rates: the recipe's piecewise-linear one, airbench's warm-up and linear decay,
the step and cosine decays of the classic CIFAR ResNets (built on Keras' own schedules),
and a cut on a loss plateau (Keras' `ReduceLROnPlateau`), each run's as one
`LearningRate`."""

from __future__ import annotations

import math
import types
from collections.abc import Sequence

import keras
import numpy as np
from keras import ops

from tf_resnet9.training.records import EpochRecord


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


def multi_step(
    base_lr: float, milestones: Sequence[float], gamma: float, steps_per_epoch: int
) -> keras.optimizers.schedules.PiecewiseConstantDecay:
    """A step decay: `base_lr`, times `gamma` at every milestone passed.

    Update k (1-based) uses base_lr * gamma ** (the number of milestones m with
    k - 1 >= m * steps_per_epoch): as PyTorch's MultiStepLR stepped once per epoch, for
    milestones at whole epochs, and at the update after m * steps_per_epoch for fractional
    ones (He et al. 2016 divide by 10 after 32k and 48k updates).

    Args:
        base_lr: The learning rate before the first milestone (> 0).
        milestones: Positions in epochs, strictly increasing, > 0.
        gamma: Factor at each milestone (0.1 in He et al.).
        steps_per_epoch: Optimizer steps in one epoch.
    """
    milestones = [float(m) for m in milestones]
    if not base_lr > 0:
        raise ValueError(f"base_lr={base_lr!r} is invalid: expected a number > 0.")
    if (
        not milestones
        or milestones[0] <= 0
        or any(b <= a for a, b in zip(milestones, milestones[1:]))
    ):
        raise ValueError(
            f"milestones={milestones!r} is invalid: expected strictly increasing epochs > 0."
        )
    # Keras keeps values[i] while the updates done are <= boundaries[i]: the update after
    # ceil(m * S) done is the first at the lower rate.
    boundaries = [math.ceil(m * steps_per_epoch) - 1 for m in milestones]
    values = [base_lr * gamma**i for i in range(len(milestones) + 1)]
    return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)


def cosine(
    base_lr: float, epochs: float, steps_per_epoch: int, final_lr: float = 0.0
) -> keras.optimizers.schedules.CosineDecay:
    """Half a cosine from `base_lr` at the first update to `final_lr` after `epochs`.

    Update k (1-based) uses final_lr + (base_lr - final_lr) * (1 + cos(pi * (k - 1) / T)) / 2
    with T = epochs * steps_per_epoch updates; constant at final_lr after that.
    """
    if not base_lr > 0 or not 0 <= final_lr <= base_lr:
        raise ValueError(
            f"base_lr={base_lr!r}, final_lr={final_lr!r} are invalid: expected "
            "0 <= final_lr <= base_lr and base_lr > 0."
        )
    return keras.optimizers.schedules.CosineDecay(
        base_lr, decay_steps=round(epochs * steps_per_epoch), alpha=final_lr / base_lr
    )


class LearningRate:
    """The learning rate of every update of a run: the one object that knows it. The epoch
    loop hands each compiled call its steps' rates (`lr_at`), the records read the rate of
    an epoch's last update from it, and it sees each epoch's record (`end_epoch`), which the
    plateau rule cuts on.

    Args:
        schedule: A Keras schedule of the update count (`PiecewiseLinear`, `multi_step`,
            `cosine`), tabulated for `updates` updates and the one after (past them, that
            last value: each of these schedules is constant after its end); a number: a
            constant rate, or with `plateau`, the starting one.
        updates: The run's updates.
        plateau: Keras' `ReduceLROnPlateau` (mode "min"), unchanged, applied after each
            epoch to its record: if the monitored loss has not fallen below its best by more
            than `min_delta` for `patience` epochs in a row, the rate becomes
            max(rate * factor, min_lr); no cut once at `min_lr`. None: the schedule alone.
    """

    def __init__(
        self,
        schedule: keras.optimizers.schedules.LearningRateSchedule | float,
        updates: int,
        plateau: keras.callbacks.ReduceLROnPlateau | None = None,
    ):
        self._plateau = plateau
        if plateau is None:
            # Once, before any clock runs: the rates of every update, on the host.
            steps = np.arange(updates + 1)
            values = schedule(steps) if callable(schedule) else np.full(steps.shape, schedule)
            self._table = np.asarray(ops.convert_to_numpy(values)).astype(np.float32)
            return
        # Keras' rule reads and sets `model.optimizer.learning_rate`: here, this holder.
        self._holder = types.SimpleNamespace(learning_rate=float(schedule))
        plateau.set_model(types.SimpleNamespace(optimizer=self._holder))
        plateau.on_train_begin()

    def lr_at(self, updates) -> np.ndarray:
        """float32 rates of the updates numbered `updates` (0-based, over the whole run):
        Keras' convention, a schedule called with the count of updates done before."""
        updates = np.asarray(updates)
        if self._plateau is not None:
            return np.full(updates.shape, self._holder.learning_rate, np.float32)
        return self._table[np.clip(updates, 0, len(self._table) - 1)]

    def end_epoch(self, record: EpochRecord) -> None:
        """Sees an epoch's record (the plateau rule cuts on it)."""
        if self._plateau is not None:
            self._plateau.on_epoch_end(record.epoch - 1, record.as_dict())

    def replay(self, records: Sequence[EpochRecord]) -> None:
        """Sees the records of a resumed run's epochs, so that it goes on as an
        uninterrupted run would (the plateau rule's counters and cuts)."""
        for record in records:
            self.end_epoch(record)


@keras.saving.register_keras_serializable(package="tf_resnet9")
class WarmupLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """airbench's learning rate: peak x a factor that rises linearly from `start_factor` to
    1 over the first `warmup_steps` updates, then falls linearly to `end_factor` at update
    `total_steps`, and stays there.

    Keras calls a schedule with the number of updates already applied, k = 0, 1, ...: as
    airbench's `LambdaLR(get_lr)`, whose update k + 1 uses get_lr(k), and
    airbench94_muon's lr x (1 - k / total). So the first update has factor start_factor
    and the last (k = total - 1) is one step short of end_factor:

        airbench94 (476 updates): WarmupLinearDecay(1.5, 476, int(476 * 0.23), 0.2, 0.07)
        airbench96 (1,776):       WarmupLinearDecay(lr, 1776, int(1776 * 0.1), 0.2, 0.0)
        airbench94_muon (200):    WarmupLinearDecay(lr, 200)  (no warm-up, to 0)

    Args:
        peak: The learning rate at factor 1.
        total_steps: Updates until the factor reaches end_factor (the run's length).
        warmup_steps: Updates of the rise (0: none); airbench: int(total x fraction).
        start_factor, end_factor: The factor at update 0 and at update total_steps.
    """

    def __init__(
        self,
        peak: float,
        total_steps: int,
        warmup_steps: int = 0,
        start_factor: float = 0.2,
        end_factor: float = 0.0,
    ):
        if int(total_steps) != total_steps or total_steps < 1:
            raise ValueError(f"total_steps={total_steps!r} is invalid: expected an integer >= 1.")
        if int(warmup_steps) != warmup_steps or not 0 <= warmup_steps < total_steps:
            raise ValueError(
                f"warmup_steps={warmup_steps!r} is invalid: expected an integer in "
                f"[0, total_steps={total_steps})."
            )
        self.peak, self.total_steps, self.warmup_steps = (
            float(peak),
            int(total_steps),
            int(warmup_steps),
        )
        self.start_factor, self.end_factor = float(start_factor), float(end_factor)

    def factor(self, step):
        """The factor of update `step` (0-based), float32."""
        k = ops.cast(step, "float32")
        warm = max(self.warmup_steps, 1)
        rising = self.start_factor + (1.0 - self.start_factor) * (k / warm)
        decayed = (k - self.warmup_steps) / (self.total_steps - self.warmup_steps)
        falling = 1.0 - (1.0 - self.end_factor) * ops.minimum(decayed, 1.0)
        return ops.where(k < self.warmup_steps, rising, falling)

    def __call__(self, step):
        return self.peak * self.factor(step)

    def get_config(self):
        return {
            "peak": self.peak,
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
            "start_factor": self.start_factor,
            "end_factor": self.end_factor,
        }


@keras.saving.register_keras_serializable(package="tf_resnet9")
class Scaled(keras.optimizers.schedules.LearningRateSchedule):
    """Another schedule times a constant: a second learning rate of the same shape (Muon's
    kernels' beside the run's own)."""

    def __init__(self, schedule: keras.optimizers.schedules.LearningRateSchedule, factor: float):
        self.schedule, self.factor = schedule, float(factor)

    def __call__(self, step):
        return self.schedule(step) * self.factor

    def get_config(self):
        return {
            "schedule": keras.optimizers.schedules.serialize(self.schedule),
            "factor": self.factor,
        }

    @classmethod
    def from_config(cls, config):
        schedule = keras.optimizers.schedules.deserialize(config["schedule"])
        return cls(schedule, config["factor"])
