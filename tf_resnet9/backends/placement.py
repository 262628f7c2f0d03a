"""Where a run's arrays live: on the backend's default device (`SingleDevice`, the default
on both backends), or spread over several: for data parallel training (JAX's
`jax_backend.DataParallel`), or for several seeds trained together, a share of the seeds on
each (`jax_backend.SeedParallel`). The compiled steps and the inputs hand their arrays to a
placement instead of knowing how many devices there are."""

from __future__ import annotations

import contextlib


class SingleDevice:
    """Everything on the backend's default device: arrays as they are, the steps compiled
    as `tf_resnet9.backends.compile_fn` compiles them, one process that writes."""

    count = 1  # devices
    writes = True  # this process writes the run's files

    def put(self, array, batch_axis: int | None = None):
        """`array` where the steps read it: here, where it is. `batch_axis`: the axis that
        data parallel shards (None: replicated)."""
        del batch_axis
        return array

    def put_stacked(self, array):
        """`array` stacked over seeds trained together (`tf_resnet9.training.lanes`): here,
        where it is (`jax_backend.SeedParallel` splits their axis over devices)."""
        return array

    def map_seeds(self, fn, in_axes):
        """`fn` mapped over the seeds' leading axis of the arguments `in_axes` names (0:
        stacked, None: shared), as `backends.vmap`."""
        from tf_resnet9 import backends

        return backends.vmap(fn, in_axes)

    def compile(self, fn, jit: bool, donate: bool = False):
        """`fn` compiled (`backends.compile_fn`); `donate`: it consumes its first argument."""
        from tf_resnet9 import backends

        return backends.compile_fn(fn, jit, donate)

    def scope(self):
        """Where the model's and optimizer's variables are created."""
        return contextlib.nullcontext()
