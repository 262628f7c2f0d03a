"""The backend functions on JAX (see tf_resnet9.backends)."""

import jax
import jax.numpy as jnp
import keras
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec
from keras import ops

from tf_resnet9.backends import xla_flags

HOST_AUGMENT = False  # no tf.data: the training set is augmented on the device


def default_augment(device_kind: str) -> str:
    return "device"


def default_jit(device_kind: str) -> bool:
    # Without jax.jit every op is dispatched from Python, one at a time.
    return True


def value_and_grad(fn):
    return jax.value_and_grad(fn, has_aux=True)


def compile_fn(fn, jit: bool):
    if not jit:
        return fn
    # Donating the state lets XLA update the weights in place instead of copying them
    # (accelerators only: XLA's CPU backend ignores donation, with a warning).
    donate = (0,) if jax.default_backend() != "cpu" else ()
    return jax.jit(fn, donate_argnums=donate)


def vmap(fn, in_axes):
    return jax.vmap(fn, in_axes=in_axes)


def program_text(compiled, *args) -> str:
    return compiled.lower(*args).compile().as_text()


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


def local_device_count() -> int:
    """Devices of the default kind this process sees (all GPUs, or the CPU's host devices:
    one unless XLA_FLAGS=--xla_force_host_platform_device_count=N)."""
    return jax.local_device_count()


def process_index() -> int:
    """This process's number among those `jax.distributed` started (0 alone)."""
    return jax.process_index()


def process_count() -> int:
    return jax.process_count()


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


class DataParallel:
    """Data parallel training over `count` devices of this process (with `jax.distributed`,
    over every process's devices too), on Keras' own `keras.distribution.DataParallel`: the
    model's and optimizer's variables replicated on every device (created in `scope()`),
    each step's batch split along its batch axis, the compiled programs' outputs
    replicated. XLA puts the all-reduces into the programs (gradients; BatchNorm's batch
    statistics, which are the whole batch's, as on one device); ghost BatchNorm with splits
    a multiple of the devices keeps each sub-batch on one device and needs none.

    Host arrays are placed with `jax.make_array_from_callback`, each device taking its part
    of the copy every process holds: `jax.device_put` of host data checks across processes
    that every copy is equal, which costs a data set's worth of communication.
    """

    def __init__(self, count: int):
        devices = jax.devices() if jax.process_count() > 1 else jax.local_devices()[:count]
        self.distribution = keras.distribution.DataParallel(devices=devices)
        self.count = len(devices)
        self.writes = jax.process_index() == 0
        mesh = self.distribution.device_mesh
        self._mesh, self._axis = mesh.backend_mesh, mesh.axis_names[0]
        self._replicated = NamedSharding(self._mesh, PartitionSpec())

    def scope(self):
        return self.distribution.scope()

    def _sharding(self, ndim: int, batch_axis: int | None) -> NamedSharding:
        if batch_axis is None:
            return self._replicated
        spec = [None] * ndim
        spec[batch_axis] = self._axis
        return NamedSharding(self._mesh, PartitionSpec(*spec))

    def put(self, array, batch_axis: int | None = None):
        """`array` on the devices: replicated, or split along `batch_axis`."""
        if isinstance(array, jax.Array) and jax.dtypes.issubdtype(array.dtype, jax.dtypes.prng_key):
            data = self.put(jax.random.key_data(array), batch_axis)
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(array))
        sharding = self._sharding(np.ndim(array), batch_axis)
        if isinstance(array, jax.Array) and array.sharding == sharding:
            return array  # placed already (the training set, once)
        host = np.asarray(array)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    def compile(self, fn, jit: bool):
        if not jit:
            return fn
        # The state and the metrics replicated, as Keras' own trainer sets its programs'
        # output shardings; donated on accelerators, as `compile_fn` does.
        donate = (0,) if jax.default_backend() != "cpu" else ()
        return jax.jit(fn, donate_argnums=donate, out_shardings=self._replicated)


def data_parallel(count: int) -> DataParallel:
    return DataParallel(count)
