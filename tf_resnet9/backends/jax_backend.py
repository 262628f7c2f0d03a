"""The backend functions on JAX (see tf_resnet9.backends)."""

import contextlib

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


def default_jit(device_kind: str, precision: str) -> bool:
    del device_kind, precision  # without jax.jit every op is dispatched from Python
    return True


def default_seeds_together(device_kind: str) -> bool:
    # On a CPU, XLA runs the vmapped program (each convolution a grouped one over the seeds)
    # several times slower per seed than the seeds one after another (README.org, "Several
    # seeds at once"); a GPU's wider kernels are where it can pay.
    return device_kind == "gpu"


def value_and_grad(fn):
    return jax.value_and_grad(fn, has_aux=True)


def compile_fn(fn, jit: bool, donate: bool = False):
    if not jit:
        return fn
    return jax.jit(fn, donate_argnums=_donated(donate))


def _donated(donate: bool) -> tuple[int, ...]:
    # Donating the state lets XLA update the weights in place instead of copying them. It
    # is asked for on every platform (XLA's CPU backend honours it too), so that the CPU
    # tests run the programs as a GPU does: a state used after it was donated fails there.
    return (0,) if donate else ()


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
        # Where the optimizer's learning rate is among its variables' values (None where
        # it follows a schedule of its own): a step's learning rate goes there.
        self._lr_at = next(
            (i for i, v in enumerate(groups[2]) if v is optimizer.learning_rate), None
        )

    def initial(self):
        # Copies: the training calls consume (donate) the state they are given, and the
        # variables must keep their arrays.
        return tuple([ops.copy(v.value) for v in group] for group in self.groups)

    def values(self, state):
        return state

    def apply(self, state, grads, non_trainable, learning_rate=None):
        trainable, _, optimizer_values, extra = state
        if learning_rate is not None:
            optimizer_values = list(optimizer_values)
            lr_value = optimizer_values[self._lr_at]
            optimizer_values[self._lr_at] = ops.cast(learning_rate, lr_value.dtype)
        trainable, optimizer_values = self.optimizer.stateless_apply(
            optimizer_values, grads, trainable
        )
        return trainable, non_trainable, optimizer_values, extra

    def with_extra(self, state, extra):
        trainable, non_trainable, optimizer_values, _ = state
        return trainable, non_trainable, optimizer_values, list(extra)

    def with_model(self, state, trainable, non_trainable):
        _, _, optimizer_values, extra = state
        return list(trainable), list(non_trainable), optimizer_values, extra

    def finish(self, state) -> None:
        for variables, values in zip(self.groups, state):
            for variable, value in zip(variables, values):
                # A copy: the state is donated, so the next call consumes its
                # arrays, and the variables must keep theirs.
                variable.assign(ops.copy(value))

    def run_discarding_updates(self, step_fn, *args):
        # The state `initial` gives is a copy, which the compiled function consumes.
        return step_fn(self.initial(), *args)


class _Sharded:
    """Arrays over the devices of a one-axis mesh: replicated, or split along one of their
    axes over the mesh's axis.

    Host arrays are placed with `jax.make_array_from_callback`, each device taking its part
    of the copy every process holds: `jax.device_put` of host data checks across processes
    that every copy is equal, which costs a data set's worth of communication.
    """

    writes = True  # this process writes the run's files

    def __init__(self, mesh: jax.sharding.Mesh, axis: str):
        self._mesh, self._axis = mesh, axis
        self._replicated = NamedSharding(mesh, PartitionSpec())

    def _sharding(self, ndim: int, split_axis: int | None) -> NamedSharding:
        if split_axis is None:
            return self._replicated
        spec = [None] * ndim
        spec[split_axis] = self._axis
        return NamedSharding(self._mesh, PartitionSpec(*spec))

    def _place(self, array, split_axis: int | None):
        if isinstance(array, jax.Array) and jax.dtypes.issubdtype(array.dtype, jax.dtypes.prng_key):
            data = self._place(jax.random.key_data(array), split_axis)
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(array))
        sharding = self._sharding(np.ndim(array), split_axis)
        if isinstance(array, jax.Array) and array.sharding == sharding:
            return array  # placed already (the training set, once)
        if isinstance(array, jax.Array) and sharding.is_fully_addressable:
            return jax.device_put(array, sharding)  # device to device, this process's
        host = np.asarray(array)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    def _jit(self, fn, jit: bool, donate: bool, out_sharding: NamedSharding):
        if not jit:
            return fn
        return jax.jit(fn, donate_argnums=_donated(donate), out_shardings=out_sharding)


