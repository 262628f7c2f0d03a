"""The per-backend functions: gradients, compilation, stateless randomness."""

import numpy as np
import pytest
from keras import ops

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
def test_on_an_accelerator_the_compiled_steps_donate_their_state(monkeypatch):
    # On a GPU the state (weights, velocities) is donated, so XLA updates it in place
    # instead of keeping two copies; XLA's CPU backend ignores donation, so there the
    # package asks for none. A CPU can still check what is asked, in the lowered program.
    import jax

    state = [np.zeros((64,), np.float32), np.ones((8,), np.float32)]

    def step(state, x):
        return [s + x for s in state]

    lowered = {}
    for platform in ("cpu", "gpu"):
        monkeypatch.setattr(jax, "default_backend", lambda platform=platform: platform)
        compiled = backends.compile_fn(step, jit=True)
        lowered[platform] = compiled.lower(state, np.float32(1.0)).as_text()
    # JAX marks a donated argument that an output may alias (tf.aliasing_output) or reuse.
    donated = ("tf.aliasing_output", "jax.buffer_donor")
    assert any(mark in lowered["gpu"] for mark in donated)
    assert not any(mark in lowered["cpu"] for mark in donated)


def test_determinism_on_a_gpu_is_refused_without_xla_s_flag(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_dump_to=/tmp/x")
    with pytest.raises(RuntimeError, match="needs XLA_FLAGS=--xla_gpu_deterministic_ops=true"):
        xla_flags.require_deterministic(on_gpu=True, backend="JAX")
    xla_flags.require_deterministic(on_gpu=False, backend="JAX")  # a CPU is deterministic
    monkeypatch.setenv("XLA_FLAGS", f"--xla_dump_to=/tmp/x {xla_flags.DETERMINISTIC}")
    xla_flags.require_deterministic(on_gpu=True, backend="JAX")
