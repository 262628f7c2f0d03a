"""ResNet9 ("cifar10-fast") as a Keras functional model.

Layer names mirror the module paths of the PyTorch reference with "_" for ".", e.g.
`layer1_residual_res1_bn` is `layer1.residual.res1.bn`, so weights map between the two by name.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

from tf_resnet9.config import ACTIVATIONS, INITS
from tf_resnet9.layers import CELU, GhostBatchNorm

# Channels of prep, layer1, layer2, layer3 at width 1.0.
BASE_CHANNELS = {"prep": 64, "layer1": 128, "layer2": 256, "layer3": 512}
IMAGE_SHAPE = (32, 32, 3)

# PyTorch's BatchNorm2d defaults, in Keras' convention: torch updates
# running = (1 - 0.1) * running + 0.1 * batch, Keras running = 0.9 * running + 0.1 * batch.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


def kernel_initializer(init: str) -> keras.initializers.Initializer:
    """The initializer for conv and dense kernels.

    "torch" is PyTorch's default for Conv2d and Linear, kaiming_uniform(a=sqrt(5)), which
    works out to U(-1/sqrt(fan_in), 1/sqrt(fan_in)); VarianceScaling draws U(-limit, limit)
    with limit = sqrt(3 * scale / fan_in), so scale = 1/3. "he_uniform" has
    limit = sqrt(6 / fan_in), sqrt(6) times wider: with weight decay that changes the
    effective learning rate, so the two are not interchangeable.
    """
    if init == "torch":
        return keras.initializers.VarianceScaling(
            scale=1.0 / 3.0, mode="fan_in", distribution="uniform"
        )
    if init == "he_uniform":
        return keras.initializers.HeUniform()
    if init == "he_normal":  # He et al. 2016's CIFAR ResNets
        return keras.initializers.HeNormal()
    raise ValueError(f"init={init!r} is invalid: expected one of {', '.join(INITS)}.")


def check_options(num_classes: int, width: float, init: str, logit_scale: float) -> None:
    """Raises ValueError, naming the argument, before a model with these options is built."""
    if num_classes < 1:
        raise ValueError(f"num_classes={num_classes!r} is invalid: expected an integer >= 1.")
    if not width > 0:
        raise ValueError(f"width={width!r} is invalid: expected a number > 0.")
    if not logit_scale > 0:
        raise ValueError(f"logit_scale={logit_scale!r} is invalid: expected a number > 0.")
    kernel_initializer(init)


def resnet9(
    num_classes: int = 10,
    width: float = 1.0,
    init: str = "torch",
    logit_scale: float = 0.125,
    dtype: str | None = None,
    activation: str = "relu",
    celu_alpha: float = 0.3,
    pool_before_bn: bool = False,
    freeze_bn_scale: bool = False,
    ghost_bn_splits: int = 1,
    whitening: np.ndarray | None = None,
) -> keras.Model:
    """Builds David Page's ResNet9 for 32x32 RGB images.

    Args:
        num_classes: Number of output logits.
        width: Multiplies every channel count (64/128/256/512); below 1 for quick tests.
        init: "torch" (PyTorch's default init, the recipe) or "he_uniform".
        logit_scale: Constant multiplying the logits (0.125 in the recipe).
        dtype: Keras dtype policy of every layer, e.g. "mixed_bfloat16"; None uses the
            global policy. The logits are always float32.
        activation, celu_alpha, pool_before_bn, freeze_bn_scale, ghost_bn_splits: the
            switches of Page's faster recipe (README.org, "The faster recipe"); the
            defaults are the 24-epoch recipe's network.
        whitening: A fixed kernel (3, 3, 3, 27) (`tf_resnet9.whitening.whitening_kernel`):
            the prep layer becomes this untrained convolution, then a 1x1 convolution to
            64 channels, BN and the activation. None: the recipe's 3x3 prep.

    Returns:
        A `keras.Model` mapping normalised images (B, 32, 32, 3) to logits (B, num_classes).
        At width 1.0 it has 6,573,120 trainable parameters.

        Input: float32 images normalised as in training, `tf_resnet9.preprocess(uint8
        images)`; not raw pixels, nor pixels scaled to 0..1 (either gives wrong classes,
        without an error). Output: logits, not probabilities; train with
        `SparseCategoricalCrossentropy(from_logits=True)`, and take
        `keras.ops.softmax(logits)` for probabilities. The same holds for the
        `resnet9.keras` a training run saves.
    """
    check_options(num_classes, width, init, logit_scale)
    if activation not in ACTIVATIONS:
        raise ValueError(
            f"activation={activation!r} is invalid: expected one of {', '.join(ACTIVATIONS)}."
        )
    channels = {name: max(1, round(c * width)) for name, c in BASE_CHANNELS.items()}

    def conv_bn_act(x, filters, name, pool=False, kernel=3):
        x = layers.Conv2D(
            filters,
            kernel,
            padding="same",
            use_bias=False,
            # A fresh initializer per layer: an unseeded Keras initializer fixes its seed
            # when created, so one shared instance gives same-shaped layers equal weights.
            kernel_initializer=kernel_initializer(init),
            dtype=dtype,
            name=f"{name}_conv",
        )(x)
        if pool and pool_before_bn:  # Page's later order: BN and act on 4x fewer pixels
            x = layers.MaxPooling2D(2, dtype=dtype, name=f"{name}_pool")(x)
        norm = dict(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, dtype=dtype, name=f"{name}_bn")
        norm["scale"] = not freeze_bn_scale  # frozen at 1: no gamma at all
        if ghost_bn_splits > 1:
            x = GhostBatchNorm(ghost_bn_splits, **norm)(x)
        else:
            x = layers.BatchNormalization(**norm)(x)
        if activation == "celu":
            x = CELU(celu_alpha, dtype=dtype, name=f"{name}_celu")(x)
        else:
            x = layers.ReLU(dtype=dtype, name=f"{name}_relu")(x)
        if pool and not pool_before_bn:  # the recipe's: conv -> BN -> ReLU -> pool
            x = layers.MaxPooling2D(2, dtype=dtype, name=f"{name}_pool")(x)
        return x

    def downsample(x, name):
        return conv_bn_act(x, channels[name], name, pool=True)

    def residual(x, name):
        filters = x.shape[-1]
        y = conv_bn_act(x, filters, f"{name}_res1")
        y = conv_bn_act(y, filters, f"{name}_res2")
        return layers.Add(dtype=dtype, name=f"{name}_add")([x, y])

    images = keras.Input(IMAGE_SHAPE, name="images")
    if whitening is None:
        x = conv_bn_act(images, channels["prep"], "prep")  # (B, 32, 32, 64)
    else:
        whiten = layers.Conv2D(
            whitening.shape[-1],
            3,
            padding="same",
            use_bias=False,
            trainable=False,
            dtype=dtype,
            name="prep_whiten",
        )
        x = conv_bn_act(whiten(images), channels["prep"], "prep", kernel=1)
    x = downsample(x, "layer1")  # (B, 16, 16, 128)
    x = residual(x, "layer1_residual")
    x = downsample(x, "layer2")  # (B, 8, 8, 256)
    x = downsample(x, "layer3")  # (B, 4, 4, 512)
    x = residual(x, "layer3_residual")
    x = layers.MaxPooling2D(4, dtype=dtype, name="pool")(x)  # (B, 1, 1, 512)
    x = layers.Flatten(dtype=dtype, name="flatten")(x)
    x = layers.Dense(
        num_classes,
        use_bias=False,
        kernel_initializer=kernel_initializer(init),
        dtype=dtype,
        name="linear",
    )(x)
    # float32 logits: the softmax cross-entropy of bf16 logits loses precision.
    logits = layers.Rescaling(logit_scale, dtype="float32", name="logits")(x)
    model = keras.Model(images, logits, name="resnet9")
    if whitening is not None:
        whiten.kernel.assign(whitening)
    return model
