"""tf_resnet9: David Page's ResNet9 CIFAR-10 speed-run recipe in Keras.

The public API is imported on first use, so that `import tf_resnet9` (and the CLI's --help)
does not start TensorFlow.
"""

import importlib

_EXPORTS = {
    "resnet9": "tf_resnet9.models.resnet9",
    "cifar_resnet": "tf_resnet9.models.resnets",
    "resnet18_cifar": "tf_resnet9.models.resnets",
    "NesterovSGD": "tf_resnet9.training.optimizers",
    "MomentumSGD": "tf_resnet9.training.optimizers",
    "AdamL2": "tf_resnet9.training.optimizers",
    "LearningRate": "tf_resnet9.training.schedules",
    "RECIPES": "tf_resnet9.config.recipes",
    "PiecewiseLinear": "tf_resnet9.training.schedules",
    "multi_step": "tf_resnet9.training.schedules",
    "cosine": "tf_resnet9.training.schedules",
    "load_cifar10": "tf_resnet9.data.cifar",
    "load_dataset": "tf_resnet9.data.cifar",
    "class_names": "tf_resnet9.data.cifar",
    "inference_model": "tf_resnet9.outputs.export",
    "load_model": "tf_resnet9.outputs.export",
    "preprocess": "tf_resnet9.data.augment",
    "TrainConfig": "tf_resnet9.config",
    "RunResults": "tf_resnet9.outputs.results",
    "train_and_evaluate": "tf_resnet9.experiment",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'tf_resnet9' has no attribute {name!r}")


def __dir__():
    return __all__
