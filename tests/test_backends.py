"""The per-backend functions: gradients, compilation, stateless randomness."""

import os
import subprocess
import sys

import numpy as np
import pytest
from keras import ops

from tests.commands import ROOT
from tf_resnet9 import backends
from tf_resnet9.backends import xla_flags


def test_value_and_grad_of_a_known_function():
    def fn(params, x):
        w, b = params
        loss = ops.sum((w * x + b) ** 2)
        return loss, loss * 2

    w, b, x = (ops.convert_to_tensor(np.float32(v)) for v in (1.5, -0.5, 2.0))
    (loss, aux), (dw, db) = backends.value_and_grad(fn)([w, b], x)
    # loss = (wx + b)^2 = 6.25; d/dw = 2(wx + b)x = 10; d/db = 2(wx + b) = 5. Exact in float32.
    assert float(loss) == 6.25 and float(aux) == 12.5
    assert float(dw) == 10.0 and float(db) == 5.0


def test_compiled_function_matches_eager():
    def fn(x, y):
        return ops.sin(x) * y + 1.0

    x = ops.convert_to_tensor(np.linspace(-3, 3, 7).astype("float32"))
    y = ops.convert_to_tensor(np.float32(2.0))
    expected = ops.convert_to_numpy(fn(x, y))
    for jit in (True, False):
        got = backends.compile_fn(fn, jit)(ops.copy(x), y)
        backends.wait(got)
        # XLA may fuse sin*y+1 into one rounding: within 2 ulp of float32.
        np.testing.assert_allclose(ops.convert_to_numpy(got), expected, rtol=3e-7, atol=3e-7)


def test_seeds_are_reproducible_and_split_independently():
    draw = lambda seed: ops.convert_to_numpy(backends.randint(seed, (200,), 0, 9))  # noqa: E731
    np.testing.assert_array_equal(draw(backends.make_seed(7)), draw(backends.make_seed(7)))
    assert not np.array_equal(draw(backends.make_seed(7)), draw(backends.make_seed(8)))
    first, second = backends.split_seed(backends.make_seed(7), 2)
    assert not np.array_equal(draw(first), draw(second))


def test_randint_covers_its_range_only():
    values = ops.convert_to_numpy(backends.randint(backends.make_seed(0), (5000,), 3, 8))
    assert values.dtype == np.int32 and set(values.tolist()) == {3, 4, 5, 6, 7}


def test_permutation_is_a_permutation():
    order = ops.convert_to_numpy(backends.permutation(backends.make_seed(1), 1000))
    assert order.dtype == np.int32 and sorted(order.tolist()) == list(range(1000))
    assert not np.array_equal(order, np.arange(1000))


@pytest.mark.skipif(backends.NAME != "jax", reason="JAX donates; TensorFlow updates in place")
def test_training_consumes_its_state_and_evaluation_leaves_it():
    # The training calls donate the state (weights, velocities) so that XLA updates it in
    # place, on every platform: the CPU suite then runs the programs as a GPU does, and a
    # state read after a training call consumed it fails here too. Evaluation reads the
    # state the next training call takes: it must donate nothing (its confusion matrix
    # could otherwise take a weight's buffer of the same shape).
    import keras

    from tf_resnet9.data.inputs import DeviceInput
    from tf_resnet9.models.resnet9 import resnet9
    from tf_resnet9.training.optimizers import NesterovSGD
    from tf_resnet9.training.steps import CompiledSteps

    keras.utils.set_random_seed(0)
    steps = CompiledSteps(resnet9(width=0.0625), NesterovSGD(0.1), jit=True, grad_norms=False)
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (16, 32, 32, 3), np.uint8), rng.integers(0, 10, 16)
    state = keras.tree.map_structure(ops.copy, steps.initial_state())
    leaves = keras.tree.flatten(state)
    weights = np.ones(16, np.float32)
    steps.evaluate(state, images, labels.astype(np.int32), weights)
    assert not any(leaf.is_deleted() for leaf in leaves)
    train_input = DeviceInput(images, labels, 16, 1, seed=0)
    (chunk,) = train_input.epoch(1)
    position = (ops.convert_to_tensor(0, "int32"), np.full(1, 0.1, np.float32))  # its lr
    after, _ = steps.train_fn(train_input.batches)(state, position, chunk)
    # The weights and the optimizer's variables, updated in place: the inputs are gone.
    assert all(leaf.is_deleted() for leaf in keras.tree.flatten(state[0]))
    assert not any(leaf.is_deleted() for leaf in keras.tree.flatten(after))


def test_determinism_on_a_gpu_is_refused_without_xla_s_flag(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_dump_to=/tmp/x")
    with pytest.raises(RuntimeError, match="needs XLA_FLAGS=--xla_gpu_deterministic_ops=true"):
        xla_flags.require_deterministic(on_gpu=True, backend="JAX")
    xla_flags.require_deterministic(on_gpu=False, backend="JAX")  # a CPU is deterministic
    monkeypatch.setenv("XLA_FLAGS", f"--xla_dump_to=/tmp/x {xla_flags.DETERMINISTIC}")
    xla_flags.require_deterministic(on_gpu=True, backend="JAX")


@pytest.mark.tensorflow
@pytest.mark.skipif(backends.NAME != "tensorflow", reason="TensorFlow's graphs alone")
# "0": the package left the setting to TensorFlow, which then reads TF_NUM_INTEROP_THREADS.
@pytest.mark.parametrize("given, expected", [(None, "1"), ("3", "0")])
def test_tensorflow_on_a_cpu_runs_one_op_at_a_time_unless_told(given, expected):
    # Independent ops side by side made runs of one seed differ (tensorflow_backend's
    # figures); that takes a run longer than a test, so the setting itself is checked.
    program = (
        "import tensorflow as tf; from tf_resnet9 import backends; backends.make_seed(0); "
        "print(tf.config.threading.get_inter_op_parallelism_threads(), "
        "bool(tf.config.list_physical_devices('GPU')))"
    )
    env = {k: v for k, v in os.environ.items() if k != "TF_NUM_INTEROP_THREADS"}
    env |= {"KERAS_BACKEND": "tensorflow"} | ({"TF_NUM_INTEROP_THREADS": given} if given else {})
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, env=env, cwd=ROOT
    )
    threads, gpu = result.stdout.split()
    if gpu == "True" and given is None:
        pytest.skip("a GPU: TensorFlow's threads are its own there")
    assert threads == expected, result.stderr
