"""The classic CIFAR ResNets, as Keras functional models with PyTorch-matched BatchNorm.

- `cifar_resnet(depth)`: He et al. 2016 ("Deep Residual Learning for Image Recognition"),
  Section 4.2: depth 6n+2, a 3x3 stem of 16 filters, three stages of n basic blocks with
  16, 32 and 64 filters, the first convolution of stages 2 and 3 with stride 2, option A
  shortcuts (identity; where the shape changes, stride-2 subsampling and zero channels,
  no parameters), global average pooling, a dense layer with bias.
- `resnet18_cifar()`: ResNet-18 as CIFAR codebases adapt it: a 3x3 stride-1 stem of 64
  filters and no max pool, stages of two basic blocks with 64, 128, 256 and 512 filters,
  1x1 projection shortcuts with BatchNorm where the shape changes, global average
  pooling, a dense layer with bias.

Layer names start with their stage ("stem", "stage1", ..., "dense"), the layer groups whose
gradient norms a run logs (`tf_resnet9.steps.layer_group`).
"""

from __future__ import annotations

import keras
from keras import layers

from tf_resnet9.model import (
    BN_EPSILON,
    BN_MOMENTUM,
    IMAGE_SHAPE,
    check_options,
    kernel_initializer,
)


@keras.saving.register_keras_serializable(package="tf_resnet9")
class ZeroChannels(layers.Layer):
    """Appends `extra` channels of zeros: option A's shortcut into a wider stage."""

    def __init__(self, extra: int, **kwargs):
        super().__init__(**kwargs)
        self.extra = extra

    def call(self, x):
        return keras.ops.pad(x, [[0, 0], [0, 0], [0, 0], [0, self.extra]])

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], input_shape[-1] + self.extra)

    def get_config(self):
        return super().get_config() | {"extra": self.extra}


def _conv_bn(x, filters: int, kernel: int, stride: int, init: str, name: str, dtype):
    if stride > 1 and kernel > 1:
        # PyTorch's padding=kernel//2 on both sides. Keras' "same" with stride 2 on an even
        # size pads 0 before and 1 after, which centres the windows on odd pixels, one pixel
        # off the shortcut's x[::2, ::2] and off every PyTorch CIFAR ResNet.
        x = layers.ZeroPadding2D(kernel // 2, dtype=dtype, name=f"{name}_pad")(x)
    x = layers.Conv2D(
        filters,
        kernel,
        strides=stride,
        padding="same" if stride == 1 else "valid",
        use_bias=False,
        kernel_initializer=kernel_initializer(init),  # a fresh one per layer
        dtype=dtype,
        name=f"{name}_conv",
    )(x)
    return layers.BatchNormalization(
        momentum=BN_MOMENTUM, epsilon=BN_EPSILON, dtype=dtype, name=f"{name}_bn"
    )(x)


def _basic_block(x, filters: int, stride: int, shortcut: str, init: str, name: str, dtype):
    """relu(bn(conv(relu(bn(conv(x))))) + shortcut(x)); `shortcut` is "A" or "projection"."""
    y = _conv_bn(x, filters, 3, stride, init, f"{name}_1", dtype)
    y = layers.ReLU(dtype=dtype, name=f"{name}_1_relu")(y)
    y = _conv_bn(y, filters, 3, 1, init, f"{name}_2", dtype)
    if stride != 1 or x.shape[-1] != filters:
        if shortcut == "A":
            x = layers.MaxPooling2D(1, strides=stride, dtype=dtype, name=f"{name}_subsample")(x)
            x = ZeroChannels(filters - x.shape[-1], dtype=dtype, name=f"{name}_zeros")(x)
        else:
            x = _conv_bn(x, filters, 1, stride, init, f"{name}_shortcut", dtype)
    x = layers.Add(dtype=dtype, name=f"{name}_add")([x, y])
    return layers.ReLU(dtype=dtype, name=f"{name}_relu")(x)


def _resnet(
    stem, stages, blocks, shortcut, name, *, num_classes, init, dtype, width, logit_scale
) -> keras.Model:
    check_options(num_classes, width, init, logit_scale)

    def channels(c):
        return max(1, round(c * width))

    images = keras.Input(IMAGE_SHAPE, name="images")
    x = _conv_bn(images, channels(stem), 3, 1, init, "stem", dtype)
    x = layers.ReLU(dtype=dtype, name="stem_relu")(x)
    for s, filters in enumerate(stages, start=1):
        for b in range(1, blocks + 1):
            stride = 2 if s > 1 and b == 1 else 1
            x = _basic_block(
                x, channels(filters), stride, shortcut, init, f"stage{s}_block{b}", dtype
            )
    x = layers.GlobalAveragePooling2D(dtype=dtype, name="pool")(x)
    logits = layers.Dense(
        num_classes, kernel_initializer=kernel_initializer(init), dtype="float32", name="dense"
    )(x)  # float32 logits: the loss of bf16 logits loses precision
    if logit_scale != 1:  # the papers' models have none: no layer unless asked for
        logits = layers.Rescaling(logit_scale, dtype="float32", name="logits")(logits)
    return keras.Model(images, logits, name=name)


def cifar_resnet(
    depth: int,
    num_classes: int = 10,
    init: str = "he_normal",
    dtype: str | None = None,
    width: float = 1.0,
    logit_scale: float = 1.0,
) -> keras.Model:
    """He et al.'s CIFAR ResNet of `depth` = 6n + 2 layers (20, 32, 44, 56, 110, ...).

    Args:
        depth: Weighted layers; 6n + 2 for n >= 1.
        num_classes: Outputs of the dense layer.
        init: Conv and dense kernel initialisation (the paper: He-normal).
        dtype: Keras dtype policy of every layer but the logits (float32).
        width: Multiplies every channel count (16/32/64); below 1 for quick tests.
        logit_scale: Constant multiplying the logits (1: none, as in the paper).

    Returns:
        Normalised images (B, 32, 32, 3) -> logits (B, num_classes). 269,722 trainable
        parameters at depth 20, 853,018 at depth 56 (10 classes, width 1).
    """
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"depth={depth!r} is invalid: expected 6n + 2 (20, 32, 44, 56, 110).")
    return _resnet(
        16,
        (16, 32, 64),
        (depth - 2) // 6,
        "A",
        f"resnet{depth}",
        num_classes=num_classes,
        init=init,
        dtype=dtype,
        width=width,
        logit_scale=logit_scale,
    )


def resnet18_cifar(
    num_classes: int = 10,
    init: str = "torch",
    dtype: str | None = None,
    width: float = 1.0,
    logit_scale: float = 1.0,
) -> keras.Model:
    """ResNet-18 for 32x32 images: 11,173,962 trainable parameters (10 classes, width 1).

    Args:
        num_classes: Outputs of the dense layer.
        init: Conv and dense kernel initialisation ("torch": PyTorch's default, as the
            PyTorch codebases that train it use).
        dtype: Keras dtype policy of every layer but the logits (float32).
        width: Multiplies every channel count (64/128/256/512); below 1 for quick tests.
        logit_scale: Constant multiplying the logits (1: none).
    """
    return _resnet(
        64,
        (64, 128, 256, 512),
        2,
        "projection",
        "resnet18",
        num_classes=num_classes,
        init=init,
        dtype=dtype,
        width=width,
        logit_scale=logit_scale,
    )
