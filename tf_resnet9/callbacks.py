"""Keras callbacks for the epoch loop (`tf_resnet9.loop`): what a run shows as it goes."""

from __future__ import annotations

import sys

import keras

TABLE_HEADER = "epoch        lr  train loss  train acc  test loss  test acc  epoch s  total s"


class ProgressTable(keras.callbacks.Callback):
    """Prints a header, then a row per epoch: the lr of its last step, train and test loss
    and accuracy, the epoch's time and the training time so far.

    Args:
        out: Text stream (default: stdout at the time of printing).
    """

    def __init__(self, out=None):
        super().__init__()
        self.out = out

    def _print(self, text: str) -> None:
        print(text, file=self.out or sys.stdout, flush=True)

    def on_train_begin(self, logs=None):
        self._print(TABLE_HEADER)

    def on_epoch_end(self, epoch, logs=None):
        self._print(
            f"{epoch + 1:5d}  {logs['lr']:8.4f}  {logs['train_loss']:10.4f}  "
            f"{logs['train_acc']:9.2%}  {logs['test_loss']:9.4f}  {logs['test_acc']:8.2%}  "
            f"{logs['epoch_time_s']:7.1f}  {logs['training_time_s']:7.1f}"
        )
