"""Everything that differs between Keras' backends; the rest of tf_resnet9 is written once,
in `keras.ops`. This package picks the module for the active Keras backend; both offer what
follows, loaded on first use (so that the commands can set XLA's flags before Keras starts).
`device` (the device training runs on), `placement` (where arrays live: one device here)
and `xla_flags` (the XLA flags the package sets) are shared by both.

    NAME                      "tensorflow" or "jax"
    default_augment(kind)     where augmentation runs unless told, on a device of this
                              kind ("cpu", "gpu"): "host" (tf.data) or "device"
    default_jit(kind, precision)
                              whether the steps are XLA-compiled unless told, there, in
                              that precision ("float32", "mixed_bfloat16", ...)
    default_seeds_together(kind)
                              whether several seeds train together (one program mapped
                              over them) unless told, there, or one after another
    HOST_AUGMENT              whether the tf.data input path (--augment host) is available
    value_and_grad(fn)        fn(params, *args) -> (loss, aux); returns a function giving
                              ((loss, aux), grads), grads shaped like params
    compile_fn(fn, jit, donate=False)
                              fn compiled as one program (XLA when jit is True); with
                              donate, the compiled fn consumes its first argument (JAX
                              donates its buffers: the caller must not use it again)
    vmap(fn, in_axes)         fn mapped over a leading axis of the arguments `in_axes`
                              names (0: mapped, None: shared), as one program (JAX only)
    program_text(compiled, *args)
                              XLA's optimised program (HLO text) of a compiled fn for args
    make_seed(seed)           a stateless random seed from a Python int
    split_seed(seed, count)   `count` independent seeds, stacked on axis 0
    randint(seed, shape, low, high)   int32 uniform in low..high-1
    permutation(seed, count)  a random permutation of 0..count-1 (int32)
    wait(tree)                blocks until every array in `tree` has been computed
    gpu()                     (name, compute capability or None, count) of the GPUs, or None
    local_device_count()      devices of the default kind this process sees
    data_parallel(count)      a placement over `count` devices (JAX; `placement`)
    seed_parallel(count)      a placement of several seeds' stacked states over `count`
                              devices, the seed axis split (JAX; `placement`)
    process_index()           this process's number among jax.distributed's (0 alone)
    process_count()           how many processes jax.distributed started (1 alone)
    make_deterministic(jit)   every op deterministic from now on (raises where it cannot be)
    TrainingState(groups, optimizer)
                              where the weights live between compiled calls, for the
                              (trainable, non-trainable, optimizer, extra) variable groups
                              (extra: what the steps keep besides, e.g. an EMA of the
                              weights): initial(), values(state), apply(state, grads,
                              non_trainable, learning_rate=None) (extra unchanged; the
                              optimizer's own schedule where learning_rate is None),
                              with_extra(state, extra), with_model(state, trainable,
                              non_trainable) (the model's values replaced), finish(state),
                              run_discarding_updates(step_fn, *args)
"""

import importlib

_NAMES = (
    "default_augment",
    "default_jit",
    "default_seeds_together",
    "HOST_AUGMENT",
    "value_and_grad",
    "compile_fn",
    "vmap",
    "program_text",
    "make_seed",
    "split_seed",
    "randint",
    "permutation",
    "wait",
    "gpu",
    "make_deterministic",
    "TrainingState",
    "local_device_count",
    "data_parallel",
    "seed_parallel",
    "process_index",
    "process_count",
)


def _active():
    import keras  # starts the backend

    name = keras.backend.backend()
    if name not in ("jax", "tensorflow"):
        raise ImportError(
            f"tf_resnet9 runs on Keras' tensorflow or jax backend, not {name!r}: "
            "set KERAS_BACKEND=tensorflow or KERAS_BACKEND=jax."
        )
    return importlib.import_module(f"tf_resnet9.backends.{name}_backend")


def __getattr__(name: str):
    if name == "NAME":
        return _active().__name__.rsplit(".", 1)[1].removesuffix("_backend")
    if name in _NAMES:
        return getattr(_active(), name)
    raise AttributeError(f"module 'tf_resnet9.backends' has no attribute {name!r}")
