"""The run's folder: made before a run starts, removed again if a failed run left it empty;
where its checkpoints lie. (No Keras here: the command line's Ctrl-C handler uses it.)"""

from __future__ import annotations

import glob
import os

from tf_resnet9.config import ConfigError


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


CHECKPOINT_FOLDER = "checkpoints"
TEMPORARY_PREFIX = ".tmp-"  # what an interrupted write leaves behind


def checkpoint_folder(workdir: str | os.PathLike) -> str:
    return os.path.join(os.fspath(workdir), CHECKPOINT_FOLDER)


def checkpoint_paths(workdir: str | os.PathLike) -> list[str]:
    """The checkpoints in `workdir` (`epoch-NNNN.npz`), oldest first."""
    return sorted(glob.glob(os.path.join(checkpoint_folder(workdir), "epoch-[0-9]*.npz")))


def remove_temporary(workdir: str | os.PathLike) -> None:
    """Removes what an interrupted write left (`tf_resnet9.results.write_atomic`'s temporary
    files) in the workdir and its checkpoint folder; the finished files stay."""
    for folder in (os.fspath(workdir), checkpoint_folder(workdir)):
        for path in glob.glob(os.path.join(folder, TEMPORARY_PREFIX + "*")):
            os.remove(path)
