"""Writing results: atomic JSON files and the software they were measured with."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import tempfile
from collections.abc import Callable
from typing import BinaryIO

import keras

from tf_resnet9.workdir import TEMPORARY_PREFIX

# torch: the parity reference and the PyTorch baseline record their versions here too.
_PACKAGES = (
    "keras",
    "tensorflow",
    "tensorflow-datasets",
    "jax",
    "jaxlib",
    "numpy",
    "absl-py",
    "torch",
)


def library_versions() -> dict[str, str]:
    """Versions of Python, the Keras backend and the libraries that are installed."""
    versions = {"python": platform.python_version(), "keras_backend": keras.backend.backend()}
    for package in _PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            pass
    return versions


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
