"""The backend functions on TensorFlow (see tf_resnet9.backends)."""

import os

import tensorflow as tf
from keras import ops

from tf_resnet9.hardware import DETERMINISTIC_XLA_FLAG

# tf.data is TensorFlow's own input path.
DEFAULT_AUGMENT = "host"
HOST_AUGMENT = True


def value_and_grad(fn):
    def loss_aux_and_grads(params, *args):
        with tf.GradientTape() as tape:
            tape.watch(params)
            loss, aux = fn(params, *args)
        return (loss, aux), tape.gradient(loss, params)

    return loss_aux_and_grads


def compile_fn(fn, jit: bool):
    return tf.function(fn, jit_compile=jit)


def make_seed(seed: int):
    return tf.constant([seed, 0], tf.int64)


def split_seed(seed, count: int):
    return tf.random.experimental.stateless_split(seed, count)


def randint(seed, shape, low: int, high: int):
    return tf.random.stateless_uniform(shape, seed, low, high, dtype=tf.int32)


def permutation(seed, count: int):
    return tf.cast(tf.argsort(tf.random.stateless_uniform([count], seed)), tf.int32)


def wait(tree):
    del tree  # TensorFlow runs ops in order per device: waiting for all of them suffices.
    tf.test.experimental.sync_devices()


def make_deterministic(jit: bool) -> None:
    if not jit:
        tf.config.experimental.enable_op_determinism()
    # Compiled steps are XLA's: TensorFlow's deterministic mode refuses to compile max-pool
    # gradients ("no deterministic XLA implementation"), while XLA is deterministic on the
    # CPU as it is, and on a GPU with the flag (read from XLA_FLAGS when it starts).
    elif tf.config.list_physical_devices("GPU") and DETERMINISTIC_XLA_FLAG not in os.environ.get(
        "XLA_FLAGS", ""
    ):
        raise RuntimeError(
            f"deterministic=True with XLA on a GPU needs XLA_FLAGS={DETERMINISTIC_XLA_FLAG} "
            "before TensorFlow starts (python -m tf_resnet9.train --deterministic sets it)."
        )


def gpu() -> tuple[str, tuple[int, int] | None] | None:
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return None
    details = tf.config.experimental.get_device_details(gpus[0])
    return details.get("device_name", gpus[0].name), details.get("compute_capability")


class TrainingState:
    """The state lives in the Keras variables, updated in place.

    Keras' TensorFlow optimizers only update variables (`stateless_apply` is unsupported
    there), so each step reads and assigns the variables inside the compiled function, and
    the state passed between calls is a placeholder.
    """

    def __init__(self, groups, optimizer):
        self.groups = groups  # (trainable, non-trainable, optimizer, extra) variables
        self.optimizer = optimizer

    def initial(self):
        return ops.zeros((), "int32")

    def values(self, state):
        return tuple([v.value for v in group] for group in self.groups)

    def apply(self, state, grads, non_trainable):
        self.optimizer.apply(grads, self.groups[0])
        for variable, value in zip(self.groups[1], non_trainable):
            variable.assign(value)
        return state

    def with_extra(self, state, extra):
        for variable, value in zip(self.groups[3], extra):
            variable.assign(value)
        return state

    def finish(self, state) -> None:
        del state  # already in the variables

    def run_discarding_updates(self, step_fn, *args):
        variables = [v for group in self.groups for v in group]
        saved = [ops.convert_to_numpy(v) for v in variables]
        outputs = step_fn(self.initial(), *args)
        wait(outputs)
        for variable, value in zip(variables, saved):
            variable.assign(value)
        return outputs


class _TFSummaryWriter:
    """TensorBoard events through `tf.summary` (its ops come from the tensorboard package)."""

    def __init__(self, logdir: str):
        self._writer = tf.summary.create_file_writer(logdir)

    def scalar(self, name: str, value, step: int) -> None:
        with self._writer.as_default():
            tf.summary.scalar(name, value, step=step)

    def image(self, name: str, rgb_uint8_hwc, step: int) -> None:
        with self._writer.as_default():
            tf.summary.image(name, rgb_uint8_hwc[None], step=step)  # a batch of one

    def histogram(self, name: str, values, step: int) -> None:
        with self._writer.as_default():
            tf.summary.histogram(name, values, step=step)

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


# What summary_writer needs installed.
SUMMARY_PACKAGE = "tensorboard"


def summary_writer(logdir: str) -> _TFSummaryWriter:
    # TensorFlow 2.21 no longer installs tensorboard, which implements tf.summary.scalar and
    # the like; without it they fail only when first called, after an epoch of training.
    try:
        import tensorboard  # noqa: F401
    except ImportError as error:
        raise ImportError(
            "TensorBoard logging on TensorFlow needs the tensorboard package: "
            "pip install tensorboard"
        ) from error
    return _TFSummaryWriter(logdir)
