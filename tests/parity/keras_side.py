"""The Keras side of every comparison: `tf_resnet9` itself, on any Keras backend.

Results come back as NumPy in the reference's terms (torch names, torch layout, NCHW
activations, mean-loss units) so that they compare directly with `tests.parity.torch_side`.
"""

from __future__ import annotations

import contextlib

import keras
import numpy as np
from keras import ops

from tests.parity import name_map
from tf_resnet9 import backends
from tf_resnet9.data import augment
from tf_resnet9.models.resnet9 import resnet9
from tf_resnet9.training.steps import CompiledSteps, cross_entropy


def disable_tf32() -> None:
    """Float32 matmuls and convolutions in full float32 on any GPU (TF32 keeps 10 bits)."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_tensor_float_32_execution(False)
    elif keras.backend.backend() == "jax":
        import jax

        jax.config.update("jax_default_matmul_precision", "highest")


disable_tf32()


def float64_enabled():
    """A context in which float64 arrays stay float64 (JAX truncates them to float32 unless
    64-bit types are switched on; TensorFlow always has them)."""
    if keras.backend.backend() == "jax":
        import jax

        return jax.enable_x64(True)
    return contextlib.nullcontext()


def build(state: dict[str, np.ndarray], width: float, dtype: str = "float32") -> keras.Model:
    """`tf_resnet9.model.resnet9` at `width` holding the torch-named `state`."""
    model = resnet9(width=width, dtype=dtype)
    name_map.load_into_keras(model, state)
    return model


def _to_nchw(array: np.ndarray) -> np.ndarray:
    return array.transpose(0, 3, 1, 2) if array.ndim == 4 else array


def _probe(model: keras.Model) -> keras.Model:
    """The model with every compared layer's output as an output, keyed by reference path."""
    outputs = {
        path: model.get_layer(layer).output for path, layer in name_map.ACTIVATION_MAP.items()
    }
    return keras.Model(model.input, outputs)


def _values(variables):
    return [v.value for v in variables]


def _torch_named(variables, values) -> dict[str, np.ndarray]:
    return name_map.keras_to_torch_names(
        {v.path: ops.convert_to_numpy(value) for v, value in zip(variables, values)}
    )


def forward(model: keras.Model, images: np.ndarray, training: bool) -> dict[str, np.ndarray]:
    """Every compared layer's output (NCHW), without changing the model's BN statistics."""
    probe = _probe(model)
    outputs, _ = probe.stateless_call(
        _values(probe.trainable_variables),
        _values(probe.non_trainable_variables),
        images,
        training=training,
    )
    return {path: _to_nchw(ops.convert_to_numpy(x)) for path, x in outputs.items()}


def training_pass(model: keras.Model, images: np.ndarray, labels: np.ndarray) -> dict:
    """One forward and backward pass in training mode, as the training step does it.

    Returns:
        {"loss": mean cross-entropy, "grads": gradient of the mean loss per trainable weight,
        "stats": BN running statistics after the pass}, torch-named, torch layout.
    """

    def loss_fn(trainable, non_trainable, x, y):
        logits, non_trainable = model.stateless_call(trainable, non_trainable, x, training=True)
        return ops.mean(cross_entropy(y, logits)), non_trainable

    (loss, stats), grads = backends.value_and_grad(loss_fn)(
        _values(model.trainable_variables),
        _values(model.non_trainable_variables),
        ops.convert_to_tensor(images, model.compute_dtype),
        ops.convert_to_tensor(labels),
    )
    return {
        "loss": float(ops.convert_to_numpy(loss)),
        "grads": _torch_named(model.trainable_variables, grads),
        "stats": _torch_named(model.non_trainable_variables, stats),
    }


def augment_batch(padded_uint8: np.ndarray, draws: dict[str, np.ndarray]) -> np.ndarray:
    """`tf_resnet9.augment.augment` of reflect-padded uint8 images with the given draws."""
    params = augment.AugmentParams(
        *(draws[k].astype(np.int32) for k in augment.AugmentParams._fields)
    )
    return ops.convert_to_numpy(augment.augment(padded_uint8, params))


def train(
    model: keras.Model,
    optimizer: keras.optimizers.Optimizer,
    batches,
    velocity_attr: str = "velocities",
    jit: bool = True,
) -> dict:
    """Trains with the package's training step (`tf_resnet9.steps`), one step per call,
    XLA-compiled (`jit`) as a training run does by default on a CPU.

    Args:
        model: The model, holding the initial weights.
        optimizer: Its optimizer, following its own learning-rate schedule.
        batches: (float32 images (B, 32, 32, 3), int labels (B,)) per step.
        velocity_attr: The optimizer's list of momentum variables, one per trainable weight
            in the model's order ("momentums" in `keras.optimizers.SGD`).
        jit: Compile the step with XLA; False runs the same step function uncompiled.

    Returns:
        {"losses": mean loss of each step before its update, "state": final torch-named
        weights and BN statistics, "velocity": final torch-named momentum per weight}.
    """
    steps = CompiledSteps(model, optimizer, jit=jit)
    state = steps.initial_state()
    losses = []
    for images, labels in batches:
        state, totals = steps.train_on_batches(
            state,
            ops.convert_to_tensor(images[None]),
            ops.convert_to_tensor(np.asarray(labels, np.int32)[None]),
        )
        losses.append(float(ops.convert_to_numpy(totals.loss_sum)))  # one step: its loss
    steps.finish(state)
    velocities = getattr(optimizer, velocity_attr)
    return {
        "losses": np.array(losses),
        "state": name_map.state_from_keras(model),
        "velocity": _torch_named(model.trainable_variables, [v.value for v in velocities]),
    }
