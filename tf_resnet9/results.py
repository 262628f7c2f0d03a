"""Writing results: atomic JSON files and the software they were measured with."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import tempfile

import keras

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


def write_json_atomic(path: str | os.PathLike, payload: dict) -> None:
    """Writes `payload` to `path` so that readers see the old file or the whole new one.

    Raises:
        ValueError: `payload` holds NaN or infinity (not valid JSON); nothing is written.
    """
    text = json.dumps(payload, indent=2, allow_nan=False) + "\n"
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        # mkstemp makes the file private (0600); give it the mode a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
