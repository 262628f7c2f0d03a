"""Trains the same tiny ResNet9 on one device and data parallel on several, in one process
with forced CPU host devices, and prints what `tests/test_data_parallel.py` checks as JSON.

    XLA_FLAGS=--xla_force_host_platform_device_count=4 KERAS_BACKEND=jax \\
        python -m tests.data_parallel_probe 4

XLA reads the device count when JAX starts: hence a process of its own.
"""

from __future__ import annotations

import json
import re
import sys

import numpy as np
from keras import ops

from tf_resnet9.build import build_training
from tf_resnet9.config import TrainConfig
from tf_resnet9.config.settings import resolve
from tf_resnet9.data.splits import Splits
from tf_resnet9.training import evaluation, loop

RNG = np.random.default_rng(0)
IMAGES = RNG.integers(0, 256, (96, 32, 32, 3), np.uint8)  # 3 steps of 32
LABELS = RNG.integers(0, 10, 96)
TEST = (RNG.integers(0, 256, (44, 32, 32, 3), np.uint8), RNG.integers(0, 10, 44))


def all_reduces(program: str) -> int:
    """All-reduce operations in an optimised HLO program (synchronous or started)."""
    return len(re.findall(r"= [^=]*\ball-reduce(?:-start)?\(", program))


def weights(arrays: dict) -> list:
    """The model's weights and BatchNorm statistics of a state's arrays."""
    return [value.tolist() for name, value in arrays.items() if name.startswith("model/")]


def trained(devices: int, **settings) -> dict:
    """The weights after the first step and after an epoch of 3 (one call each), the
    all-reduces of the training program, and the evaluation's confusion matrix."""
    config = TrainConfig(
        width=0.0625, batch_size=32, devices=str(devices), tensorboard=False, **settings
    )
    settings = resolve(config, len(LABELS), len(TEST[1]))
    training = build_training(config, settings, Splits.of_arrays((IMAGES, LABELS), TEST), [0])
    steps, rate = training.steps, training.learning_rates[0]
    train_input, eval_sets = training.inputs()
    train = steps.train_fn(train_input.batches)
    program = train.program(steps.initial_state(), *loop.first_call(training, train_input))
    state, after_first = steps.initial_state(), None
    for index, chunk in enumerate(train_input.epoch(1)):
        position = (ops.convert_to_tensor(index, "int32"), rate.lr_at([index]))
        state, _ = train(state, position, chunk)
        if index == 0:
            after_first = weights(steps.arrays(state))
    confusion = evaluation.evaluate(steps, state, eval_sets["test"]).confusion
    return {
        "first": after_first,
        "epoch": weights(steps.arrays(state)),
        "all_reduces": all_reduces(program),
        "confusion": confusion.tolist(),
        "eval_batch_size": settings.eval_batch_size,
    }


def main() -> None:
    devices = int(sys.argv[1])
    result = {
        "one": trained(1),
        "many": trained(devices),
        "ghost": trained(devices, ghost_bn_splits=devices),
    }
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
