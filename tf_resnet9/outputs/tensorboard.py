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
"""

from __future__ import annotations

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


def summary_writer(logdir: str):
    """A tensorboardX `SummaryWriter` for `logdir` (created if missing), in an event file
    of its own.

    tensorboardX names a file by the second it was opened and the host, and a second writer
    in the same folder within that second (the weight histograms right after the last
    epoch's, a run resumed at once) would truncate the first writer's file: a random
    suffix keeps them apart. TensorBoard reads every file of the folder."""
    try:
        from tensorboardX import SummaryWriter
    except ImportError as error:
        raise MissingPackage(
            f"TensorBoard logs need the {PACKAGE} package: pip install {PACKAGE} (or pass "
            "--notensorboard)."
        ) from error
    return SummaryWriter(logdir, filename_suffix=f".{uuid.uuid4().hex[:8]}")


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
    """

    def __init__(
        self,
        logdir,
        class_names: Sequence[str],
        grad_groups: Sequence[str],
        grad_log_every: int,
        steps_per_epoch: int,
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
        self._writer = None

    def on_epoch_end(self, epoch, logs=None):
        if self._writer is None:  # opened with the first epoch's logs: a run that fails in
            self._writer = summary_writer(self.logdir)  # its first leaves no folder
        end = EpochEnd.of_logs(logs)
        step = end.record.epoch  # TensorBoard's x axis counts epochs from 1, like the records
        for tag, value in epoch_scalars(end.record).items():
            self._writer.add_scalar(tag, value, global_step=step)
        self._log_grad_norms(epoch, np.asarray(end.grad_norms))
        picture = confusion_image(end.confusion, self.class_names)
        self._writer.add_image("confusion_matrix", picture, global_step=step, dataformats="HWC")
        self._writer.flush()  # readable while the run goes on

    def _log_grad_norms(self, epoch: int, norms: np.ndarray) -> None:
        """Writes the rows of `norms` (steps, groups) whose global step is due."""
        expected = (self.steps_per_epoch, len(self.grad_groups))
        if norms.shape != expected:
            raise ValueError(
                f"grad_norms has shape {norms.shape}; steps_per_epoch={self.steps_per_epoch} "
                f"and grad_groups={self.grad_groups} make it {expected}."
            )
        first_step = epoch * self.steps_per_epoch + 1  # global step of row 0
        # Global steps in this epoch that are multiples of grad_log_every, as row indices.
        first_due = -(-first_step // self.grad_log_every) * self.grad_log_every
        for global_step in range(first_due, first_step + len(norms), self.grad_log_every):
            row = norms[global_step - first_step]
            for group, norm in zip(self.grad_groups, row):
                self._writer.add_scalar(f"grad_norm/{group}", float(norm), global_step)

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def epoch_scalars(record: EpochRecord) -> dict[str, float]:
    """Tag -> value of the epoch's scalars (`EPOCH_SCALARS`, the figures the record has)."""
    figures = record.as_dict()
    return {tag: figures[name] for tag, name in EPOCH_SCALARS.items() if name in figures}


def write_weight_histograms(logdir, model: keras.Model, epoch: int) -> None:
    """A histogram of every trainable variable of `model` at step `epoch` (the last)."""
    writer = summary_writer(str(logdir))
    try:
        for variable in model.trainable_variables:
            values = keras.ops.convert_to_numpy(variable)
            writer.add_histogram(f"weights/{variable.path}", values, global_step=epoch)
    finally:
        writer.close()
