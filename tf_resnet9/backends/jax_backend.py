"""The backend functions on JAX (see tf_resnet9.backends)."""

import jax
import jax.numpy as jnp
import keras
from keras import ops

from tf_resnet9.backends import xla_flags

# JAX has no tf.data: the training set is augmented on the device.
DEFAULT_AUGMENT = "device"
HOST_AUGMENT = False


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


def make_deterministic(jit: bool) -> None:
    del jit  # JAX runs everything through XLA
    xla_flags.require_deterministic(jax.default_backend() == "gpu", "JAX")


def gpu() -> tuple[str, tuple[int, int] | None, int] | None:
    devices = jax.local_devices()
    if devices[0].platform != "gpu":
        return None
    capability = getattr(devices[0], "compute_capability", None)
    if capability is not None:
        capability = tuple(int(part) for part in str(capability).split(".")[:2])
    return devices[0].device_kind, capability, len(devices)


class TrainingState:
    """The state is the variables' values, threaded through pure functions.

    JAX compiles pure functions only: the variables are read once, every call returns the
    updated values, and `finish` writes the last ones back.
    """

    def __init__(self, groups, optimizer):
        self.groups = groups  # (trainable, non-trainable, optimizer, extra) variables
        self.optimizer = optimizer

    def initial(self):
        return tuple([v.value for v in group] for group in self.groups)

    def values(self, state):
        return state

    def apply(self, state, grads, non_trainable):
        trainable, _, optimizer_values, extra = state
        trainable, optimizer_values = self.optimizer.stateless_apply(
            optimizer_values, grads, trainable
        )
        return trainable, non_trainable, optimizer_values, extra

    def with_extra(self, state, extra):
        trainable, non_trainable, optimizer_values, _ = state
        return trainable, non_trainable, optimizer_values, list(extra)

    def finish(self, state) -> None:
        for variables, values in zip(self.groups, state):
            for variable, value in zip(variables, values):
                # A copy: where the state is donated (GPUs), the next call consumes its
                # arrays, and the variables must keep theirs.
                variable.assign(ops.copy(value))

    def run_discarding_updates(self, step_fn, *args):
        # The compiled function consumes (donates) the state it is given: pass a copy.
        return step_fn(keras.tree.map_structure(ops.copy, self.initial()), *args)
