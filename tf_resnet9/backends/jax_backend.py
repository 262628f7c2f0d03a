"""The backend functions on JAX (see tf_resnet9.backends)."""

import jax
import jax.numpy as jnp
import keras
from keras import ops

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


def gpu() -> tuple[str, tuple[int, int] | None] | None:
    device = jax.devices()[0]
    if device.platform != "gpu":
        return None
    capability = getattr(device, "compute_capability", None)
    if capability is not None:
        capability = tuple(int(part) for part in str(capability).split(".")[:2])
    return device.device_kind, capability


class TrainingState:
    """The state is the variables' values, threaded through pure functions.

    JAX compiles pure functions only: the variables are read once, every call returns the
    updated values, and `finish` writes the last ones back.
    """

    def __init__(self, groups, optimizer):
        self.groups = groups  # (trainable, non-trainable, optimizer) variables
        self.optimizer = optimizer

    def initial(self):
        return tuple([v.value for v in group] for group in self.groups)

    def values(self, state):
        return state

    def apply(self, state, grads, non_trainable):
        trainable, _, optimizer_values = state
        trainable, optimizer_values = self.optimizer.stateless_apply(
            optimizer_values, grads, trainable
        )
        return trainable, non_trainable, optimizer_values

    def finish(self, state) -> None:
        for variables, values in zip(self.groups, state):
            for variable, value in zip(variables, values):
                variable.assign(value)

    def run_discarding_updates(self, step_fn, *args):
        # The compiled function consumes (donates) the state it is given: pass a copy.
        return step_fn(keras.tree.map_structure(ops.copy, self.initial()), *args)
