"""The classic CIFAR ResNets, as Keras functional models with PyTorch-matched BatchNorm.

- `cifar_resnet(depth)`: He et al. 2016 ("Deep Residual Learning for Image Recognition"),
  Section 4.2: depth 6n+2, a 3x3 stem of 16 filters, three stages of n basic blocks with
  16, 32 and 64 filters, the first convolution of stages 2 and 3 with stride 2, option A
  shortcuts (identity; where the shape changes, stride-2 subsampling x[::2, ::2] and zero
  channels, no parameters), global average pooling, a dense layer with bias. The zero
  channels are appended after the subsampled ones; PyTorch code often puts half before
  and half after (Idelbayev's): a fixed permutation of the channels, the same network
  (`tf_resnet9.convert_torch` maps one to the other).
- `resnet18_cifar()`: ResNet-18 as CIFAR codebases adapt it: a 3x3 stride-1 stem of 64
  filters and no max pool, stages of two basic blocks with 64, 128, 256 and 512 filters,
  1x1 projection shortcuts with BatchNorm where the shape changes, global average
  pooling, a dense layer with bias.

Every strided convolution pads 1 pixel on each side, as PyTorch's padding=1 does
(`tf_resnet9.models.layers.conv_bn`). Layer names start with their stage ("stem",
"stage1", ..., "dense"), the layer groups whose gradient norms a run logs.
"""

from __future__ import annotations

import keras
from keras import layers

from tf_resnet9.data.cifar import IMAGE_SHAPE
from tf_resnet9.models.layers import (
    LayerFactory,
    ZeroChannels,
    activation,
    check_options,
    conv_bn,
    kernel_initializer,
    scaled,
)


def _basic_block(x, filters: int, stride: int, shortcut: str, name: str, **block):
    """relu(bn(conv(relu(bn(conv(x))))) + shortcut(x)); `shortcut` is "A" or "projection"."""
    y = conv_bn(x, filters, f"{name}_1", stride=stride, act=activation(), **block)
    y = conv_bn(y, filters, f"{name}_2", **block)
    if stride != 1 or x.shape[-1] != filters:
        if shortcut == "A":
            dtype = block["dtype"]
            x = layers.MaxPooling2D(1, strides=stride, dtype=dtype, name=f"{name}_subsample")(x)
            x = ZeroChannels(filters - x.shape[-1], dtype=dtype, name=f"{name}_zeros")(x)
        else:
            x = conv_bn(x, filters, f"{name}_shortcut", kernel=1, stride=stride, **block)
    x = layers.Add(dtype=block["dtype"], name=f"{name}_add")([x, y])
    return activation()(name, block["dtype"])(x)


def _resnet(
    stem,
    stages,
    blocks,
    shortcut,
    name,
    *,
    num_classes,
    init,
    dtype,
    width,
    logit_scale,
    image_size,
    stem_kind="cifar",
    norm=None,
) -> keras.Model:
    check_options(num_classes, width, init, logit_scale)
    block = dict(init=init, dtype=dtype, norm=norm)
    images = keras.Input((image_size, image_size, IMAGE_SHAPE[2]), name="images")
    if stem_kind == "imagenet":
        # The ImageNet ResNet's: a 7x7 stride-2 convolution and a 3x3 stride-2 max pool,
        # padded 3 and 1 on each side as PyTorch's: a quarter of the side for the blocks.
        x = conv_bn(
            images, scaled(stem, width), "stem", kernel=7, stride=2, act=activation(), **block
        )
        x = layers.ZeroPadding2D(1, dtype=dtype, name="stem_pool_pad")(x)
        x = layers.MaxPooling2D(3, strides=2, dtype=dtype, name="stem_pool")(x)
    elif stem_kind == "cifar":
        x = conv_bn(images, scaled(stem, width), "stem", act=activation(), **block)
    else:
        raise ValueError(f"stem={stem_kind!r} is invalid: expected 'cifar' or 'imagenet'.")
    for s, filters in enumerate(stages, start=1):
        for b in range(1, blocks + 1):
            stride = 2 if s > 1 and b == 1 else 1
            x = _basic_block(
                x, scaled(filters, width), stride, shortcut, f"stage{s}_block{b}", **block
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
    image_size: int = IMAGE_SHAPE[0],
    norm: LayerFactory | None = None,
) -> keras.Model:
    """He et al.'s CIFAR ResNet of `depth` = 6n + 2 layers (20, 32, 44, 56, 110, ...).

    Args:
        depth: Weighted layers; 6n + 2 for n >= 1.
        num_classes: Outputs of the dense layer.
        init: Conv and dense kernel initialisation (the paper: He-normal).
        dtype: Keras dtype policy of every layer but the logits (float32).
        width: Multiplies every channel count (16/32/64); below 1 for quick tests.
        logit_scale: Constant multiplying the logits (1: none, as in the paper).
        image_size: The images' side: the global average pool takes what is left of it.
        norm: BatchNorm's factory (`tf_resnet9.models.layers.batch_norm`); None: PyTorch's.

    Returns:
        Normalised images (B, S, S, 3) -> logits (B, num_classes). 269,722 trainable
        parameters at depth 20, 853,018 at depth 56 (10 classes, width 1).
    """
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"depth={depth!r} is invalid: expected 6n + 2 (20, 32, 44, 56, 110).")
    options = dict(num_classes=num_classes, init=init, dtype=dtype, width=width, norm=norm)
    return _resnet(
        16,
        (16, 32, 64),
        (depth - 2) // 6,
        "A",
        f"resnet{depth}",
        logit_scale=logit_scale,
        image_size=image_size,
        **options,
    )


def resnet18_cifar(
    num_classes: int = 10,
    init: str = "torch",
    dtype: str | None = None,
    width: float = 1.0,
    logit_scale: float = 1.0,
    image_size: int = IMAGE_SHAPE[0],
    stem: str = "cifar",
    norm: LayerFactory | None = None,
) -> keras.Model:
    """ResNet-18 as CIFAR code adapts it (for 32x32 images: 11,173,962 trainable parameters
    with 10 classes at width 1), or with the ImageNet ResNet's stem for large images.

    Args:
        num_classes: Outputs of the dense layer.
        init: Conv and dense kernel initialisation ("torch": PyTorch's default, as the
            PyTorch codebases that train it use).
        dtype: Keras dtype policy of every layer but the logits (float32).
        width: Multiplies every channel count (64/128/256/512); below 1 for quick tests.
        logit_scale: Constant multiplying the logits (1: none).
        image_size: The images' side.
        stem: "cifar": a 3x3 stride-1 convolution, no pool (what CIFAR code uses: the
            ImageNet stem leaves 8x8 of a 32x32 image for the first block); "imagenet":
            the 7x7 stride-2 convolution and 3x3 stride-2 max pool, for large images.
        norm: BatchNorm's factory (`tf_resnet9.models.layers.batch_norm`); None: PyTorch's.
    """
    options = dict(num_classes=num_classes, init=init, dtype=dtype, width=width, norm=norm)
    return _resnet(
        64,
        (64, 128, 256, 512),
        2,
        "projection",
        "resnet18",
        logit_scale=logit_scale,
        image_size=image_size,
        stem_kind=stem,
        **options,
    )
