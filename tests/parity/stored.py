"""The reference's results as stored in tests/parity/fixtures/, for runs without torch.

Each experiment of `tests.parity.experiments` is one .npz of the reference's side, every
array reduced to the entries `tests.parity.cases.sample_index` picks (256 evenly spread
entries, or all of a smaller array): enough to compare every layer and step, small enough
to keep in git. `python -m tests.parity.make_fixtures` writes them.
"""

from __future__ import annotations

import pathlib

import numpy as np

from tests.parity import cases

FIXTURE_DIR = pathlib.Path(__file__).parent / "fixtures"
# Experiments stored: `tests.parity.experiments.torch_<name>` makes each.
EXPERIMENTS = ("forward", "optimizer", "dynamics")


def shrink(results: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every array reduced to its sampled entries (flat)."""
    shrunk = {}
    for key, value in results.items():
        value = np.asarray(value)
        shrunk[key] = value.ravel()[cases.sample_index(value.size)]
    return shrunk


def path(name: str) -> pathlib.Path:
    return FIXTURE_DIR / f"{name}.npz"


def save(name: str, results: dict[str, np.ndarray]) -> pathlib.Path:
    FIXTURE_DIR.mkdir(exist_ok=True)
    np.savez_compressed(path(name), **shrink(results))
    return path(name)


def load(name: str) -> dict[str, np.ndarray]:
    """The stored, sampled reference results of experiment `name`."""
    if not path(name).exists():
        raise FileNotFoundError(
            f"{path(name)} is missing: run `python -m tests.parity.make_fixtures` where torch "
            "is installed."
        )
    with np.load(path(name)) as stored:
        return {key: stored[key] for key in stored.files}
