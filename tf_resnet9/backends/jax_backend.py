"""The backend functions on JAX (see tf_resnet9.backends)."""

import jax
import jax.numpy as jnp


def value_and_grad(fn):
    return jax.value_and_grad(fn, has_aux=True)


def compile_fn(fn, jit: bool):
    if not jit:
        return fn
    # Donating the state lets XLA update the weights in place instead of copying them
    # (accelerators only: XLA's CPU backend ignores donation, with a warning).
    donate = (0,) if jax.default_backend() != "cpu" else ()
    return jax.jit(fn, donate_argnums=donate)


def make_seed(seed: int):
    return jax.random.key(seed)


def split_seed(seed, count: int):
    return jax.random.split(seed, count)


def randint(seed, shape, low: int, high: int):
    return jax.random.randint(seed, shape, low, high, dtype=jnp.int32)


def permutation(seed, count: int):
    return jax.random.permutation(seed, count).astype(jnp.int32)


def wait(tree):
    jax.block_until_ready(tree)
