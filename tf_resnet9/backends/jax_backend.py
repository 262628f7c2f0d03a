"""The backend functions on JAX (see tf_resnet9.backends)."""

import os

import jax
import jax.numpy as jnp
import keras
from keras import ops

from tf_resnet9.hardware import DETERMINISTIC_XLA_FLAG

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
    # XLA on the CPU is deterministic already; on a GPU only with the flag, read at start.
    if jax.default_backend() == "gpu" and DETERMINISTIC_XLA_FLAG not in os.environ.get(
        "XLA_FLAGS", ""
    ):
        raise RuntimeError(
            f"deterministic=True on JAX's GPU backend needs XLA_FLAGS={DETERMINISTIC_XLA_FLAG} "
            "before JAX starts (python -m tf_resnet9.train --deterministic sets it)."
        )


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


class _TensorBoardXWriter:
    """TensorBoard events through tensorboardX: the same files as tf.summary's, no TensorFlow."""

    def __init__(self, writer):
        self._writer = writer  # a tensorboardX.SummaryWriter

    def scalar(self, name: str, value, step: int) -> None:
        self._writer.add_scalar(name, float(value), global_step=step)

    def image(self, name: str, rgb_uint8_hwc, step: int) -> None:
        self._writer.add_image(name, rgb_uint8_hwc, global_step=step, dataformats="HWC")

    def histogram(self, name: str, values, step: int) -> None:
        self._writer.add_histogram(name, values, global_step=step)

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


# What summary_writer needs installed.
SUMMARY_PACKAGE = "tensorboardX"


def summary_writer(logdir: str) -> _TensorBoardXWriter:
    try:
        from tensorboardX import SummaryWriter  # optional: only TensorBoard logging needs it
    except ImportError as error:
        raise ImportError(
            "TensorBoard logging on JAX needs the tensorboardX package: pip install tensorboardX"
        ) from error
    return _TensorBoardXWriter(SummaryWriter(logdir))
