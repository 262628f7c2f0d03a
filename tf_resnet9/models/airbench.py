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

import dataclasses

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


@dataclasses.dataclass(frozen=True)
class Parts:
    """How an airbench network's layers are made: the options every layer of a kind
    shares (the `airbench` arguments of the same names)."""

    dtype: str | None = None
    init: str = "torch"
    dirac: bool = True
    residual: bool = False
    bn_momentum: float = BN_MOMENTUM
    bn_epsilon: float = BN_EPSILON
    approximate_gelu: bool = False

    def __post_init__(self):
        if not 0 <= self.bn_momentum < 1:
            raise ValueError(
                f"bn_momentum={self.bn_momentum!r} is invalid: expected a number in [0, 1)."
            )
        if not self.bn_epsilon > 0:
            raise ValueError(f"bn_epsilon={self.bn_epsilon!r} is invalid: expected a number > 0.")

    def gelu(self, x, name: str):
        dtype = activation_dtype(self.dtype)
        return GELU(self.approximate_gelu, dtype=dtype, name=name)(x)

    def conv(self, x, filters: int, name: str):
        init = kernel_initializer(self.init)  # a fresh one per layer (`layers._conv`)
        return layers.Conv2D(
            filters,
            3,
            padding="same",  # stride 1: one pixel each side, as PyTorch's padding=1
            use_bias=False,
            kernel_initializer=Dirac(init) if self.dirac else init,
            dtype=self.dtype,
            name=name,
        )(x)

    def norm(self, x, name: str):
        return layers.BatchNormalization(
            momentum=self.bn_momentum,
            epsilon=self.bn_epsilon,
            scale=False,
            dtype=self.dtype,
            name=name,
        )(x)

    def block(self, x, filters: int, prefix: str):
        """conv1 -> pool -> norm1 -> GELU -> conv2 -> norm2 -> GELU [-> conv3 -> norm3, + the
        first GELU's output, -> GELU]."""
        x = self.conv(x, filters, f"{prefix}_conv1")
        x = layers.MaxPooling2D(2, dtype=self.dtype, name=f"{prefix}_pool")(x)  # 31 -> 15
        x = first = self.gelu(self.norm(x, f"{prefix}_norm1"), f"{prefix}_gelu1")
        x = self.conv(x, filters, f"{prefix}_conv2")
        x = self.gelu(self.norm(x, f"{prefix}_norm2"), f"{prefix}_gelu2")
        if not self.residual:
            return x
        x = self.norm(self.conv(x, filters, f"{prefix}_conv3"), f"{prefix}_norm3")
        x = layers.Add(dtype=self.dtype, name=f"{prefix}_add")([x, first])
        return self.gelu(x, f"{prefix}_gelu3")


