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

import keras
import numpy as np
from keras import ops

from tf_resnet9 import builders
from tf_resnet9.config import TrainConfig
from tf_resnet9.config.settings import resolve
from tf_resnet9.training import evaluation
from tf_resnet9.training.evaluation import EvalSet

RNG = np.random.default_rng(0)
IMAGES = RNG.integers(0, 256, (96, 32, 32, 3), np.uint8)  # 3 steps of 32
LABELS = RNG.integers(0, 10, 96)
TEST = (RNG.integers(0, 256, (44, 32, 32, 3), np.uint8), RNG.integers(0, 10, 44))


def all_reduces(program: str) -> int:
    """All-reduce operations in an optimised HLO program (synchronous or started)."""
    return len(re.findall(r"= [^=]*\ball-reduce(?:-start)?\(", program))


def trained(devices: int, **settings) -> dict:
    """The weights after the first step and after an epoch of 3 (one call each), the
    all-reduces of the training program, and the evaluation's confusion matrix."""
    config = TrainConfig(
        width=0.0625, batch_size=32, devices=str(devices), tensorboard=False, **settings
    )
    run = resolve(config, len(LABELS), len(TEST[1]))
    keras.utils.set_random_seed(0)
    lr = builders.learning_rate(config, run.steps_per_epoch)
    steps = builders.build_steps(config, run, lr, IMAGES)
    train_input = builders.train_input(config, run, IMAGES, LABELS, steps.placement)
    train = steps.train_fn(train_input.batches)
    chunks = list(train_input.epoch(1))
    first = ops.convert_to_tensor(0, "int32")
    program = train.program(steps.initial_state(), first, chunks[0])
    state, after_first = steps.initial_state(), None
    for index, chunk in enumerate(chunks):
        state, _ = train(state, ops.convert_to_tensor(index, "int32"), chunk)
        if index == 0:
            steps.finish(state)
            after_first = [np.asarray(v).tolist() for v in steps.model.variables]
            state = steps.initial_state()
    steps.finish(state)
    eval_set = EvalSet.build(*TEST, run.eval_batch_size, steps.placement)
    confusion = evaluation.evaluate(steps, steps.initial_state(), eval_set).confusion
    return {
        "first": after_first,
        "epoch": [np.asarray(v).tolist() for v in steps.model.variables],
        "all_reduces": all_reduces(program),
        "confusion": confusion.tolist(),
        "eval_batch_size": run.eval_batch_size,
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
