"""ResNet9 ("cifar10-fast") as a Keras functional model.

Layer names mirror the module paths of the PyTorch reference with "_" for ".", e.g.
`layer1_residual_res1_bn` is `layer1.residual.res1.bn`, so weights map between the two by name.

Input: float32 images normalised as in training, `tf_resnet9.preprocess(uint8 images)`; not
raw pixels, nor pixels scaled to 0..1 (either gives wrong classes, without an error).
Output: logits, not probabilities; train with `SparseCategoricalCrossentropy(from_logits=
True)`, and take `keras.ops.softmax(logits)` for probabilities. The same holds for the
`resnet9.keras` a training run saves, and for the other networks of `tf_resnet9.models`.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

from tf_resnet9.data.cifar import IMAGE_SHAPE
from tf_resnet9.models.layers import (
    LayerFactory,
    activation,
    batch_norm,
    check_options,
    conv_bn,
    kernel_initializer,
    scaled,
)

# Channels of prep, layer1, layer2, layer3 at width 1.0.
BASE_CHANNELS = {"prep": 64, "layer1": 128, "layer2": 256, "layer3": 512}


def resnet9(
    num_classes: int = 10,
    width: float = 1.0,
    init: str = "torch",
    logit_scale: float = 0.125,
    dtype: str | None = None,
    norm: LayerFactory | None = None,
    act: LayerFactory | None = None,
    pool_before_bn: bool = False,
    whitening: np.ndarray | None = None,
    image_size: int = IMAGE_SHAPE[0],
) -> keras.Model:
    """Builds David Page's ResNet9 for RGB images, 32x32 as the recipe's.

    Args:
        num_classes: Number of output logits.
        width: Multiplies every channel count (64/128/256/512); below 1 for quick tests.
        init: "torch" (PyTorch's default init, the recipe), "he_uniform" or "he_normal".
        logit_scale: Constant multiplying the logits (0.125 in the recipe).
        dtype: Keras dtype policy of every layer, e.g. "mixed_bfloat16"; None uses the
            global policy. The logits are float32 whatever it is, and the activations
            under bf16 (`tf_resnet9.models.layers.activation_dtype`).
        norm: BatchNorm's factory, `tf_resnet9.models.layers.batch_norm(splits, scale)`;
            None: PyTorch's BatchNorm. Page's faster recipe: ghost BN, scale frozen.
        act: The activation's factory, `tf_resnet9.models.layers.activation(kind,
            celu_alpha)`; None: ReLU. Page's faster recipe: CELU(0.3).
        pool_before_bn: The pooled layers as conv, pool, BN, act (Page's faster recipe);
            else conv, BN, act, pool (the 24-epoch recipe).
        whitening: A fixed kernel (k, k, 3, 3k^2) (`tf_resnet9.data.whitening`; Page's k is
            3): the prep layer becomes this untrained convolution, then a 1x1 convolution to 64
            channels, BN and the activation. None: the recipe's 3x3 prep.
        image_size: The images' side; the final max pool takes what is left of it.

    Returns:
        A `keras.Model` mapping normalised images (B, S, S, 3) to logits (B, num_classes)
        (see the module's docstring). At width 1.0 it has 6,573,120 trainable parameters.
    """
    check_options(num_classes, width, init, logit_scale)
    channels = {name: scaled(c, width) for name, c in BASE_CHANNELS.items()}
    block = dict(init=init, dtype=dtype, norm=norm or batch_norm(), act=act or activation())

    def downsample(x, name):
        return conv_bn(x, channels[name], name, pool=2, pool_before_norm=pool_before_bn, **block)

    def residual(x, name):
        y = conv_bn(x, x.shape[-1], f"{name}_res1", **block)
        y = conv_bn(y, x.shape[-1], f"{name}_res2", **block)
        return layers.Add(dtype=dtype, name=f"{name}_add")([x, y])

    images = keras.Input((image_size, image_size, IMAGE_SHAPE[2]), name="images")
    x, whiten = _prep(images, channels["prep"], whitening, block)  # (B, 32, 32, 64)
    x = downsample(x, "layer1")  # (B, 16, 16, 128)
    x = residual(x, "layer1_residual")
    x = downsample(x, "layer2")  # (B, 8, 8, 256)
    x = downsample(x, "layer3")  # (B, 4, 4, 512)
    x = residual(x, "layer3_residual")
    model = keras.Model(images, _head(x, num_classes, init, logit_scale, dtype), name="resnet9")
    if whiten is not None:
        whiten.kernel.assign(whitening)
    return model


def _prep(images, channels: int, whitening, block):
    """The prep layer, (output, the fixed whitening convolution or None)."""
    if whitening is None:
        return conv_bn(images, channels, "prep", **block), None
    whiten = layers.Conv2D(
        whitening.shape[-1],
        whitening.shape[0],
        padding="same",
        use_bias=False,
        trainable=False,
        dtype=block["dtype"],
        name="prep_whiten",
    )
    return conv_bn(whiten(images), channels, "prep", kernel=1, **block), whiten


def _head(x, num_classes: int, init: str, logit_scale: float, dtype):
    """The global max pool, the dense layer without bias, the scaled logits."""
    # Global: (B, 4, 4, 512) -> (B, 1, 1, 512) at 32x32.
    x = layers.MaxPooling2D(x.shape[1], dtype=dtype, name="pool")(x)
    x = layers.Flatten(dtype=dtype, name="flatten")(x)
    x = layers.Dense(
        num_classes,
        use_bias=False,
        kernel_initializer=kernel_initializer(init),
        dtype=dtype,
        name="linear",
    )(x)
    # float32 logits: the softmax cross-entropy of bf16 logits loses precision.
    return layers.Rescaling(logit_scale, dtype="float32", name="logits")(x)
