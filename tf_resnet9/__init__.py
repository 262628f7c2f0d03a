"""tf_resnet9: David Page's ResNet9 CIFAR-10 speed-run recipe in Keras.

The public API is imported on first use, so that `import tf_resnet9` (and the CLI's --help)
does not start TensorFlow.
"""

import importlib

_EXPORTS = {
    "resnet9": "tf_resnet9.model",
    "cifar_resnet": "tf_resnet9.resnets",
    "resnet18_cifar": "tf_resnet9.resnets",
    "NesterovSGD": "tf_resnet9.optimizer",
    "MomentumSGD": "tf_resnet9.optimizer",
    "AdamL2": "tf_resnet9.optimizer",
    "ReduceLROnPlateau": "tf_resnet9.schedule",
    "RECIPES": "tf_resnet9.recipes",
    "PiecewiseLinear": "tf_resnet9.schedule",
    "multi_step": "tf_resnet9.schedule",
    "cosine": "tf_resnet9.schedule",
    "load_cifar10": "tf_resnet9.data",
    "load_dataset": "tf_resnet9.data",
    "class_names": "tf_resnet9.data",
    "inference_model": "tf_resnet9.export",
    "load_model": "tf_resnet9.export",
    "preprocess": "tf_resnet9.augment",
    "TrainConfig": "tf_resnet9.config",
    "train_and_evaluate": "tf_resnet9.experiment",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'tf_resnet9' has no attribute {name!r}")


def __dir__():
    return __all__
