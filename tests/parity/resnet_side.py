"""Test 8: the six CIFAR ResNets (`tf_resnet9.cifar_resnet`, `tf_resnet9.resnet18_cifar`)
against the reference's (`reference.torch_resnets`), on both sides.

Each network at full width gets weights drawn with NumPy (PyTorch's init for the kernels,
random BN parameters and statistics, as `cases.perturbed_state` does for ResNet9), copied
to both frameworks through `tests.parity.resnet_map` (the "split" reference: the channel
permutation of option A is applied on the way), and one batch of 4 images. Results are flat
dicts of NumPy arrays in the reference's terms (torch names, NCHW, the reference's channel
order) under "<model>:<quantity>[:<name>]":

    <model>:eval:<path>, <model>:train:<path>   the stem's BN, every block, the logits
                                                ("linear") in inference and training mode
    <model>:loss                                mean cross-entropy in training mode
    <model>:grads:<torch name>                  its gradient, per trainable weight
    <model>:planted_eval:linear, ...train...    (Keras only) the logits of a copy whose
                                                stride-2 convolutions pad as "same" does

Only the package's public API is used (`tf_resnet9.cifar_resnet`, `tf_resnet9.resnet18_cifar`).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

import tf_resnet9
from tests.parity import cases, resnet_map

MODELS = resnet_map.MODELS
SEEDS = {"state": 30, "images": 31, "labels": 32}  # any values; fixed for the fixtures
ZEROS = "split"  # the reference's option A: Idelbayev's, the one a permutation must undo
# The planted bug: a copy of this one with Keras' "same" padding in its stride-2
# convolutions (one model: each copy is another build, ~1 s).
PLANTED = ("resnet20",)
BN_RANGES = {  # as cases.perturbed_state: gamma, beta, mean and variance all exercised
    "weight": (0.5, 1.5),
    "bias": (-0.5, 0.5),
    "running_mean": (-0.5, 0.5),
    "running_var": (0.5, 2.0),
}


def state(model: str, seed: int) -> dict[str, np.ndarray]:
    """Torch-named float32 weights of `model`: kernels, the linear weight and its bias
    U(+-1/sqrt(fan_in)) (PyTorch's Conv2d and Linear init), BN parameters and statistics
    uniform in `BN_RANGES`."""
    rng = np.random.default_rng(seed)
    result = {}
    entries = resnet_map.entries(model)
    fan_in = entries["linear.weight"].shape[1]
    for name, entry in entries.items():
        if entry.layout == resnet_map.VECTOR and not name.startswith("linear"):
            low, high = BN_RANGES[name.rsplit(".", 1)[1]]
        else:
            bound = 1.0 / np.sqrt(cases.fan_in(entry.shape) if len(entry.shape) > 1 else fan_in)
            low, high = -bound, bound
        result[name] = rng.uniform(low, high, entry.shape).astype(np.float32)
    return result


def inputs() -> tuple[np.ndarray, np.ndarray]:
    """The batch every model sees: float32 normalised NHWC noise images, int32 labels."""
    images = cases.random_images(cases.RESNET_BATCH, SEEDS["images"])
    return cases.normalise(images), cases.random_labels(cases.RESNET_BATCH, SEEDS["labels"])


def model_state(model: str) -> dict[str, np.ndarray]:
    return state(model, SEEDS["state"] + MODELS.index(model))


def _flat(model: str, quantity: str, arrays: dict) -> dict[str, np.ndarray]:
    return {f"{model}:{quantity}:{name}": np.asarray(value) for name, value in arrays.items()}


# The Keras side.


def build_keras(model: str, weights: dict[str, np.ndarray]) -> keras.Model:
    """The package's `model` at full width holding the torch-named `weights`."""
    if model == "resnet18":
        network = tf_resnet9.resnet18_cifar()
    else:
        network = tf_resnet9.cifar_resnet(int(model.removeprefix("resnet")))
    variables = {v.path: v for v in network.variables}
    entries = resnet_map.entries(model)
    mapped = {entry.keras_path for entry in entries.values()}
    if mapped != set(variables):
        raise ValueError(
            f"{model}: the Keras model and the map disagree: unmapped "
            f"{sorted(set(variables) - mapped)}, missing {sorted(mapped - set(variables))}."
        )
    orders = resnet_map.channel_orders(model, ZEROS)
    for name, entry in entries.items():
        variables[entry.keras_path].assign(resnet_map.to_keras(weights[name], entry, orders))
    return network


def _value_and_grad(fn):
    """fn(trainable) -> (loss, aux) as ((loss, aux), gradients), on TensorFlow or JAX."""
    if keras.backend.backend() == "jax":
        import jax

        # Op by op, as on TensorFlow: XLA's compile time grows with depth (ResNet-110's
        # forward and backward: 58 s), while eager ops, compiled once per shape, are
        # reused by every block and every depth (ResNet-32 to 110: 2.2 to 6.5 s each).
        return jax.value_and_grad(fn, has_aux=True)
    import tensorflow as tf

    def value_and_grad(trainable):
        with tf.GradientTape() as tape:
            tape.watch(trainable)
            loss, aux = fn(trainable)
        return (loss, aux), tape.gradient(loss, trainable)

    return value_and_grad


def _probe(network: keras.Model, model: str) -> keras.Model:
    """`network` with every compared layer's output as an output, keyed by reference path."""
    layers = resnet_map.activations(model)
    outputs = {path: network.get_layer(layer).output for path, (layer, _) in layers.items()}
    return keras.Model(network.input, outputs)


def _to_torch_outputs(outputs: dict, model: str, orders: dict) -> dict[str, np.ndarray]:
    stages = {path: stage for path, (_, stage) in resnet_map.activations(model).items()}
    return {
        path: resnet_map.activation_to_torch(ops.convert_to_numpy(x), stages[path], orders)
        for path, x in outputs.items()
    }


def keras_run(network: keras.Model, model: str, images, labels) -> dict[str, np.ndarray]:
    """Outputs in inference and training mode, the mean loss and its gradients (training
    mode), without changing the network's BN statistics."""
    probe = _probe(network, model)
    trainable = [v.value for v in probe.trainable_variables]
    fixed = [v.value for v in probe.non_trainable_variables]
    x, y = ops.convert_to_tensor(images), ops.convert_to_tensor(labels)

    evaluated, _ = probe.stateless_call(trainable, fixed, x, training=False)

    def loss_fn(trainable):
        outputs, _ = probe.stateless_call(trainable, fixed, x, training=True)
        losses = keras.losses.sparse_categorical_crossentropy(y, outputs["linear"], True)
        return ops.mean(losses), outputs

    (loss, trained), grads = _value_and_grad(loss_fn)(trainable)
    orders = resnet_map.channel_orders(model, ZEROS)
    return (
        _flat(model, "eval", _to_torch_outputs(evaluated, model, orders))
        | _flat(model, "train", _to_torch_outputs(trained, model, orders))
        | {f"{model}:loss": np.float64(ops.convert_to_numpy(loss))}
        | _flat(model, "grads", _to_torch_grads(probe.trainable_variables, grads, model, orders))
    )


def _to_torch_grads(variables, grads, model: str, orders: dict) -> dict[str, np.ndarray]:
    """Gradients of the Keras variables, torch-named, in torch's layout and channel order."""
    by_path = {entry.keras_path: (name, entry) for name, entry in resnet_map.entries(model).items()}
    result = {}
    for variable, grad in zip(variables, grads):
        name, entry = by_path[variable.path]
        result[name] = resnet_map.to_torch(ops.convert_to_numpy(grad), entry, orders)
    return result


def same_padding_copy(network: keras.Model) -> keras.Model:
    """The planted bug: `network` with each stride-2 3x3 convolution back on Keras' "same"
    padding (0 before, 1 after: windows centred on odd pixels) and its `ZeroPadding2D` an
    identity; the weights copied layer by layer by name."""

    def clone(layer):
        if isinstance(layer, keras.layers.ZeroPadding2D):
            return keras.layers.Identity(name=layer.name)
        config = layer.get_config()
        if isinstance(layer, keras.layers.Conv2D) and tuple(layer.strides) != (1, 1):
            if tuple(layer.kernel_size) != (1, 1):  # a 1x1 projection needs no padding
                config["padding"] = "same"
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(network, clone_function=clone)
    for layer in copy.layers:
        if layer.weights:
            layer.set_weights(network.get_layer(layer.name).get_weights())
    return copy


def planted_logits(network: keras.Model) -> dict[str, np.ndarray]:
    """The same-padding copy's logits in inference and training mode."""
    copy = same_padding_copy(network)
    images, _ = inputs()
    return {
        f"planted_{mode}": ops.convert_to_numpy(copy(images, training=mode == "train"))
        for mode in ("eval", "train")
    }


def keras_resnets() -> dict[str, np.ndarray]:
    """Every model's results, and the planted bug's logits for `PLANTED`."""
    images, labels = inputs()
    results = {}
    for model in MODELS:
        network = build_keras(model, model_state(model))
        results |= keras_run(network, model, images, labels)
        if model in PLANTED:
            for quantity, logits in planted_logits(network).items():
                results[f"{model}:{quantity}:linear"] = logits
    return results


# The reference's side (needs torch).


def torch_run(model: str, images, labels) -> dict[str, np.ndarray]:
    """`keras_run`'s quantities from the reference, built with the same weights."""
    import torch
    import torch.nn.functional as F

    from reference import torch_resnets

    network = torch_resnets.build(model, zeros=ZEROS)
    weights = {k: torch.from_numpy(v) for k, v in model_state(model).items()}
    result = network.load_state_dict(weights, strict=False)
    if result.unexpected_keys or any(
        not k.endswith("num_batches_tracked") for k in result.missing_keys
    ):
        raise ValueError(f"{model}: the state does not fit the reference: {result}")
    modules = dict(network.named_modules())
    outputs = {}
    handles = [
        modules[path].register_forward_hook(
            lambda module, args, out, path=path: outputs.__setitem__(path, out.detach().clone())
        )
        for path in resnet_map.activations(model)
    ]
    x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
    network.eval()  # first: a training-mode pass moves the running statistics
    with torch.no_grad():
        network(x)
    evaluated = {path: out.numpy() for path, out in outputs.items()}
    network.train()
    loss = F.cross_entropy(network(x), torch.from_numpy(labels.astype(np.int64)))
    loss.backward()
    for handle in handles:
        handle.remove()
    return (
        _flat(model, "eval", evaluated)
        | _flat(model, "train", {path: out.numpy() for path, out in outputs.items()})
        | {f"{model}:loss": np.float64(loss.item())}
        | _flat(model, "grads", {n: p.grad.numpy() for n, p in network.named_parameters()})
    )


def torch_resnets() -> dict[str, np.ndarray]:
    """`keras_resnets`' quantities (no planted copy) from the reference."""
    import torch

    from reference import torch_resnets

    torch_resnets.disable_tf32()
    # One thread, as tests.parity.torch_side: OpenMP's spin-waiting on two shared cores.
    torch.set_num_threads(1)
    images, labels = inputs()
    results = {}
    for model in MODELS:
        results |= torch_run(model, images, labels)
    return results
