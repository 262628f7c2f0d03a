"""The reference's results as stored in tests/parity/fixtures/, for runs without torch.

Each experiment of `tests.parity.experiments` is one .npz of the reference's side, every
array reduced to the entries `tests.parity.cases.sample_index` picks (256 evenly spread
entries, or all of a smaller array; 16 for the ResNets', `sample_count`): enough to compare
every layer and step, small enough to keep in git. `python -m tests.parity.make_fixtures`
writes them.
"""

from __future__ import annotations

import pathlib

import numpy as np

from tests.parity import cases

FIXTURE_DIR = pathlib.Path(__file__).parent / "fixtures"
# Experiments stored: `tests.parity.experiments.torch_<name>` makes each.
EXPERIMENTS = ("forward", "optimizer", "dynamics", "resnets", "airbench")
# Stored packed, as three arrays (the keys, each array's size, all values as float32): the
# ResNets' ~1,100 arrays of 16 values each, where one .npz entry per array would cost more
# in zip and .npy headers (~300 bytes) than its values. Their reference runs in float32.
PACKED = ("resnets", "airbench")
# airbench's ~700 arrays keep 32 entries each (whole where smaller); the whitening filters
# (their comparison aligns each filter's sign first) and the logits (80 entries) whole.
AIRBENCH_SAMPLES = 32


def sample_count(name: str, key: str) -> int:
    """How many entries of array `key` of experiment `name` are stored: 256, except the
    ResNets' block outputs and gradients (cases.RESNET_SAMPLES; their logits are whole)
    and airbench's arrays (AIRBENCH_SAMPLES; the whitening filters whole)."""
    if name == "resnets" and not key.endswith(":linear"):
        return cases.RESNET_SAMPLES
    if name == "airbench":
        base = key.split(":", 2)[2] if key.startswith("planted:") else key
        whole = base.startswith(("whiten:", "tta:")) or base.endswith(":logits")
        return 1 << 30 if whole else AIRBENCH_SAMPLES
    return 256


def shrink(results: dict[str, np.ndarray], name: str = "") -> dict[str, np.ndarray]:
    """Every array of experiment `name` reduced to its sampled entries (flat)."""
    shrunk = {}
    for key, value in results.items():
        value = np.asarray(value)
        shrunk[key] = value.ravel()[cases.sample_index(value.size, sample_count(name, key))]
    return shrunk


def _pack(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {
        "keys": np.array(list(arrays)),
        "sizes": np.array([value.size for value in arrays.values()]),
        "values": np.concatenate([value.astype(np.float32) for value in arrays.values()]),
    }


def _unpack(packed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    values = np.split(packed["values"], np.cumsum(packed["sizes"])[:-1])
    return {str(key): value for key, value in zip(packed["keys"], values)}


def path(name: str) -> pathlib.Path:
    return FIXTURE_DIR / f"{name}.npz"


def save(name: str, results: dict[str, np.ndarray]) -> pathlib.Path:
    FIXTURE_DIR.mkdir(exist_ok=True)
    shrunk = shrink(results, name)
    np.savez_compressed(path(name), **(_pack(shrunk) if name in PACKED else shrunk))
    return path(name)


def load(name: str) -> dict[str, np.ndarray]:
    """The stored, sampled reference results of experiment `name`."""
    if not path(name).exists():
        raise FileNotFoundError(
            f"{path(name)} is missing: run `python -m tests.parity.make_fixtures` where torch "
            "is installed."
        )
    with np.load(path(name)) as stored:
        arrays = {key: stored[key] for key in stored.files}
    return _unpack(arrays) if name in PACKED else arrays