def airbench(
    num_classes: int = 10,
    width: float = 1.0,
    logit_scale: float | None = LOGIT_SCALE,
    *,
    widths: tuple[int, int, int] = WIDTHS["airbench94"],
    whiten_bias_init: str = "zeros",
    whiten_patch: int = 2,
    whiten_descending: bool = True,
    head_unit_std: bool = False,
    image_size: int = IMAGE_SHAPE[0],
    name: str = "airbench94",
    **parts,
) -> keras.Model:
    """Builds an airbench network for RGB images, 32x32 as airbench's (`airbench94` etc. fix
    `widths`).

    Args:
        num_classes: Number of output logits.
        width: Multiplies the blocks' widths (not the whitening's 24); below 1 for tests.
        logit_scale: Constant multiplying the logits (airbench: 1/9); None divides by the
            head's input width instead (airbench94_muon: 1/256).
        widths: Channels of block1, block2, block3 at width 1.0.
        whiten_bias_init: "zeros" (the legacy recipes) or "torch" (PyTorch's conv-bias init,
            U(+-1/sqrt(12)): airbench94_muon).
        whiten_patch, whiten_descending: The whitening layer's patch side, and its filters
            by descending eigenvalue (the legacy recipes), else ascending (airbench94_muon).
        head_unit_std: The head's initial weight rescaled to unit standard deviation
            (airbench94_muon).
        image_size: The images' side; the last max pool takes what is left (3x3 at 32x32).
        name: The model's name.
        **parts: `Parts`' fields: dtype (every layer's policy; the logits are float32,
            BatchNorm computes in float32, GELU too under bf16), init (before `Dirac`,
            `tf_resnet9.models.layers.kernel_initializer`), dirac (each 3x3 convolution's
            first in_channels filters identities), residual (a third conv -> norm per block
            and a residual over the last two: airbench96), bn_momentum (Keras' convention),
            bn_epsilon, approximate_gelu (the tanh form: not airbench's).

    Returns:
        A `keras.Model`: normalised images (B, S, S, 3) -> logits (B, num_classes); its
        whitening kernel still to be set (`adapt`). airbench94 has 1,968,818 trainable
        parameters at width 1.0 (`tests/test_airbench.py`).
    """
    make = Parts(**parts)
    check_options(num_classes, width, make.init, 1.0 if logit_scale is None else logit_scale)
    images = keras.Input((image_size, image_size, IMAGE_SHAPE[2]), name="images")
    whiten = PatchWhitening(
        whiten_patch,
        descending=whiten_descending,
        bias_initializer=_whiten_bias(whiten_bias_init, whiten_patch),
        dtype=make.dtype,
        name="whiten",
    )
    x = make.gelu(whiten(images), "whiten_gelu")  # (B, 31, 31, 24) at 32x32
    channels = [scaled(c, width) for c in widths]
    for i, filters in enumerate(channels, start=1):
        x = make.block(x, filters, f"block{i}")  # (B, 15, 15, c1), (B, 7, 7, c2), (B, 3, 3, c3)
    logits = _head(x, num_classes, make, head_unit_std, logit_scale)
    return keras.Model(images, logits, name=name)


def _head(x, num_classes: int, make: Parts, unit_std: bool, logit_scale: float | None):
    """The last max pool (what is left of the image: 3x3 at 32x32), the linear head without
    bias, the scaled logits (float32: the softmax cross-entropy of bf16 logits loses
    precision); logit_scale None: 1 / the head's input width."""
    x = layers.MaxPooling2D(x.shape[1], dtype=make.dtype, name="pool")(x)  # (B, 1, 1, c3)
    x = layers.Flatten(dtype=make.dtype, name="flatten")(x)
    scale = 1.0 / x.shape[-1] if logit_scale is None else logit_scale
    init = kernel_initializer(make.init)
    x = layers.Dense(
        num_classes,
        use_bias=False,
        kernel_initializer=UnitStd(init) if unit_std else init,
        dtype=make.dtype,
        name="head",
    )(x)
    return layers.Rescaling(scale, dtype="float32", name="logits")(x)


def _whiten_bias(kind: str, patch: int):
    if kind not in WHITEN_BIAS_INITS:
        raise ValueError(
            f"whiten_bias_init={kind!r} is invalid: expected one of {', '.join(WHITEN_BIAS_INITS)}."
        )
    if kind == "zeros":
        return "zeros"
    # PyTorch's conv bias: U(+-1/sqrt(fan_in)), fan_in 3 x 2 x 2 = 12 for airbench's.
    bound = 1.0 / np.sqrt(IMAGE_SHAPE[2] * patch * patch)
    return keras.initializers.RandomUniform(-bound, bound)


def airbench94(**options) -> keras.Model:
    """airbench94's network (legacy/airbench94.py; airbench94_muon.py's with
    logit_scale=None, whiten_bias_init="torch", head_unit_std=True): `airbench` options."""
    return airbench(**({"widths": WIDTHS["airbench94"], "name": "airbench94"} | options))


def airbench94_muon(**options) -> keras.Model:
    """airbench94_muon.py's network: airbench94's with its whitening filters ascending, the
    whitening bias initialised as PyTorch's, the head at unit standard deviation and the
    logits divided by the head's width unless `logit_scale` says otherwise."""
    defaults = {
        "logit_scale": None,
        "whiten_bias_init": "torch",
        "head_unit_std": True,
        "whiten_descending": False,
        "name": "airbench94_muon",
    }
    return airbench94(**(defaults | options))


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
