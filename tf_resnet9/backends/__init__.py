"""Everything that differs between Keras' backends; the rest of tf_resnet9 is written once,
in `keras.ops`. This package picks the module for the active Keras backend; both offer:

    NAME                      "tensorflow" or "jax"
    DEFAULT_AUGMENT           where augmentation runs unless told: "host" (tf.data) or
                              "device"
    HOST_AUGMENT              whether the tf.data input path (--augment host) is available
    SUMMARY_PACKAGE           the package summary_writer needs (tensorboard, tensorboardX)
    value_and_grad(fn)        fn(params, *args) -> (loss, aux); returns a function giving
                              ((loss, aux), grads), grads shaped like params
    compile_fn(fn, jit)       fn compiled as one program (XLA when jit is True); the
                              compiled fn may consume its first argument (JAX donates it)
    make_seed(seed)           a stateless random seed from a Python int
    split_seed(seed, count)   `count` independent seeds, stacked on axis 0
    randint(seed, shape, low, high)   int32 uniform in low..high-1
    permutation(seed, count)  a random permutation of 0..count-1 (int32)
    wait(tree)                blocks until every array in `tree` has been computed
    gpu()                     (name, compute capability or None) of the first GPU, or None
    make_deterministic(jit)   every op deterministic from now on (raises where it cannot be)
    TrainingState(groups, optimizer)
                              where the weights live between compiled calls, for the
                              (trainable, non-trainable, optimizer, extra) variable groups
                              (extra: what the steps keep besides, e.g. an EMA of the
                              weights): initial(), values(state), apply(state, grads,
                              non_trainable) (extra unchanged), with_extra(state,
                              extra), finish(state),
                              run_discarding_updates(step_fn, *args)
    summary_writer(logdir)    a TensorBoard event file writer: scalar(name, value, step),
                              image(name, rgb_uint8_hwc, step), histogram(name, values,
                              step), flush(), close(); tf.summary on TensorFlow (needs
                              tensorboard), tensorboardX on JAX
"""

import keras

NAME = keras.backend.backend()
if NAME == "jax":
    from tf_resnet9.backends import jax_backend as _active
elif NAME == "tensorflow":
    from tf_resnet9.backends import tensorflow_backend as _active
else:
    raise ImportError(
        f"tf_resnet9 runs on Keras' tensorflow or jax backend, not {NAME!r}: "
        "set KERAS_BACKEND=tensorflow or KERAS_BACKEND=jax."
    )

DEFAULT_AUGMENT = _active.DEFAULT_AUGMENT
HOST_AUGMENT = _active.HOST_AUGMENT
value_and_grad = _active.value_and_grad
compile_fn = _active.compile_fn
make_seed = _active.make_seed
split_seed = _active.split_seed
randint = _active.randint
permutation = _active.permutation
wait = _active.wait
gpu = _active.gpu
make_deterministic = _active.make_deterministic
TrainingState = _active.TrainingState
summary_writer = _active.summary_writer
SUMMARY_PACKAGE = _active.SUMMARY_PACKAGE
