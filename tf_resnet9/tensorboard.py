"""TensorBoard logging for the epoch loop (`tf_resnet9.loop`), on either backend.

The event files come from `backends.summary_writer`: tf.summary on TensorFlow, tensorboardX
on JAX. What is logged, by tag:

    loss/train, loss/test, accuracy/train, accuracy/test, learning_rate
                          one point per epoch, at step = the epoch (1-based)
    grad_norm/<group>     the gradient norm of a layer group at every global training step
                          that is a multiple of `grad_log_every`
    confusion_matrix      the test set's confusion matrix as a picture, per epoch
    weights/<path>        a histogram of every trainable variable, at the last epoch
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np

from tf_resnet9 import backends
from tf_resnet9.report import confusion_image

# Scalar tag -> the epoch record's field it logs.
EPOCH_SCALARS = {
    "loss/train": "train_loss",
    "loss/test": "test_loss",
    "accuracy/train": "train_acc",
    "accuracy/test": "test_acc",
    "learning_rate": "lr",
}


class TensorBoard(keras.callbacks.Callback):
    """Writes each epoch's metrics, gradient norms and confusion matrix to TensorBoard, and
    the weights' histograms at the end of training.

    Unlike `keras.callbacks.TensorBoard` it needs no `Model.fit`: it reads the loop's logs.

    Args:
        logdir: Folder for the event files (created if missing).
        class_names: The name of each class, in the order of the confusion matrix's rows.
        grad_groups: The layer groups, in the order of the columns of the logs'
            "grad_norms" (`CompiledSteps.grad_groups`).
        grad_log_every: Log the gradient norms of every this many training steps (>= 1).
        steps_per_epoch: Training steps per epoch (the rows of "grad_norms").
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
        self._last_epoch = None  # 1-based

    def on_train_begin(self, logs=None):
        self._last_epoch = None

    def on_epoch_end(self, epoch, logs=None):
        if self._writer is None:  # opened with the first epoch's logs: a run that fails in
            self._writer = backends.summary_writer(self.logdir)  # its first leaves no folder
        step = epoch + 1  # TensorBoard's x axis counts epochs from 1, like the records
        for tag, field in EPOCH_SCALARS.items():
            self._writer.scalar(tag, logs[field], step)
        self._log_grad_norms(epoch, np.asarray(logs["grad_norms"]))
        picture = confusion_image(logs["confusion_matrix"], self.class_names)
        self._writer.image("confusion_matrix", picture, step)
        self._writer.flush()  # readable while the run goes on
        self._last_epoch = step

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
                self._writer.scalar(f"grad_norm/{group}", float(norm), global_step)

    def on_train_end(self, logs=None):
        if self._writer is None:
            return
        if self._last_epoch is not None:
            for variable in self.model.trainable_variables:
                values = keras.ops.convert_to_numpy(variable)
                self._writer.histogram(f"weights/{variable.path}", values, self._last_epoch)
        self._writer.close()
        self._writer = None
