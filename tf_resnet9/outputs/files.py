"""Writing a run's files whole or not at all, and a failed write as one line that says what
failed and why (`OutputError`). (No Keras here: the command line's Ctrl-C handler uses it.)

Every file of a run is filled under a temporary name beside its own (`TEMPORARY_PREFIX`),
then renamed into place: a reader sees the old file or the whole new one. A write that fails
(a full disk, a folder that is read-only or gone) removes its temporary file and leaves what
was there before untouched.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from typing import BinaryIO

from tf_resnet9.errors import OutputError

TEMPORARY_PREFIX = ".tmp-"  # what an interrupted write leaves behind


def _megabytes(count: int) -> str:
    return f"{count / 1e6:.1f} MB" if count >= 100_000 else f"{count:,} bytes"


def free_bytes(path: str | os.PathLike) -> int | None:
    """The bytes free for this user on the file system that holds `path` (or its nearest
    existing parent); None where it cannot be told."""
    path = os.path.abspath(os.fspath(path))
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def write_error(path: str | os.PathLike, error: OSError, needed: int | None = None) -> OutputError:
    """The `OutputError` of a failed write of `path`: the file, the cause and, where the disk
    is full, the space the write needed and what is free."""
    cause = error.strerror or type(error).__name__
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        free = free_bytes(path)
        needs = f"it needs about {_megabytes(needed)}, " if needed else ""
        left = "free space unknown" if free is None else f"{_megabytes(free)} free"
        cause = f"{cause} ({needs}{left})"
    return OutputError(os.fspath(path), cause)


def write_atomic(
    path: str | os.PathLike, write: Callable[[BinaryIO], None], needed: int | None = None
) -> None:
    """Writes a file so that readers see the old one or the whole new one, never a part.

    `write(f)` fills a temporary file beside `path` (named ".tmp-<its name>.<random>",
    which is what an interrupted run leaves and its clean stop removes), which is then
    renamed to `path`. The folder is created if missing.

    Args:
        needed: The file's size, where known, for the message of a full disk.

    Raises:
        OutputError: the file could not be written (the temporary one is removed).
    """
    directory = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        os.makedirs(directory, exist_ok=True)
        prefix = f"{TEMPORARY_PREFIX}{os.path.basename(path)}."
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=prefix)
        os.close(fd)
        with open(tmp, "wb") as f:
            write(f)
        # mkstemp makes the file private (0600); give it the mode a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except OSError as error:
        _remove(tmp)
        raise write_error(path, error, needed) from None
    except BaseException:
        _remove(tmp)
        raise


def _remove(path: str | None) -> None:
    if path is None:
        return
    try:
        os.unlink(path)
    except OSError:
        pass  # gone with its folder, or never made: nothing left behind either way


def write_json_atomic(path: str | os.PathLike, payload: dict) -> None:
    """Writes `payload` to `path` atomically (`write_atomic`).

    Raises:
        ValueError: `payload` holds NaN or infinity (not valid JSON); nothing is written.
        OutputError: the file could not be written.
    """
    text = (json.dumps(payload, indent=2, allow_nan=False) + "\n").encode()
    write_atomic(path, lambda f: f.write(text), needed=len(text))


def write_into_place(
    path: str | os.PathLike, write: Callable[[str], object], needed: int | None = None
) -> None:
    """Like `write_atomic`, for a writer that takes a path and opens it itself (Keras'
    `model.save`, a SavedModel's export: a file or a folder): `write(partial)` writes a
    temporary path beside `path`, which then replaces `path`. A folder already at `path`
    is moved aside first and removed after, so a reader meets the old, the new, or
    (briefly) none.

    Raises:
        OutputError: it could not be written; the partial file or folder is removed.
    """
    path = os.fspath(path)
    # Keras wants a name ending as the real one's (".keras"): the prefix goes in front.
    partial = os.path.join(os.path.dirname(path), TEMPORARY_PREFIX + os.path.basename(path))
    old = os.path.join(os.path.dirname(path), TEMPORARY_PREFIX + "old-" + os.path.basename(path))
    try:
        _remove_any(partial)
        write(partial)
        if os.path.isdir(path):
            _remove_any(old)
            os.replace(path, old)
        os.replace(partial, path)
        _remove_any(old)
    except OSError as error:
        _remove_any(partial)
        raise write_error(path, error, needed) from None
    except BaseException:
        _remove_any(partial)
        raise


def _remove_any(path: str) -> None:
    """Removes a file or folder if it is there."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        _remove(path if os.path.lexists(path) else None)
