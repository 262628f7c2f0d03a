"""Checkpoints after every epoch, and where a run resumes from.

A checkpoint is one .npz file, `RUN_FOLDER/checkpoints/epoch-NNNN.npz`, written atomically
(a temporary file renamed into place): every array of the run's state by name (the model's
weights and BatchNorm statistics, the optimizer's velocities and step count, the compiled
steps' own, such as a moving average: `tf_resnet9.training.steps.CompiledSteps.arrays`), and,
as JSON, the epoch, the records of the epochs so far, their times, the epoch's confusion
matrix, the compile time and the config. The random draws of an epoch follow from the seed
and the epoch's number (`tf_resnet9.data.inputs.epoch_seed`), and the learning rate from the
records (`tf_resnet9.training.schedules.LearningRate.replay`), so nothing else is needed for
a resumed run to continue exactly as an uninterrupted one, nor for a run whose training
finished to write its results again. (No Keras here.)
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import zipfile
from collections.abc import Mapping, Sequence

import numpy as np

from tf_resnet9.config import TrainConfig
from tf_resnet9.config.values import format_value
from tf_resnet9.errors import CheckpointError
from tf_resnet9.outputs.files import write_atomic
from tf_resnet9.outputs.run_folder import checkpoint_folder
from tf_resnet9.training.records import EpochRecord, Progress

_FILE = "epoch-{epoch:04d}.npz"
_PATTERN = "epoch-[0-9]*.npz"
# Settings that may differ between a run and its resumption: they change nothing computed
# (the devices a batch is split over, and seeds trained together or one after another,
# change only the order of the sums; a set streamed gives the batches a placed one does).
_FREE_TO_CHANGE = {
    "keep_checkpoints",
    "tensorboard",
    "grad_log_every",
    "devices",
    "seeds_together",
    "max_device_memory",
}


def path_of(run_folder: str | os.PathLike, epoch: int) -> str:
    """Where the checkpoint of `epoch` of the run in `run_folder` is."""
    return os.path.join(checkpoint_folder(run_folder), _FILE.format(epoch=epoch))


def paths(run_folder: str | os.PathLike) -> list[str]:
    """The checkpoints of the run in `run_folder`, oldest first."""
    return sorted(glob.glob(os.path.join(glob.escape(checkpoint_folder(run_folder)), _PATTERN)))


def epoch_of(path: str) -> int:
    """The epoch a checkpoint's file name says."""
    return int(os.path.basename(path).removeprefix("epoch-").removesuffix(".npz"))


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    path: str
    epoch: int
    arrays: dict[str, np.ndarray]
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


def save(run_folder, arrays: Mapping[str, np.ndarray], meta: dict, keep: int) -> str:
    """Writes the checkpoint of epoch `meta["epoch"]` (the named `arrays` and `meta`); keeps
    the latest `keep`.

    Raises:
        OutputError: it could not be written (the earlier checkpoints stay).
    """
    path = path_of(run_folder, meta["epoch"])
    stored = dict(arrays) | {"meta.json": np.array(json.dumps(meta, allow_nan=False))}
    size = sum(np.asarray(value).nbytes for value in stored.values())
    write_atomic(path, lambda f: np.savez(f, **stored), needed=size)
    for old in paths(run_folder)[:-keep]:
        os.remove(old)
    return path


def load_latest(run_folder) -> Checkpoint:
    """The latest checkpoint in `run_folder`.

    Raises:
        CheckpointError: there is none, or it is truncated or corrupt.
    """
    found = paths(run_folder)
    if not found:
        raise CheckpointError(
            f"{checkpoint_folder(run_folder)}: no checkpoint to resume from (a run writes one "
            "after every epoch); start the run without --resume."
        )
    return load(found[-1])


def load(path: str) -> Checkpoint:
    try:
        with np.load(path, allow_pickle=False) as stored:
            arrays = {name: stored[name] for name in stored.files}
        meta = json.loads(str(arrays.pop("meta.json")))
        epoch = int(meta["epoch"])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise CheckpointError(
            f"{path}: truncated or corrupt checkpoint ({type(e).__name__}: {e}). Remove it "
            "to resume from the one before, or start the run afresh without --resume."
        ) from None
    return Checkpoint(path, epoch, arrays, meta)


def common_epoch(run_folders: Sequence[str]) -> int | None:
    """The latest epoch all of `run_folders` have a checkpoint of: where runs trained
    together resume together (a run stopped while writing an epoch's checkpoints has that
    epoch for some of them only). None where none has a checkpoint.

    Raises:
        CheckpointError: some have checkpoints and others none, or they share no epoch.
    """
    epochs = [{epoch_of(path) for path in paths(folder)} for folder in run_folders]
    if not any(epochs):
        return None
    common = set.intersection(*epochs)
    if not common:
        listed = ", ".join(os.fspath(folder) for folder in run_folders)
        raise CheckpointError(
            f"the checkpoints of {listed} share no epoch to resume from together; resume "
            "with --noseeds_together, or start afresh without --resume."
        )
    return max(common)


def resume_point(run_folders: Sequence[str | None]) -> list[Checkpoint] | None:
    """Each run's checkpoint of the `common_epoch` of `run_folders`; None where none has a
    checkpoint (or there are no folders): they start from the beginning.

    Raises:
        CheckpointError: as `common_epoch`, or a checkpoint is truncated or corrupt.
    """
    epoch = None if run_folders[0] is None else common_epoch(run_folders)
    if epoch is None:
        return None
    return [load(path_of(folder, epoch)) for folder in run_folders]


def _as_flags(names: Sequence[str], saved: Mapping, here: Mapping) -> str:
    """The flags that give `names` their `saved` values (one left unset there: without it),
    and what was given here: what to type, not a list to decode."""
    value = {n: tuple(v) if isinstance(v, list) else v for n, v in saved.items()}  # JSON lists
    given = [f"--{n}={format_value(value[n])}" for n in names if value.get(n) is not None]
    unset = [f"--{n}" for n in names if value.get(n) is None]
    parts = [" ".join(given)] if given else []
    parts += [f"without {' '.join(unset)}"] if unset else []
    here_text = ", ".join(f"{n}={format_value(here[n])}" for n in names)
    return f"{', '.join(parts)} (given here: {here_text})"


def check_resumable(
    checkpoint: Checkpoint, config: TrainConfig, shapes: Mapping[str, tuple]
) -> None:
    """Raises CheckpointError where `checkpoint` is not of this run: written with other
    settings than `config`, or its arrays are not the names and `shapes` of this run's
    state. A setting that a checkpoint of an earlier version lacks had its default."""
    defaults = {field.name: field.default for field in dataclasses.fields(TrainConfig)}
    saved = json.loads(json.dumps(defaults)) | checkpoint.meta["config"]
    current = json.loads(json.dumps(dataclasses.asdict(config)))  # tuples as JSON has them
    differ = sorted(
        name
        for name, value in current.items()
        if name not in _FREE_TO_CHANGE and saved.get(name) != value
    )
    if differ:
        raise CheckpointError(
            f"{checkpoint.path}: written by a run with other settings; resume with that "
            f"run's: {_as_flags(differ, saved, dataclasses.asdict(config))}, or start afresh "
            "in another --workdir."
        )
    if shapes.keys() != checkpoint.arrays.keys() or any(
        tuple(shape) != checkpoint.arrays[name].shape for name, shape in shapes.items()
    ):
        raise CheckpointError(f"{checkpoint.path}: its variables do not fit this model.")
