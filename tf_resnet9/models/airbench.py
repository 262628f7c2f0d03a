"""Keller Jordan's airbench networks (github.com/KellerJordan/cifar10-airbench; "94% on
CIFAR-10 in 3.29 Seconds on a Single GPU", 2024) as Keras functional models.

    whiten (2x2 patch whitening, no padding: 32 -> 31, 24 filters, trained bias) -> GELU
    block1, block2, block3: conv1 3x3 -> maxpool 2 -> norm1 -> GELU -> conv2 3x3 -> norm2
        -> GELU; airbench96 adds conv3 -> norm3, + the first GELU's output, -> GELU
    maxpool 3 (3x3 -> 1x1) -> head (linear, no bias) -> logits x logit_scale

GELU is exact (erf), BatchNorm has eps 1e-12, no trained scale (frozen at 1 in airbench)
and Keras momentum 0.6 (PyTorch's 0.4; airbench96: PyTorch's default, Keras 0.9). Every
3x3 convolution starts with its first in_channels filters as identities (`Dirac`). The
whitening kernel comes from data: `model.get_layer("whiten").adapt(images)`.

Layer names mirror the module paths of the PyTorch reference (`reference.torch_airbench`)
with "_" for ".": `block1_norm1` is `block1.norm1`, `head` is `head`, `whiten` is
`whiten`; `tf_resnet9.convert_torch` maps airbench's own state-dict names onto them.

Input: float32 images normalised as in training; output: logits (see
`tf_resnet9.models.resnet9`).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

from tf_resnet9.data.cifar import IMAGE_SHAPE
from tf_resnet9.models.layers import (
    GELU,
    Dirac,
    PatchWhitening,
    UnitStd,
    activation_dtype,
    check_options,
    kernel_initializer,
    scaled,
)

# Widths of block1, block2, block3 at width 1.0, per network.
WIDTHS = {
    "airbench94": (64, 256, 256),
    "airbench95": (128, 384, 384),
    "airbench96": (128, 384, 512),
}
LOGIT_SCALE = 1 / 9
# BatchNorm: Keras' momentum (running = momentum running + (1 - momentum) batch).
BN_MOMENTUM = 0.6  # PyTorch's 0.4
BN_MOMENTUM_AIRBENCH96 = 0.9  # PyTorch's default 0.1: airbench96 leaves it unset
BN_EPSILON = 1e-12
WHITEN_BIAS_INITS = ("zeros", "torch")


def airbench(
    num_classes: int = 10,
    width: float = 1.0,
    init: str = "torch",
    logit_scale: float | None = LOGIT_SCALE,
    dtype: str | None = None,
    *,
    widths: tuple[int, int, int] = WIDTHS["airbench94"],
    residual: bool = False,
    bn_momentum: float = BN_MOMENTUM,
    bn_epsilon: float = BN_EPSILON,
    approximate_gelu: bool = False,
    whiten_bias_init: str = "zeros",
    head_unit_std: bool = False,
    name: str = "airbench94",
) -> keras.Model:
    """Builds an airbench network for 32x32 RGB images (`airbench94` etc. fix `widths`).

    Args:
        num_classes: Number of output logits.
        width: Multiplies the blocks' widths (not the whitening's 24); below 1 for tests.
        init: The convolutions' and the head's initialisation before `Dirac`
            (`tf_resnet9.models.layers.kernel_initializer`; airbench: "torch").
        logit_scale: Constant multiplying the logits (airbench: 1/9); None divides by the
            head's input width instead (airbench94_muon: 1/256).
        dtype: Keras dtype policy of every layer; the logits are float32 whatever it is,
            BatchNorm computes in float32, GELU too under bf16.
        widths: Channels of block1, block2, block3 at width 1.0.
        residual: A third conv -> norm per block and a residual over the last two
            (airbench96).
        bn_momentum: BatchNorm's momentum in Keras' convention.
        bn_epsilon: BatchNorm's epsilon.
        approximate_gelu: The tanh approximation instead of the exact GELU (not airbench's).
        whiten_bias_init: "zeros" (the legacy recipes) or "torch" (PyTorch's conv-bias init,
            U(+-1/sqrt(12)): airbench94_muon).
        head_unit_std: Rescale the head's initial weight to unit standard deviation
            (airbench94_muon).
        name: The model's name.

    Returns:
        A `keras.Model`: normalised images (B, 32, 32, 3) -> logits (B, num_classes); its
        whitening kernel still to be set (`adapt`). airbench94 has 1,968,818 trainable
        parameters at width 1.0 (`tests/test_airbench.py`).
    """
    check_options(num_classes, width, init, 1.0 if logit_scale is None else logit_scale)
    if whiten_bias_init not in WHITEN_BIAS_INITS:
        raise ValueError(
            f"whiten_bias_init={whiten_bias_init!r} is invalid: expected one of "
            f"{', '.join(WHITEN_BIAS_INITS)}."
        )
    if not 0 <= bn_momentum < 1:
        raise ValueError(f"bn_momentum={bn_momentum!r} is invalid: expected a number in [0, 1).")
    if not bn_epsilon > 0:
        raise ValueError(f"bn_epsilon={bn_epsilon!r} is invalid: expected a number > 0.")
    channels = [scaled(c, width) for c in widths]
    norm = dict(momentum=bn_momentum, epsilon=bn_epsilon, scale=False, dtype=dtype)

    def gelu(x, layer_name):
        gelu_dtype = activation_dtype(dtype)
        return GELU(approximate_gelu, dtype=gelu_dtype, name=layer_name)(x)

    def conv(x, filters, layer_name):
        return layers.Conv2D(
            filters,
            3,
            padding="same",  # stride 1: one pixel each side, as PyTorch's padding=1
            use_bias=False,
            kernel_initializer=Dirac(kernel_initializer(init)),  # a fresh one per layer
            dtype=dtype,
            name=layer_name,
        )(x)

    def block(x, filters, prefix):
        x = conv(x, filters, f"{prefix}_conv1")
        x = layers.MaxPooling2D(2, dtype=dtype, name=f"{prefix}_pool")(x)  # floors: 31 -> 15
        x = layers.BatchNormalization(name=f"{prefix}_norm1", **norm)(x)
        x = first = gelu(x, f"{prefix}_gelu1")
        x = conv(x, filters, f"{prefix}_conv2")
        x = layers.BatchNormalization(name=f"{prefix}_norm2", **norm)(x)
        x = gelu(x, f"{prefix}_gelu2")
        if not residual:
            return x
        x = conv(x, filters, f"{prefix}_conv3")
        x = layers.BatchNormalization(name=f"{prefix}_norm3", **norm)(x)
        x = layers.Add(dtype=dtype, name=f"{prefix}_add")([x, first])
        return gelu(x, f"{prefix}_gelu3")

    images = keras.Input(IMAGE_SHAPE, name="images")
    whiten = PatchWhitening(
        bias_initializer=_whiten_bias(whiten_bias_init), dtype=dtype, name="whiten"
    )
    x = gelu(whiten(images), "whiten_gelu")  # (B, 31, 31, 24)
    for i, filters in enumerate(channels, start=1):
        x = block(x, filters, f"block{i}")  # (B, 15, 15, c1), (B, 7, 7, c2), (B, 3, 3, c3)
    x = layers.MaxPooling2D(3, dtype=dtype, name="pool")(x)  # (B, 1, 1, c3)
    x = layers.Flatten(dtype=dtype, name="flatten")(x)
    head_init = kernel_initializer(init)
    x = layers.Dense(
        num_classes,
        use_bias=False,
        kernel_initializer=UnitStd(head_init) if head_unit_std else head_init,
        dtype=dtype,
        name="head",
    )(x)
    scale = 1.0 / channels[-1] if logit_scale is None else logit_scale
    # float32 logits: the softmax cross-entropy of bf16 logits loses precision.
    logits = layers.Rescaling(scale, dtype="float32", name="logits")(x)
    return keras.Model(images, logits, name=name)


def _whiten_bias(kind: str):
    if kind == "zeros":
        return "zeros"
    bound = 1.0 / np.sqrt(3 * 2 * 2)  # PyTorch's conv bias: U(+-1/sqrt(fan_in)), fan_in 12
    return keras.initializers.RandomUniform(-bound, bound)


def airbench94(**options) -> keras.Model:
    """airbench94's network (legacy/airbench94.py; airbench94_muon.py's with
    logit_scale=None, whiten_bias_init="torch", head_unit_std=True): `airbench` options."""
    return airbench(**({"widths": WIDTHS["airbench94"], "name": "airbench94"} | options))


def airbench95(**options) -> keras.Model:
    """airbench95's network: widths 128/384/384 (`airbench` options)."""
    return airbench(**({"widths": WIDTHS["airbench95"], "name": "airbench95"} | options))


def airbench96(**options) -> keras.Model:
    """airbench96's network: widths 128/384/512, three convolutions a block with a residual
    over the last two, BatchNorm at PyTorch's default momentum (`airbench` options)."""
    defaults = {
        "widths": WIDTHS["airbench96"],
        "residual": True,
        "bn_momentum": BN_MOMENTUM_AIRBENCH96,
        "name": "airbench96",
    }
    return airbench(**(defaults | options))
