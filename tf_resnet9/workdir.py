"""The run's folder: made before a run starts, removed again if a failed run left it empty."""

from __future__ import annotations

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
