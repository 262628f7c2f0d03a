"""The epoch loop's hook that writes a checkpoint after every epoch
(`tf_resnet9.outputs.checkpoints` says what one holds)."""

from __future__ import annotations

import dataclasses

import keras

from tf_resnet9.config import TrainConfig
from tf_resnet9.outputs import checkpoints
from tf_resnet9.training.records import EpochEnd, Progress


class Checkpointer(keras.callbacks.Callback):
    """Saves a checkpoint at the end of every epoch, from the state the epoch ended with
    (`EpochEnd.arrays`).

    Args:
        run_folder: The run's folder.
        config: The run's settings (stored, and compared on resuming).
        keep: How many of the latest checkpoints to keep.
        compile_time_s: The run's compile time (stored for its results).
        progress: The records and times of a resumed run's earlier epochs.
    """

    def __init__(
        self,
        run_folder,
        config: TrainConfig,
        keep: int,
        compile_time_s: float,
        progress: Progress | None = None,
    ):
        super().__init__()
        self.run_folder, self.keep = run_folder, keep
        self.config = dataclasses.asdict(config)
        self.compile_time_s = compile_time_s
        self.records = [r.as_dict() for r in (progress.records if progress else ())]

    def on_epoch_end(self, epoch, logs=None):
        end = EpochEnd.of_logs(logs)
        self.records.append(end.record.as_dict())
        meta = {
            "epoch": end.record.epoch,
            "records": self.records,
            "eval_time_s": end.eval_time_s,
            "hooks_time_s": end.hooks_time_s,
            "confusion_matrix": end.confusion.tolist(),
            "compile_time_s": self.compile_time_s,
            "config": self.config,
        }
        checkpoints.save(self.run_folder, end.arrays(), meta, self.keep)
