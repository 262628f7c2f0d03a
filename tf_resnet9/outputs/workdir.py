"""The run's folder: what goes where in it, its default name, files written whole or not at
all, and the folder made before a run starts and removed again if a failed run left it
empty. (No Keras here: the command line's Ctrl-C handler uses it.)"""

from __future__ import annotations

import datetime
import glob
import json
import os
import tempfile
from collections.abc import Callable
from typing import BinaryIO

from tf_resnet9.errors import ConfigError

RESULTS_FILE = "results.json"
REPORT_FILE = "report.png"
TENSORBOARD_FOLDER = "tensorboard"
CHECKPOINT_FOLDER = "checkpoints"
# A run of several seeds (--seeds): a run folder per seed, and their summary beside them.
SEEDS_FILE = "seeds.json"
SEEDS_PLOT = "seeds.png"


def seed_folder(workdir: str | os.PathLike, seed: int) -> str:
    """Seed `seed`'s run folder in the workdir of a run of several seeds."""
    return os.path.join(os.fspath(workdir), f"seed-{seed}")


TEMPORARY_PREFIX = ".tmp-"  # what an interrupted write leaves behind


def model_file(model: str) -> str:
    """The trained model's file name: the network's name, e.g. resnet9.keras."""
    return f"{model}.keras"


def timestamp(now: datetime.datetime | None = None) -> str:
    """The local time as names of runs and result files use it, e.g. 20261202-031507 (no
    colons: they are not allowed in Windows file names)."""
    return (now or datetime.datetime.now()).strftime("%Y%m%d-%H%M%S")


def default_workdir(model: str, recipe: str, now: datetime.datetime | None = None) -> str:
    """runs/<model>-<recipe>-<time>: TensorBoard's list of runs then says what each was."""
    return os.path.join("runs", f"{model}-{recipe}-{timestamp(now)}")


def make_workdir(workdir: str | os.PathLike | None) -> list[str]:
    """Creates `workdir` and its missing parents now, so that a bad path fails before a run.

    Returns:
        The directories created, deepest first (for `remove_if_empty`).

    Raises:
        ConfigError: it cannot be created; the error names it.
    """
    if workdir is None:
        return []
    created, path = [], os.path.abspath(os.fspath(workdir))
    while not os.path.exists(path):
        created.append(path)
        path = os.path.dirname(path)
    try:
        os.makedirs(workdir, exist_ok=True)
    except OSError as e:
        raise ConfigError("workdir", os.fspath(workdir), f"cannot be created ({e}).") from None
    return created


def remove_if_empty(created: list[str]) -> None:
    """Removes what `make_workdir` created, deepest first, as far as it is still empty: a
    run that fails leaves no empty folder behind, and never deletes a file."""
    for directory in created:
        try:
            os.rmdir(directory)
        except OSError:
            return  # not empty, or gone: keep it and everything above it


def checkpoint_folder(workdir: str | os.PathLike) -> str:
    return os.path.join(os.fspath(workdir), CHECKPOINT_FOLDER)


def checkpoint_paths(workdir: str | os.PathLike) -> list[str]:
    """The checkpoints in `workdir` (`epoch-NNNN.npz`), oldest first."""
    return sorted(glob.glob(os.path.join(checkpoint_folder(workdir), "epoch-[0-9]*.npz")))


def run_folders(workdir: str | os.PathLike) -> list[str]:
    """The workdir and, where it holds a run of several seeds, each seed's run folder."""
    seeds = glob.glob(os.path.join(glob.escape(os.fspath(workdir)), "seed-[0-9]*"))
    return [os.fspath(workdir), *sorted(path for path in seeds if os.path.isdir(path))]


def remove_temporary(workdir: str | os.PathLike) -> None:
    """Removes what an interrupted write left (`write_atomic`'s temporary files) in the
    workdir and its checkpoint folder, and in each seed's (`run_folders`); the finished
    files stay."""
    for run_folder in run_folders(workdir):
        for folder in (run_folder, checkpoint_folder(run_folder)):
            for path in glob.glob(os.path.join(glob.escape(folder), TEMPORARY_PREFIX + "*")):
                os.remove(path)


def write_atomic(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Writes a file so that readers see the old one or the whole new one, never a part.

    `write(f)` fills a temporary file beside `path` (named ".tmp-...", which is what an
    interrupted run leaves and its clean stop removes), which is then renamed to `path`.
    The folder is created if missing.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=TEMPORARY_PREFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        # mkstemp makes the file private (0600); give it the mode a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_json_atomic(path: str | os.PathLike, payload: dict) -> None:
    """Writes `payload` to `path` atomically (`write_atomic`).

    Raises:
        ValueError: `payload` holds NaN or infinity (not valid JSON); nothing is written.
    """
    text = json.dumps(payload, indent=2, allow_nan=False) + "\n"
    write_atomic(path, lambda f: f.write(text.encode()))
