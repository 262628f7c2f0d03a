"""Keras callbacks for the epoch loop (`tf_resnet9.training.loop`): what a run shows as it
goes."""

from __future__ import annotations

import sys
import time

import keras

from tf_resnet9.training.records import EpochEnd

TABLE_HEADER = "epoch        lr  train loss  train acc  test loss  test acc  epoch s  total s"
VALIDATION_COLUMNS = "  val loss   val acc"  # after "train acc", with a validation set


class ProgressTable(keras.callbacks.Callback):
    """Prints a header, then a row per epoch: the lr of its last step, train (validation)
    and test loss and accuracy, the epoch's time and the training time so far.

    Args:
        out: Text stream (default: stdout at the time of printing).
        validation: Show the validation set's columns.
    """

    def __init__(self, out=None, validation: bool = False):
        super().__init__()
        self.out = out
        self.validation = validation

    def _print(self, text: str) -> None:
        print(text, file=self.out or sys.stdout, flush=True)

    def on_train_begin(self, logs=None):
        header = TABLE_HEADER
        if self.validation:
            at = header.index("  test loss")
            header = header[:at] + VALIDATION_COLUMNS + header[at:]
        self._print(header)

    def on_epoch_end(self, epoch, logs=None):
        r = EpochEnd.of_logs(logs).record
        validation = f"  {r.val_loss:8.4f}  {r.val_acc:8.2%}" if self.validation else ""
        # lr to 3 significant digits: Adam's 1e-3 .. 1e-6 as well as SGD's 0.4
        self._print(
            f"{r.epoch:5d}  {r.lr:8.3g}  {r.train_loss:10.4f}  {r.train_acc:9.2%}{validation}"
            f"  {r.test_loss:9.4f}  {r.test_acc:8.2%}  {r.epoch_time_s:7.1f}  "
            f"{r.training_time_s:7.1f}"
        )


class ProgressLine(keras.callbacks.Callback):
    """Within an epoch, on a terminal: one line, rewritten in place, with the steps done,
    images/s and the time left of the epoch. Off a terminal (a log, CI) it writes nothing.

    It reads no result of the device: the steps counted are those dispatched, which on a
    CPU is those done; on a GPU an epoch is one compiled call, so the line is the table's.

    Args:
        steps_per_epoch: Steps in an epoch.
        batch_size: Images per step.
        out: Text stream (default: stdout at the time of printing).
        every_s: Seconds between rewrites at most.
    """

    def __init__(self, steps_per_epoch: int, batch_size: int, out=None, every_s: float = 0.5):
        super().__init__()
        self.steps_per_epoch, self.batch_size = steps_per_epoch, batch_size
        self.out, self.every_s = out, every_s
        self._shown = False

    def _stream(self):
        return self.out or sys.stdout

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch, self.start, self.last = epoch + 1, time.perf_counter(), 0.0

    def on_train_batch_end(self, batch, logs=None):
        stream, now = self._stream(), time.perf_counter()
        if not stream.isatty() or now - self.last < self.every_s:
            return
        done, elapsed = int(logs["steps"]), now - self.start
        left = elapsed / done * (self.steps_per_epoch - done)
        stream.write(
            f"\repoch {self.epoch}: {done}/{self.steps_per_epoch} steps, "
            f"{done * self.batch_size / elapsed:,.0f} images/s, {left:.0f} s left   "
        )
        stream.flush()
        self.last, self._shown = now, True

    def on_epoch_end(self, epoch, logs=None):
        if self._shown:  # make room for the epoch's row
            self._stream().write("\r\033[K")
            self._shown = False
