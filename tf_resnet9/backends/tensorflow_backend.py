"""The backend functions on TensorFlow (see tf_resnet9.backends)."""

import tensorflow as tf


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
