"""The one map between PyTorch reference parameters and Keras variables, with their layouts.

Keras layer names are the reference's module paths with "_" for ".", so every entry pairs
`<path>.<torch name>` with `<path with _>/<keras name>`. Arrays cross in both directions as
NumPy, keyed by the torch name (torch's `state_dict` keys), in torch's layout:

    conv   torch (out, in, kh, kw)   <->  Keras (kh, kw, in, out)
    dense  torch (out, in)           <->  Keras (in, out)
    BN     (c,) on both sides: weight/gamma, bias/beta, running_mean/moving_mean,
           running_var/moving_variance

BatchNorm2d's `num_batches_tracked` has no Keras counterpart and is not mapped: with a fixed
momentum (0.1) torch never reads it.
"""

from __future__ import annotations

import numpy as np
from keras import ops

# Module paths of the reference's conv -> BN blocks, in network order.
CONV_BN_BLOCKS = (
    "prep",
    "layer1",
    "layer1.residual.res1",
    "layer1.residual.res2",
    "layer2",
    "layer3",
    "layer3.residual.res1",
    "layer3.residual.res2",
)
BN_PATHS = tuple(f"{block}.bn" for block in CONV_BN_BLOCKS)
# torch name in a BatchNorm2d -> Keras name in a BatchNormalization.
BN_NAMES = {
    "weight": "gamma",
    "bias": "beta",
    "running_mean": "moving_mean",
    "running_var": "moving_variance",
}
CONV, DENSE, VECTOR = "conv", "dense", "vector"


def _build_map() -> dict[str, tuple[str, str]]:
    mapping = {}
    for block in CONV_BN_BLOCKS:
        keras_block = block.replace(".", "_")
        mapping[f"{block}.conv.weight"] = (f"{keras_block}_conv/kernel", CONV)
        for torch_name, keras_name in BN_NAMES.items():
            mapping[f"{block}.bn.{torch_name}"] = (f"{keras_block}_bn/{keras_name}", VECTOR)
    mapping["linear.weight"] = ("linear/kernel", DENSE)
    return mapping


# torch state_dict key -> (Keras variable path, layout). 41 entries: 9 kernels, 8 x 4 BN.
NAME_MAP: dict[str, tuple[str, str]] = _build_map()
KERAS_TO_TORCH = {keras_path: torch_name for torch_name, (keras_path, _) in NAME_MAP.items()}


def _build_activation_map() -> dict[str, str]:
    names = {}
    for block in CONV_BN_BLOCKS:  # network order
        keras_block = block.replace(".", "_")
        for part in ("conv", "bn", "relu"):
            names[f"{block}.{part}"] = f"{keras_block}_{part}"
        if block in ("layer1", "layer2", "layer3"):  # pooled after the ReLU
            names[f"{block}.pool"] = f"{block}_pool"
        if block.endswith(".res2"):  # its output closes the residual: x + res2(res1(x))
            residual = block.removesuffix(".res2")
            names[residual] = f"{residual.replace('.', '_')}_add"
    names.update({"pool": "pool", "linear": "linear", "logits": "logits"})
    return names


# Reference module path -> Keras layer name of every output the forward test compares, in
# network order. "logits" stands for the reference model's own output (linear x 0.125).
ACTIVATION_MAP: dict[str, str] = _build_activation_map()


# Axis orders from torch's layout to Keras': conv (out, in, kh, kw) -> (kh, kw, in, out),
# dense (out, in) -> (in, out); vectors (BatchNorm, biases) are the same in both.
TO_KERAS_AXES = {CONV: (2, 3, 1, 0), DENSE: (1, 0)}


def to_keras_layout(array: np.ndarray, layout: str) -> np.ndarray:
    axes = TO_KERAS_AXES.get(layout)
    return array if axes is None else np.ascontiguousarray(array.transpose(axes))


def to_torch_layout(array: np.ndarray, layout: str) -> np.ndarray:
    axes = TO_KERAS_AXES.get(layout)
    return array if axes is None else np.ascontiguousarray(array.transpose(np.argsort(axes)))


def keras_variables(model) -> dict[str, object]:
    """Keras variables of `model` by path (`layer1_conv/kernel`), checked against the map."""
    variables = {v.path: v for v in model.variables}
    if set(variables) != set(KERAS_TO_TORCH):
        raise ValueError(
            "the Keras model and the name map disagree: unmapped variables "
            f"{sorted(set(variables) - set(KERAS_TO_TORCH))}, missing variables "
            f"{sorted(set(KERAS_TO_TORCH) - set(variables))}."
        )
    return variables


def load_into_keras(model, state: dict[str, np.ndarray]) -> None:
    """Assigns torch-named, torch-layout arrays (a whole state dict) to the Keras model."""
    missing = set(NAME_MAP) - set(state)
    if missing:
        raise ValueError(f"state is missing {sorted(missing)}.")
    variables = keras_variables(model)
    for torch_name, (keras_path, layout) in NAME_MAP.items():
        variable = variables[keras_path]
        value = to_keras_layout(np.asarray(state[torch_name], variable.dtype), layout)
        if tuple(variable.shape) != value.shape:
            raise ValueError(
                f"{torch_name} -> {keras_path}: shape {value.shape} does not fit "
                f"{tuple(variable.shape)}."
            )
        variable.assign(value)


def keras_to_torch_names(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Keras-path-keyed arrays in Keras layout -> torch-named arrays in torch layout."""
    return {
        KERAS_TO_TORCH[path]: to_torch_layout(np.asarray(value), NAME_MAP[KERAS_TO_TORCH[path]][1])
        for path, value in arrays.items()
    }


def state_from_keras(model) -> dict[str, np.ndarray]:
    """The Keras model's weights and BN statistics as a torch-named, torch-layout state."""
    variables = keras_variables(model)
    return keras_to_torch_names({path: ops.convert_to_numpy(v) for path, v in variables.items()})


def torch_state(module) -> dict[str, np.ndarray]:
    """The mapped entries of a torch module's state_dict, as NumPy (torch layout)."""
    state = module.state_dict()
    return {name: state[name].detach().cpu().numpy().copy() for name in NAME_MAP}


def load_into_torch(module, state: dict[str, np.ndarray]) -> None:
    """Loads torch-named NumPy arrays into the module (every mapped entry, nothing else)."""
    import torch  # here, not above: the rest of the map serves runs without torch

    tensors = {
        name: torch.from_numpy(np.asarray(state[name], np.float32).copy()) for name in NAME_MAP
    }
    result = module.load_state_dict(tensors, strict=False)
    unexpected = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    if unexpected or result.unexpected_keys:
        raise ValueError(
            f"state does not fit the module: missing {unexpected}, "
            f"unexpected {result.unexpected_keys}."
        )
