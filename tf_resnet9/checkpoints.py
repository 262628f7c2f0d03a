"""Checkpoints after every epoch, and resuming from the latest.

A checkpoint is one .npz file, `WORKDIR/checkpoints/epoch-NNNN.npz`, written atomically
(a temporary file renamed into place): every variable of the model (weights and BatchNorm
statistics) and of the optimizer (velocities, the step count), and, as JSON, the epoch,
the records of the epochs so far, their times, and the config. The random draws of an
epoch follow from the seed and the epoch's number (`tf_resnet9.inputs.epoch_seed`), so
nothing else is needed for a resumed run to continue exactly as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import json
import os
import zipfile

import keras
import numpy as np

from tf_resnet9.config import TrainConfig
from tf_resnet9.loop import EXTRA_LOGS, Progress
from tf_resnet9.results import write_atomic
from tf_resnet9.workdir import checkpoint_folder, checkpoint_paths

# Settings that may differ between a run and its resumption: they change nothing computed.
_FREE_TO_CHANGE = {"keep_checkpoints", "tensorboard", "grad_log_every"}


class CheckpointError(Exception):
    """A checkpoint is missing, unreadable, or does not fit the run; the message names it."""


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    path: str
    epoch: int
    values: dict[str, np.ndarray]
    meta: dict


def _variables(
    model: keras.Model, optimizer: keras.optimizers.Optimizer, extra=()
) -> dict[str, object]:
    # Optimizer variables are keyed by position too: their paths repeat across optimizers.
    named = {f"model/{v.path}": v for v in model.variables}
    named |= {f"optimizer/{i}/{v.path}": v for i, v in enumerate(optimizer.variables)}
    named |= {f"steps/{i}/{v.path}": v for i, v in enumerate(extra)}
    return named


def save(workdir, model, optimizer, meta: dict, keep: int, extra=()) -> str:
    """Writes the checkpoint of epoch `meta["epoch"]`; keeps the latest `keep`. `extra`: the
    compiled steps' own variables (`CompiledSteps.ema_variables`)."""
    directory = checkpoint_folder(workdir)
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"epoch-{meta['epoch']:04d}.npz")
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


def restore(checkpoint: Checkpoint, config: TrainConfig, model, optimizer, extra=()) -> Progress:
    """Puts the checkpoint's values into the model and optimizer; returns where to go on.

    Raises:
        CheckpointError: it was written by a run with other settings, or another model.
    """
    saved = checkpoint.meta["config"]
    current = json.loads(json.dumps(dataclasses.asdict(config)))  # tuples as JSON has them
    differ = sorted(
        name
        for name, value in current.items()
        if name not in _FREE_TO_CHANGE and saved.get(name) != value
    )
    if differ:
        listed = ", ".join(
            f"{n}={saved.get(n)!r} there, {getattr(config, n)!r} here" for n in differ
        )
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
    meta = checkpoint.meta
    return Progress(meta["records"], meta["eval_time_s"], meta["hooks_time_s"])


class Checkpointer(keras.callbacks.Callback):
    """Saves a checkpoint at the end of every epoch (`tf_resnet9.loop` callbacks).

    Args:
        workdir: The run's folder.
        config: The run's settings (stored, and compared on resuming).
        optimizer: The model's optimizer (the loop trains without `Model.compile`).
        keep: How many of the latest checkpoints to keep.
        progress: The records and times of a resumed run's earlier epochs.
        extra: The compiled steps' own variables (`CompiledSteps.ema_variables`).
    """

    def __init__(self, workdir, config: TrainConfig, optimizer, keep: int, progress=None, extra=()):
        super().__init__()
        self.workdir, self.config, self.optimizer, self.keep = workdir, config, optimizer, keep
        self.extra = extra
        self.records = list((progress or Progress([], 0.0, 0.0)).records)

    def on_epoch_end(self, epoch, logs=None):
        record = {k: v for k, v in logs.items() if k not in EXTRA_LOGS}
        record["epoch"] = epoch + 1  # Keras hands every number over as a float
        self.records.append(record)
        meta = {
            "epoch": epoch + 1,
            "records": self.records,
            "eval_time_s": logs["eval_time_s"],
            "hooks_time_s": logs["hooks_time_s"],
            "config": dataclasses.asdict(self.config),
        }
        save(self.workdir, self.model, self.optimizer, meta, self.keep, self.extra)
