"""The map between the airbench reference's parameters (`reference.torch_airbench`) and the
Keras networks' variables (`tf_resnet9.models.airbench`), both ways, with their layouts.

Keras layer names are the reference's module paths with "_" for "." (`block1.norm1` <->
`block1_norm1`); the variable names map as in `tests.parity.name_map` (kernel/weight,
beta/bias, moving_mean/running_mean, moving_variance/running_var; the whitening layer's
bias/bias). BatchNorm's weight, frozen at 1 in airbench, has no Keras counterpart (its
BatchNormalization has scale=False) and is not mapped; nor are BN's counters.

Shapes come from NumPy alone (`shapes`), so the inputs of the parity tests are made without
torch or Keras.
"""

from __future__ import annotations

import numpy as np
from keras import ops

from tests.parity.name_map import CONV, DENSE, VECTOR, to_keras_layout, to_torch_layout

NUM_CLASSES = 10
WHITEN_WIDTH = 24
# The networks the parity tests build: (module of tf_resnet9.models.airbench, widths at 1.0,
# convolutions per block, logit scale (None: 1 / the last width), builder options).
NETWORKS = {
    "airbench94": ((64, 256, 256), 2, 1 / 9, {}),
    "airbench95": ((128, 384, 384), 2, 1 / 9, {}),
    "airbench96": ((128, 384, 512), 3, 1 / 9, {}),
    "airbench94_muon": ((64, 256, 256), 2, None, {"logit_scale": None}),
}
BUILDERS = {
    "airbench94": "airbench94",
    "airbench95": "airbench95",
    "airbench96": "airbench96",
    "airbench94_muon": "airbench94",
}
_LEAVES = {
    "weight": "kernel",
    "bias": "beta",
    "running_mean": "moving_mean",
    "running_var": "moving_variance",
}


def widths(network: str, width: float) -> tuple[int, int, int]:
    return tuple(max(1, round(c * width)) for c in NETWORKS[network][0])


def shapes(network: str, width: float) -> dict[str, tuple[int, ...]]:
    """Torch name -> torch-layout shape of every entry of the reference's state dict (BN
    counters aside), BN weights included."""
    result = {"whiten.weight": (WHITEN_WIDTH, 3, 2, 2), "whiten.bias": (WHITEN_WIDTH,)}
    convs = NETWORKS[network][1]
    c_in = WHITEN_WIDTH
    for b, c_out in enumerate(widths(network, width), start=1):
        for i in range(1, convs + 1):
            result[f"block{b}.conv{i}.weight"] = (c_out, c_in if i == 1 else c_out, 3, 3)
            for leaf in ("weight", "bias", "running_mean", "running_var"):
                result[f"block{b}.norm{i}.{leaf}"] = (c_out,)
        c_in = c_out
    result["head.weight"] = (NUM_CLASSES, c_in)
    return result


def entry(torch_name: str) -> tuple[str, str] | None:
    """(Keras variable path, layout) of a torch name, or None for a BN weight (unmapped)."""
    module, _, leaf = torch_name.rpartition(".")
    layer = module.replace(".", "_")
    if module == "whiten":
        return ("whiten/kernel", CONV) if leaf == "weight" else ("whiten/bias", VECTOR)
    if module == "head":
        return "head/kernel", DENSE
    if ".conv" in module:
        return f"{layer}/kernel", CONV
    if leaf == "weight":
        return None  # BN's frozen weight
    return f"{layer}/{_LEAVES[leaf]}", VECTOR


def keras_to_torch(path: str) -> tuple[str, str]:
    """(torch name, layout) of a Keras variable path."""
    layer, leaf = path.split("/")
    module = layer.replace("_", ".")
    if layer == "whiten":
        return ("whiten.weight", CONV) if leaf == "kernel" else ("whiten.bias", VECTOR)
    if layer == "head":
        return "head.weight", DENSE
    if leaf == "kernel":
        return f"{module}.weight", CONV
    torch_leaf = {v: k for k, v in _LEAVES.items()}[leaf]
    return f"{module}.{torch_leaf}", VECTOR


def load_into_keras(model, state: dict[str, np.ndarray]) -> None:
    """Assigns a torch-named state (every mapped entry) to the Keras model's variables."""
    variables = {v.path: v for v in model.variables}
    mapped = {entry(name): name for name in state if entry(name) is not None}
    if {path for path, _ in mapped} != set(variables):
        raise ValueError(
            f"state and model disagree: {sorted({p for p, _ in mapped} ^ set(variables))}."
        )
    for (path, layout), name in mapped.items():
        value = to_keras_layout(np.asarray(state[name]), layout)
        variables[path].assign(value.astype(variables[path].dtype))


def torch_named(paths_and_values) -> dict[str, np.ndarray]:
    """(Keras path, value) pairs -> torch-named, torch-layout NumPy arrays."""
    result = {}
    for path, value in paths_and_values:
        name, layout = keras_to_torch(path)
        result[name] = to_torch_layout(np.asarray(ops.convert_to_numpy(value)), layout)
    return result


def state_from_keras(model) -> dict[str, np.ndarray]:
    """The Keras model's variables, torch-named, torch layout."""
    return torch_named((v.path, v.value) for v in model.variables)