class DataParallel(_Sharded):
    """Data parallel training over `count` devices of this process (with `jax.distributed`,
    over every process's devices too), on Keras' own `keras.distribution.DataParallel`: the
    model's and optimizer's variables replicated on every device (created in `scope()`),
    each step's batch split along its batch axis, the compiled programs' outputs
    replicated. XLA puts the all-reduces into the programs (gradients; BatchNorm's batch
    statistics, which are the whole batch's, as on one device); ghost BatchNorm with splits
    a multiple of the devices keeps each sub-batch on one device and needs none.
    """

    def __init__(self, count: int):
        devices = jax.devices() if jax.process_count() > 1 else jax.local_devices()[:count]
        self.distribution = keras.distribution.DataParallel(devices=devices)
        self.count = len(devices)
        mesh = self.distribution.device_mesh
        super().__init__(mesh.backend_mesh, mesh.axis_names[0])
        self.writes = jax.process_index() == 0

    def scope(self):
        return self.distribution.scope()

    def put(self, array, batch_axis: int | None = None):
        """`array` on the devices: replicated, or split along `batch_axis`."""
        return self._place(array, batch_axis)

    def compile(self, fn, jit: bool, donate: bool = False):
        # The state and the metrics replicated, as Keras' own trainer sets its programs'
        # output shardings.
        return self._jit(fn, jit, donate, self._replicated)


class SeedParallel(_Sharded):
    """Several seeds trained together (`tf_resnet9.training.lanes`) over `count` devices of
    this process: their stacked states, per-seed inputs and metrics split along the seed
    axis (seeds / count whole runs on each device), what they share (the training and test
    sets) replicated. A seed's batch stays on its device: the programs need no
    communication.
    """

    def __init__(self, count: int):
        self.count = count
        super().__init__(
            jax.sharding.Mesh(np.array(jax.local_devices()[:count]), ("seeds",)), "seeds"
        )

    def scope(self):
        # Each seed's model is built as a run alone builds it; its values reach the
        # devices when the seeds' states are stacked (`put_stacked`).
        return contextlib.nullcontext()

    def put(self, array, batch_axis: int | None = None):
        """`array`, shared by every seed, on every device (a batch is not split)."""
        del batch_axis
        return self._place(array, None)

    def put_stacked(self, array):
        """`array` stacked over the seeds (leading axis), each seed's slice on its device."""
        return self._place(array, 0)

    def map_seeds(self, fn, in_axes):
        """`fn` mapped over the seeds (`vmap`), each device mapping it over its own seeds:
        XLA's partitioner, given the mapped program alone, gathers every seed onto every
        device around the convolutions (which vmap makes grouped ones); `shard_map`
        leaves the program nothing to communicate."""

        def spec(axis):
            if isinstance(axis, tuple):
                return tuple(spec(a) for a in axis)
            return PartitionSpec() if axis is None else PartitionSpec(self._axis)

        return jax.shard_map(
            vmap(fn, in_axes),
            mesh=self._mesh,
            in_specs=spec(tuple(in_axes)),
            out_specs=PartitionSpec(self._axis),
        )

    def compile(self, fn, jit: bool, donate: bool = False):
        # Every output of a program mapped over the seeds has their axis first.
        return self._jit(fn, jit, donate, self._sharding(1, 0))


def data_parallel(count: int) -> DataParallel:
    return DataParallel(count)


def seed_parallel(count: int) -> SeedParallel:
    return SeedParallel(count)
