"""TensorBoard logging for the epoch loop (`tf_resnet9.training.loop`), on either backend.

The event files are tensorboardX's (no TensorFlow needed, the same files tf.summary
writes). What is logged, by tag:

    loss/train, loss/test, accuracy/train, accuracy/test, learning_rate
                          one point per epoch, at step = the epoch (1-based)
    loss/val, accuracy/val
                          the same, with a validation set
    grad_norm/<group>     the gradient norm of a layer group at every global training step
                          that is a multiple of `grad_log_every`
    confusion_matrix      the test set's confusion matrix as a picture, per epoch
    weights/<path>        a histogram of every trainable variable, at the end of the run
                          (`write_weight_histograms`)

TensorBoard is an extra: a write that fails mid-run (a full disk) stops the logging for the
rest of the run with one warning line, and training goes on; a confusion picture that
cannot be drawn is left out, with one warning.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Sequence

import keras
import numpy as np

from tf_resnet9.errors import MissingPackage
from tf_resnet9.outputs.report import confusion_image
from tf_resnet9.training.records import EpochEnd, EpochRecord

PACKAGE = "tensorboardX"  # what the writer needs

# Scalar tag -> the epoch record's figure it logs (validation ones where there are some).
EPOCH_SCALARS = {
    "loss/train": "train_loss",
    "loss/test": "test_loss",
    "loss/val": "val_loss",
    "accuracy/train": "train_acc",
    "accuracy/test": "test_acc",
    "accuracy/val": "val_acc",
    "learning_rate": "lr",
}


class EventFile:
    """A TensorBoard event file of its own in `logdir` (created if missing), written as the
    calls come, from tensorboardX's own summaries and record writer.

    tensorboardX's `SummaryWriter` writes from a thread of its own: on a full disk that
    thread dies, and once its queue of 10 events is full the next `add_scalar` blocks for
    ever (measured with tensorboardX 2.6.5: a write failing from the 4th event blocked the
    13th). Written here, a failed write raises in the caller instead.

    tensorboardX names a file by the second it was opened and the host, and a second file in
    the same folder within that second (the weight histograms right after the last epoch's,
    a run resumed at once) would truncate the first: a random suffix keeps them apart.
    TensorBoard reads every file of the folder.

    Raises:
        MissingPackage: tensorboardX is not installed.
    """

    def __init__(self, logdir: str):
        try:
            from tensorboardX import summary
            from tensorboardX.event_file_writer import EventsWriter
            from tensorboardX.proto import event_pb2
        except ImportError as error:
            raise MissingPackage(
                f"TensorBoard logs need the {PACKAGE} package: pip install {PACKAGE} (or pass "
                "--notensorboard)."
            ) from error
        self._summary, self._event = summary, event_pb2.Event
        os.makedirs(logdir, exist_ok=True)
        suffix = f".{uuid.uuid4().hex[:8]}"
        self._writer = EventsWriter(os.path.join(logdir, "events"), suffix)

    def _add(self, summary, step: int) -> None:
        self._writer.write_event(self._event(summary=summary, step=step, wall_time=time.time()))

    def scalar(self, tag: str, value: float, step: int) -> None:
        self._add(self._summary.scalar(tag, float(value)), step)

    def image(self, tag: str, picture: np.ndarray, step: int) -> None:
        """`picture`: uint8 (height, width, channels)."""
        self._add(self._summary.image(tag, picture, dataformats="HWC"), step)

    def histogram(self, tag: str, values: np.ndarray, step: int) -> None:
        self._add(self._summary.histogram(tag, values, "auto"), step)

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


class TensorBoard(keras.callbacks.Callback):
    """Writes each epoch's metrics, gradient norms and confusion matrix to TensorBoard.

    Unlike `keras.callbacks.TensorBoard` it needs no `Model.fit`: it reads the loop's logs.

    Args:
        logdir: Folder for the event files (created if missing).
        class_names: The name of each class, in the order of the confusion matrix's rows.
        grad_groups: The layer groups, in the order of the columns of the epoch's gradient
            norms (`CompiledSteps.grad_groups`).
        grad_log_every: Log the gradient norms of every this many training steps (>= 1).
        steps_per_epoch: Training steps per epoch (the rows of the gradient norms).
        out: Where the warnings go (default stderr).
    """

    def __init__(
        self,
        logdir,
        class_names: Sequence[str],
        grad_groups: Sequence[str],
        grad_log_every: int,
        steps_per_epoch: int,
        out=None,
    ):
        super().__init__()
        for name, value in (
            ("grad_log_every", grad_log_every),
            ("steps_per_epoch", steps_per_epoch),
        ):
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name}={value!r} is invalid: it must be an integer >= 1.")
        if not grad_groups:
            raise ValueError(f"grad_groups={grad_groups!r} is empty: name the layer groups.")
        self.logdir = str(logdir)
        self.class_names = list(class_names)
        self.grad_groups = tuple(grad_groups)
        self.grad_log_every = grad_log_every
        self.steps_per_epoch = steps_per_epoch
        self.out = out
        self._writer = None
        self._stopped = False  # a write failed: no more logging this run
        self._pictures = True  # the confusion picture can be drawn

    def _warn(self, text: str) -> None:
        print(f"warning: {text}", file=self.out or sys.stderr, flush=True)

    def on_epoch_end(self, epoch, logs=None):
        if self._stopped:
            return
        end = EpochEnd.of_logs(logs)
        self._check_grad_norms(np.asarray(end.grad_norms))
        try:
            if self._writer is None:  # opened with the first epoch's logs: a run that fails
                self._writer = EventFile(self.logdir)  # in its first leaves no folder
            self._log_epoch(epoch, end)
            self._writer.flush()  # readable while the run goes on
        except OSError as error:
            self._stopped = True
            self._close_quietly()
            self._warn(
                f"TensorBoard logging stopped: {self.logdir} could not be written "
                f"({error.strerror or error}); training goes on."
            )

    def _log_epoch(self, epoch: int, end: EpochEnd) -> None:
        step = end.record.epoch  # TensorBoard's x axis counts epochs from 1, like the records
        for tag, value in epoch_scalars(end.record).items():
            self._writer.scalar(tag, value, step)
        self._log_grad_norms(epoch, np.asarray(end.grad_norms))
        if not self._pictures:
            return
        try:
            picture = confusion_image(end.confusion, self.class_names)
        except Exception as error:  # noqa: BLE001 - an optional picture: the run goes on
            self._pictures = False
            self._warn(
                f"TensorBoard's confusion matrices left out: {type(error).__name__}: {error}"
            )
            return
        self._writer.image("confusion_matrix", picture, step)

    def _close_quietly(self) -> None:
        if self._writer is not None:
            try:
                self._writer.close()
            except OSError:
                pass  # the write that failed fails again: the warning says it
            self._writer = None

    def _check_grad_norms(self, norms: np.ndarray) -> None:
        # A run's last epoch may stop part-way: fewer rows, never more.
        rows_fit = norms.ndim == 2 and 1 <= norms.shape[0] <= self.steps_per_epoch
        if not rows_fit or norms.shape[1] != len(self.grad_groups):
            raise ValueError(
                f"grad_norms has shape {norms.shape}; steps_per_epoch={self.steps_per_epoch} "
                f"and grad_groups={self.grad_groups} make it (up to {self.steps_per_epoch}, "
                f"{len(self.grad_groups)})."
            )

    def _log_grad_norms(self, epoch: int, norms: np.ndarray) -> None:
        """Writes the rows of `norms` (steps, groups) whose global step is due."""
        first_step = epoch * self.steps_per_epoch + 1  # global step of row 0
        # Global steps in this epoch that are multiples of grad_log_every, as row indices.
        first_due = -(-first_step // self.grad_log_every) * self.grad_log_every
        for global_step in range(first_due, first_step + len(norms), self.grad_log_every):
            row = norms[global_step - first_step]
            for group, norm in zip(self.grad_groups, row):
                self._writer.scalar(f"grad_norm/{group}", float(norm), global_step)

    def on_train_end(self, logs=None):
        if self._writer is not None:
            try:
                self._writer.close()
            except OSError as error:
                self._warn(f"TensorBoard's last events not written: {error.strerror or error}")
            self._writer = None


def epoch_scalars(record: EpochRecord) -> dict[str, float]:
    """Tag -> value of the epoch's scalars (`EPOCH_SCALARS`, the figures the record has)."""
    figures = record.as_dict()
    return {tag: figures[name] for tag, name in EPOCH_SCALARS.items() if name in figures}


def write_weight_histograms(logdir, model: keras.Model, epoch: int) -> None:
    """A histogram of every trainable variable of `model` at step `epoch` (the last)."""
    writer = EventFile(str(logdir))
    try:
        for variable in model.trainable_variables:
            values = keras.ops.convert_to_numpy(variable)
            writer.histogram(f"weights/{variable.path}", values, epoch)
    finally:
        writer.close()
