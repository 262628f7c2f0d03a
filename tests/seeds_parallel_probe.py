"""Trains two seeds alone on one device, then together with their seed axis split over two
forced CPU host devices (`backends.seed_parallel`), in one process, and prints what
`tests/test_seeds.py` checks as JSON: each seed's records both ways, the largest weight
difference relative to its tensor's largest weight, where the stacked state lives, and the
collectives in the compiled training program.

    XLA_FLAGS=--xla_force_host_platform_device_count=2 KERAS_BACKEND=jax \\
        python -m tests.seeds_parallel_probe

XLA reads the device count when JAX starts: hence a process of its own.
"""

from __future__ import annotations

import json
import re
import sys
from typing import NamedTuple

import numpy as np

from tests.test_seeds import IMAGES, LABELS, SEEDS, alone_and_together, lane, learning_rate
from tf_resnet9 import backends
from tf_resnet9.data.inputs import DeviceInput
from tf_resnet9.training.lanes import SeedInput, SeedSteps
from tf_resnet9.training.loop import first_call

COLLECTIVE = re.compile(r"= [^=]*\b(all-reduce|all-gather|all-to-all|collective-permute)\b")


def relative_difference(got: list, expected: list) -> float:
    return max(float(np.max(np.abs(a - b)) / np.max(np.abs(b))) for a, b in zip(got, expected))


class Stand(NamedTuple):
    """The steps and learning rates `first_call` reads."""

    steps: SeedSteps
    learning_rates: tuple


def placement_and_program(placement) -> dict:
    """Where each array of the seeds' stacked state lives, and the training program's
    collectives."""
    steps = SeedSteps([lane(seed) for seed in SEEDS], True, placement)
    state = steps.initial_state()
    train_input = SeedInput.of_seeds(DeviceInput(IMAGES, LABELS, 16, 1, seed=SEEDS[0]), SEEDS)
    training = Stand(steps, (learning_rate(), learning_rate()))
    program = steps.train_fn(train_input.batches).program(state, *first_call(training, train_input))
    leaves = [leaf for group in state for leaf in group]
    return {
        # Per array: (device, the seeds its shard holds) of each shard.
        "shards": [
            sorted((shard.device.id, shard.data.shape[0]) for shard in leaf.addressable_shards)
            for leaf in leaves
        ],
        "collectives": COLLECTIVE.findall(program),
    }


def main() -> None:
    placement = backends.seed_parallel(2)
    alone, together = alone_and_together(placement=placement)
    json.dump(
        {
            "devices": backends.local_device_count(),
            "test_acc": [
                [[r.test_acc for r in records] for records, _ in runs] for runs in (alone, together)
            ],
            "train_loss": [
                [[r.train_loss for r in records] for records, _ in runs]
                for runs in (alone, together)
            ],
            "weights": [
                relative_difference(got, expected)
                for (_, expected), (_, got) in zip(alone, together)
            ],
            "between_seeds": float(np.max(np.abs(together[0][1][0] - together[1][1][0]))),
            **placement_and_program(placement),
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()
