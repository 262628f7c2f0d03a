"""The records a run keeps, defined once: an epoch's (`EpochRecord`) as the progress table,
TensorBoard, the report, checkpoints, results.json and the benchmarks read it, what else the
end of an epoch hands its callbacks (`EpochEnd`), and how far a run got (`Progress`)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np


@dataclasses.dataclass(frozen=True)
class EpochRecord:
    """One epoch's figures. The field names are the keys of the Keras logs the epoch loop's
    callbacks receive and of results.json's "epochs" (`as_dict`).

    The val_* fields are None without a validation set (`--val_split`), and left out of
    `as_dict` then.
    """

    epoch: int  # 1-based
    lr: float  # of the epoch's last update
    train_loss: float  # mean of the steps' losses (label-smoothed where the run smooths)
    train_acc: float  # share of the epoch's augmented training images classified right
    test_loss: float  # mean cross-entropy over the test set, inference mode
    test_acc: float
    test_top5_acc: float
    epoch_time_s: float  # this epoch's training steps
    training_time_s: float  # DAWNBench: preprocessing and training so far
    eval_time_s: float = 0.0  # this epoch's evaluation (0 in a record from before it was kept)
    val_loss: float | None = None
    val_acc: float | None = None
    val_top5_acc: float | None = None

    def as_dict(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, values: dict) -> EpochRecord:
        """The record `as_dict` wrote (a checkpoint's, results.json's); other keys ignored."""
        names = {field.name for field in dataclasses.fields(cls)}
        return cls(
            **{k: v for k, v in values.items() if k in names} | {"epoch": int(values["epoch"])}
        )

    def nonfinite(self) -> list[str]:
        """The names of the figures that are NaN or infinite."""
        return [k for k, v in self.as_dict().items() if not math.isfinite(v)]


class EpochEnd(NamedTuple):
    """What the epoch loop's callbacks get at the end of an epoch, besides the record's own
    figures: `logs[EpochEnd.KEY]` (`of_logs`)."""

    record: EpochRecord
    confusion: np.ndarray  # int64 (classes, classes) of the test set, rows the true class
    grad_norms: np.ndarray  # float32 (steps, layer groups) of the epoch
    eval_time_s: float  # evaluation time of the run so far
    hooks_time_s: float  # time in callbacks so far
    # The run's state after the epoch, its arrays by name (weights, BatchNorm statistics,
    # optimizer, ...), copied to the host when called: the one copy of the truth, which the
    # Keras model's variables are not during training on JAX (they keep the weights the
    # run started from; on TensorFlow they are the state).
    arrays: Callable[[], dict[str, np.ndarray]]
    # The Keras model, its variables set to the epoch's state when called: for a callback
    # that needs a model (to save or evaluate it), at the cost of a copy of the weights.
    model: Callable[[], object]

    KEY = "epoch_end"

    def logs(self) -> dict:
        """The Keras logs of the epoch: the record's figures, and this under `KEY`."""
        return self.record.as_dict() | {self.KEY: self}

    @classmethod
    def of_logs(cls, logs: dict) -> EpochEnd:
        return logs[cls.KEY]


class Progress(NamedTuple):
    """How far a run got: what a resumed run starts from (`tf_resnet9.outputs.checkpoints`)."""

    records: tuple[EpochRecord, ...]  # one per epoch done
    eval_time_s: float  # evaluation time so far
    hooks_time_s: float  # time in callbacks so far

    @property
    def training_time_s(self) -> float:
        return self.records[-1].training_time_s if self.records else 0.0
