"""The networks, by name: the one list that the config's choices, the build and predict
read. Importing this starts no Keras; `build` imports the network's module when asked."""

from __future__ import annotations

import importlib

CIFAR_RESNET_DEPTHS = (20, 32, 44, 56, 110)  # He et al. 2016, Table 6
AIRBENCH_MODELS = ("airbench94", "airbench95", "airbench96", "airbench94_muon")

# name -> (module under tf_resnet9.models, builder function, its fixed arguments)
_BUILDERS = {
    "resnet9": ("resnet9", "resnet9", {}),
    **{f"resnet{d}": ("resnets", "cifar_resnet", {"depth": d}) for d in CIFAR_RESNET_DEPTHS},
    "resnet18": ("resnets", "resnet18_cifar", {}),
    # Keller Jordan's airbench networks.
    **{name: ("airbench", name, {}) for name in AIRBENCH_MODELS},
}
MODELS = tuple(_BUILDERS)
INITS = ("torch", "he_uniform", "he_normal")
ACTIVATIONS = ("relu", "celu", "gelu")


def build(name: str, **options):
    """The untrained network `name` (one of `MODELS`): normalised images -> logits.

    Args:
        name: The network.
        **options: Its builder's keyword arguments (num_classes, width, init, dtype, ...).
    """
    if name not in _BUILDERS:
        raise ValueError(f"model={name!r} is invalid: expected one of {', '.join(MODELS)}.")
    module, function, fixed = _BUILDERS[name]
    builder = getattr(importlib.import_module(f"tf_resnet9.models.{module}"), function)
    return builder(**fixed, **options)
