"""Keras callbacks of a training run: the DAWNBench clock, a divergence guard, the epoch log."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable

import keras


def wait_for_device(model: keras.Model) -> None:
    """Blocks until the work queued on the accelerator so far has finished.

    Steps are dispatched asynchronously; reading a value the last step wrote waits for it.
    """
    keras.ops.convert_to_numpy(model.optimizer.iterations)


class DawnbenchClock(keras.callbacks.Callback):
    """Training time by DAWNBench rules: from `start` on, minus the time spent evaluating.

    Args:
        start: `time.perf_counter()` when the clock started: after the raw arrays were in
            memory, before preprocessing (so preprocessing counts as training).
    """

    def __init__(self, start: float):
        super().__init__()
        self.start = start
        self.eval_time = 0.0
        self.epoch_times: list[float] = []
        self._epoch_start = self._eval_start = start

    def training_time(self) -> float:
        """Seconds of training so far, evaluation excluded."""
        return time.perf_counter() - self.start - self.eval_time

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.perf_counter()

    def on_test_begin(self, logs=None):
        wait_for_device(self.model)
        self._eval_start = time.perf_counter()
        self.epoch_times.append(self._eval_start - self._epoch_start)

    def on_test_end(self, logs=None):
        # The test metrics were just read back to the host, so evaluation has finished.
        self.eval_time += time.perf_counter() - self._eval_start


class NonFiniteLossGuard(keras.callbacks.Callback):
    """Stops training at the first step whose loss is NaN or infinite and records where.

    Keras reports the running mean of the epoch's loss, which turns non-finite at the first
    bad step and stays so. The check runs on Keras' callback thread (`async_safe`), so it
    does not make the training loop wait for every step.
    """

    async_safe = True

    def __init__(self, steps_per_epoch: int):
        super().__init__()
        self.steps_per_epoch = steps_per_epoch
        self.failure: str | None = None
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if self.failure is None and loss is not None and not math.isfinite(loss):
            step = self._epoch * self.steps_per_epoch + batch + 1
            self.failure = (
                f"the training loss became {loss} at epoch {self._epoch + 1}, "
                f"step {batch + 1} of {self.steps_per_epoch} (step {step} overall)"
            )
            self.model.stop_training = True


class EpochLog(keras.callbacks.Callback):
    """Collects one record per epoch and prints it as a table row.

    On a terminal it also shows the step count within the epoch, updated in place.

    Args:
        clock: The run's `DawnbenchClock` (must come before this callback in the list).
        lr_of_epoch: Learning rate of the last step of epoch e (1-based).
        steps_per_epoch: For the in-place progress display.
        out: Where to print.
    """

    async_safe = True
    HEADER = "epoch        lr  train loss  train acc  test loss  test acc  epoch s  total s"

    def __init__(
        self,
        clock: DawnbenchClock,
        lr_of_epoch: Callable[[int], float],
        steps_per_epoch: int,
        out=None,
    ):
        super().__init__()
        self.clock = clock
        self.lr_of_epoch = lr_of_epoch
        self.steps_per_epoch = steps_per_epoch
        self.out = out or sys.stdout
        self.records: list[dict] = []
        self._live = bool(getattr(self.out, "isatty", lambda: False)())
        self._epoch = 0

    def on_train_begin(self, logs=None):
        print(self.HEADER, file=self.out, flush=True)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self._live:
            print(
                f"\r{self._epoch + 1:5d}  step {batch + 1}/{self.steps_per_epoch}",
                end="",
                file=self.out,
                flush=True,
            )

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        record = {
            "epoch": epoch + 1,
            "lr": self.lr_of_epoch(epoch + 1),
            "train_loss": logs.get("loss"),
            "train_acc": logs.get("acc"),
            "test_loss": logs.get("val_loss"),
            "test_acc": logs.get("val_acc"),
            "epoch_time_s": self.clock.epoch_times[-1],
            "training_time_s": self.clock.training_time(),
        }
        self.records.append(record)
        overwrite_progress = "\r" if self._live else ""
        print(
            f"{overwrite_progress}{record['epoch']:5d}  {record['lr']:8.4f}  "
            f"{record['train_loss']:10.4f}  {record['train_acc']:9.2%}  "
            f"{record['test_loss']:9.4f}  {record['test_acc']:8.2%}  "
            f"{record['epoch_time_s']:7.1f}  {record['training_time_s']:7.1f}",
            file=self.out,
            flush=True,
        )
