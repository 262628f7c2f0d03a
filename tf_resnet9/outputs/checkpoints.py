"""Checkpoints after every epoch, and resuming from the latest.

A checkpoint is one .npz file, `WORKDIR/checkpoints/epoch-NNNN.npz`, written atomically
(a temporary file renamed into place): every variable of the model (weights and BatchNorm
statistics), of the optimizer (velocities, the step count) and of the compiled steps (the
moving average), and, as JSON, the epoch, the records of the epochs so far, their times,
the epoch's confusion matrix, the compile time and the config. The random draws of an
epoch follow from the seed and the epoch's number (`tf_resnet9.data.inputs.epoch_seed`),
so nothing else is needed for a resumed run to continue exactly as an uninterrupted one,
nor for a run whose training finished to write its results again.
"""

from __future__ import annotations

import dataclasses
import json
import os
import zipfile

import keras
import numpy as np

from tf_resnet9.errors import CheckpointError
from tf_resnet9.outputs.workdir import checkpoint_folder, checkpoint_paths, write_atomic
from tf_resnet9.training.records import EpochEnd, EpochRecord, Progress

# Settings that may differ between a run and its resumption: they change nothing computed
# (the devices a batch is split over change only the order of the sums).
_FREE_TO_CHANGE = {"keep_checkpoints", "tensorboard", "grad_log_every", "devices"}


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    path: str
    epoch: int
    values: dict[str, np.ndarray]
    meta: dict

    @property
    def progress(self) -> Progress:
        records = tuple(EpochRecord.from_dict(r) for r in self.meta["records"])
        return Progress(records, self.meta["eval_time_s"], self.meta["hooks_time_s"])

    @property
    def confusion_matrix(self) -> np.ndarray:
        """The test set's confusion matrix after the checkpoint's epoch."""
        return np.asarray(self.meta["confusion_matrix"], np.int64)

    @property
    def compile_time_s(self) -> float:
        return self.meta["compile_time_s"]


def _variables(model: keras.Model, optimizer, extra=()) -> dict[str, object]:
    # Optimizer variables are keyed by position too: their paths repeat across optimizers.
    named = {f"model/{v.path}": v for v in model.variables}
    named |= {f"optimizer/{i}/{v.path}": v for i, v in enumerate(optimizer.variables)}
    named |= {f"steps/{i}/{v.path}": v for i, v in enumerate(extra)}
    return named


def save(workdir, model, optimizer, meta: dict, keep: int, extra=()) -> str:
    """Writes the checkpoint of epoch `meta["epoch"]`; keeps the latest `keep`. `extra`: the
    compiled steps' own variables (`CompiledSteps.ema_variables`)."""
    path = os.path.join(checkpoint_folder(workdir), f"epoch-{meta['epoch']:04d}.npz")
    arrays = {
        name: keras.ops.convert_to_numpy(v)
        for name, v in _variables(model, optimizer, extra).items()
    }
    arrays["meta.json"] = np.array(json.dumps(meta, allow_nan=False))
    write_atomic(path, lambda f: np.savez(f, **arrays))
    for old in checkpoint_paths(workdir)[:-keep]:
        os.remove(old)
    return path


def load_latest(workdir) -> Checkpoint:
    """The latest checkpoint in `workdir`.

    Raises:
        CheckpointError: there is none, or it is truncated or corrupt.
    """
    paths = checkpoint_paths(workdir)
    if not paths:
        raise CheckpointError(
            f"{checkpoint_folder(workdir)}: no checkpoint to resume from (a run writes one "
            "after every epoch); start the run without --resume."
        )
    return load(paths[-1])


def load(path: str) -> Checkpoint:
    try:
        with np.load(path, allow_pickle=False) as stored:
            values = {name: stored[name] for name in stored.files}
        meta = json.loads(str(values.pop("meta.json")))
        epoch = int(meta["epoch"])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise CheckpointError(
            f"{path}: truncated or corrupt checkpoint ({type(e).__name__}: {e}). Remove it "
            "to resume from the one before, or start the run afresh without --resume."
        ) from None
    return Checkpoint(path, epoch, values, meta)


def restore(checkpoint: Checkpoint, config: dict, model, optimizer, extra=()) -> Progress:
    """Puts the checkpoint's values into the model and optimizer; returns where to go on.

    Args:
        checkpoint: What `load` read.
        config: The run's settings (`dataclasses.asdict` of its `TrainConfig`).
        model, optimizer, extra: What the values go into (see `save`).

    Raises:
        CheckpointError: it was written by a run with other settings, or another model.
    """
    saved = checkpoint.meta["config"]
    current = json.loads(json.dumps(config))  # tuples as JSON has them
    differ = sorted(
        name
        for name, value in current.items()
        if name not in _FREE_TO_CHANGE and saved.get(name) != value
    )
    if differ:
        listed = ", ".join(f"{n}={saved.get(n)!r} there, {config[n]!r} here" for n in differ)
        raise CheckpointError(
            f"{checkpoint.path}: written by a run with other settings ({listed}); resume "
            "with the same settings, or start afresh in another --workdir."
        )
    variables = _variables(model, optimizer, extra)
    if variables.keys() != checkpoint.values.keys() or any(
        tuple(v.shape) != checkpoint.values[name].shape for name, v in variables.items()
    ):
        raise CheckpointError(f"{checkpoint.path}: its variables do not fit this model.")
    for name, variable in variables.items():
        variable.assign(checkpoint.values[name])
    return checkpoint.progress


class Checkpointer(keras.callbacks.Callback):
    """Saves a checkpoint at the end of every epoch (a `tf_resnet9.training.loop` callback).

    Args:
        workdir: The run's folder.
        config: The run's settings (`dataclasses.asdict` of its `TrainConfig`; stored, and
            compared on resuming).
        optimizer: The model's optimizer (the loop trains without `Model.compile`).
        keep: How many of the latest checkpoints to keep.
        compile_time_s: The run's compile time (stored for its results).
        progress: The records and times of a resumed run's earlier epochs.
        extra: The compiled steps' own variables (`CompiledSteps.ema_variables`).
    """

    def __init__(
        self,
        workdir,
        config: dict,
        optimizer,
        keep: int,
        compile_time_s: float,
        progress: Progress | None = None,
        extra=(),
    ):
        super().__init__()
        self.workdir, self.config, self.optimizer, self.keep = workdir, config, optimizer, keep
        self.compile_time_s = compile_time_s
        self.extra = extra
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
        save(self.workdir, self.model, self.optimizer, meta, self.keep, self.extra)
