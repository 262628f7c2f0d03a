"""The backend functions on TensorFlow (see tf_resnet9.backends)."""

import os

import tensorflow as tf
from keras import ops

from tf_resnet9.backends import xla_flags

HOST_AUGMENT = True  # tf.data is TensorFlow's own input path


def _one_op_at_a_time_on_a_cpu() -> None:
    """On a CPU, TensorFlow's graphs (its own kernels: the float32 default, without XLA)
    give other numbers from run to run when independent ops run side by side; one at a
    time they are the same, bit for bit, as XLA's programs are. Measured on 2 cores (ResNet9
    width 0.25, 4,096 images, 2 epochs, seed 0): epoch 2's test accuracy 30.4%, 29.2% by
    default (30.9%, 30.8% with enable_op_determinism; with the device or tf.data input),
    30.26% twice with one op at a time, at the same speed (training 8.9 to 9.4 s a run against
    8.8 to 9.4 s). Left as it is where the user sets TF_NUM_INTEROP_THREADS, or where TensorFlow
    has started already (a program that ran ops before importing this one)."""
    if "TF_NUM_INTEROP_THREADS" in os.environ or tf.config.list_physical_devices("GPU"):
        return
    try:
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # TensorFlow has started: its threads are set for good
        pass


_one_op_at_a_time_on_a_cpu()


# On a CPU, TensorFlow's own kernels train ResNet9 faster than XLA's CPU code, and the device
# input (crop, flip and cutout as tensor ops of the step) beats tf.data's: 308 images/s
# against 129 with XLA and 199 to 206 with tf.data (benchmarks.throughput, 2 cores, width
# 0.5, batch 256: benchmarks/results/throughput-cpu-tensorflow-width05.json). On a GPU, XLA
# and tf.data are kept until a GPU measures otherwise.
def default_augment(device_kind: str) -> str:
    return "device" if device_kind == "cpu" else "host"


def default_jit(device_kind: str, precision: str) -> bool:
    # On a CPU TensorFlow's own kernels (oneDNN) train float32 faster than XLA, but have no
    # bf16 or fp16 convolution without AVX-512: there reduced precision needs XLA.
    return device_kind != "cpu" or precision != "float32"


def default_seeds_together(device_kind: str) -> bool:
    del device_kind  # no vmap of the training program here (`vmap`)
    return False


def value_and_grad(fn):
    def loss_aux_and_grads(params, *args):
        with tf.GradientTape() as tape:
            tape.watch(params)
            loss, aux = fn(params, *args)
        return (loss, aux), tape.gradient(loss, params)

    return loss_aux_and_grads


def compile_fn(fn, jit: bool, donate: bool = False):
    del donate  # the steps update TensorFlow's variables in place
    return tf.function(fn, jit_compile=jit)


def program_text(compiled, *args) -> str:
    return compiled.experimental_get_compiler_ir(*args)(stage="optimized_hlo")


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
        return
    # Compiled steps are XLA's: TensorFlow's deterministic mode refuses to compile max-pool
    # gradients ("no deterministic XLA implementation"), while XLA is deterministic on the
    # CPU as it is, and on a GPU with the flag.
    xla_flags.require_deterministic(bool(tf.config.list_physical_devices("GPU")), "TensorFlow")


def local_device_count() -> int:
    return len(tf.config.list_logical_devices("GPU")) or 1


def process_index() -> int:
    return 0  # one process: data parallel, and so several processes, is JAX's


def process_count() -> int:
    return 1


def vmap(fn, in_axes):
    # tf.vectorized_map maps over one axis of every argument alike and falls back to a
    # while loop for ops without a vectorised rule: several seeds run one after another.
    del fn, in_axes
    raise NotImplementedError("training seeds together needs Keras' JAX backend.")


def data_parallel(count: int):
    # Keras' distribution API is JAX's only (keras/src/backend/tensorflow/distribution_lib.py
    # implements none of it); tf.distribute's strategies do not fit these steps.
    raise NotImplementedError("data parallel training needs Keras' JAX backend.")


def seed_parallel(count: int):
    del count  # seeds train one after another here (`vmap`)
    raise NotImplementedError("training seeds together needs Keras' JAX backend.")


def gpu() -> tuple[str, tuple[int, int] | None, int] | None:
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return None
    details = tf.config.experimental.get_device_details(gpus[0])
    name = details.get("device_name", gpus[0].name)
    return name, details.get("compute_capability"), len(gpus)


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

    def apply(self, state, grads, non_trainable, learning_rate=None):
        if learning_rate is not None:  # else the optimizer follows a schedule of its own
            self.optimizer.learning_rate.assign(learning_rate)
        self.optimizer.apply(grads, self.groups[0])
        for variable, value in zip(self.groups[1], non_trainable):
            variable.assign(value)
        return state

    def with_extra(self, state, extra):
        for variable, value in zip(self.groups[3], extra):
            variable.assign(value)
        return state

    def with_model(self, state, trainable, non_trainable):
        for variable, value in zip(self.groups[0] + self.groups[1], trainable + non_trainable):
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
