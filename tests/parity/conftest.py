"""Both sides' results of each parity experiment, computed once per session.

With torch installed the reference runs live; without it, its side comes from the stored
fixtures (tests/parity/fixtures/, written by `python -m tests.parity.make_fixtures`).
"""

from __future__ import annotations

from typing import NamedTuple

import pytest

from tests.parity import experiments, stored

try:
    import torch  # noqa: F401

    HAVE_TORCH = True
except ImportError:
    HAVE_TORCH = False


class Results(NamedTuple):
    keras: dict
    reference: dict
    sampled: bool  # the reference's side is the stored sample, not a live run


def _results(name: str) -> Results:
    keras = getattr(experiments, f"keras_{name}")()
    if HAVE_TORCH:
        return Results(keras, getattr(experiments, f"torch_{name}")(), sampled=False)
    return Results(keras, stored.load(name), sampled=True)


@pytest.fixture(scope="session")
def have_torch() -> bool:
    return HAVE_TORCH


@pytest.fixture(scope="session")
def forward_results() -> Results:
    return _results("forward")


@pytest.fixture(scope="session")
def optimizer_results() -> Results:
    return _results("optimizer")


@pytest.fixture(scope="session")
def dynamics_results() -> Results:
    return _results("dynamics")


@pytest.fixture(scope="session")
def resnets_results() -> Results:
    return _results("resnets")


@pytest.fixture(scope="session")
def airbench_results() -> Results:
    return _results("airbench")
