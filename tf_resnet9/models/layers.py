"""The pieces every network here is built from: PyTorch's initialisation and BatchNorm
settings, one `conv_bn` block, and the layers and initializers Keras lacks (ghost BatchNorm,
CELU, exact GELU, option A's zero channels, a fixed patch-whitening convolution, dirac and
unit-std initializers)."""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np
from keras import layers, ops

from tf_resnet9.models import ACTIVATIONS, INITS

# PyTorch's BatchNorm2d defaults, in Keras' convention: torch updates
# running = (1 - 0.1) * running + 0.1 * batch, Keras running = 0.9 * running + 0.1 * batch.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5

# A factory of layers: (name, dtype policy) -> a Keras layer.
LayerFactory = Callable[[str, object], layers.Layer]


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


@keras.saving.register_keras_serializable(package="tf_resnet9")
class Dirac(keras.initializers.Initializer):
    """`base`'s draw, then the first in_channels filters of a conv kernel (kh, kw, in, out)
    set to identities (all the filters where out <= in): filter i passes input channel i
    through at the window's centre (kh // 2, kw // 2) and is 0 elsewhere. PyTorch's
    `nn.init.dirac_(weight[:in_channels])`, which airbench applies to every convolution:
    a block starts close to the identity on the channels it has room for.

    Args:
        base: The initializer of the other filters (a Keras initializer or its
            identifier); None: PyTorch's default (`kernel_initializer("torch")`).
    """

    def __init__(self, base=None):
        self.base = (
            keras.initializers.get(base) if base is not None else kernel_initializer("torch")
        )

    def __call__(self, shape, dtype=None):
        if len(shape) != 4:
            raise ValueError(
                f"shape={tuple(shape)!r} is invalid: expected a conv kernel (kh, kw, in, out)."
            )
        kh, kw, c_in, c_out = shape
        kernel = self.base(shape, dtype=dtype)
        count = min(c_in, c_out)
        identity = np.zeros(shape, "float32")
        identity[kh // 2, kw // 2, np.arange(count), np.arange(count)] = 1.0
        replaced = np.arange(c_out) < count  # (out,)
        return ops.where(replaced, ops.convert_to_tensor(identity, kernel.dtype), kernel)

    def get_config(self):
        return {"base": keras.initializers.serialize(self.base)}

    @classmethod
    def from_config(cls, config):
        return cls(keras.initializers.deserialize(config["base"]))


@keras.saving.register_keras_serializable(package="tf_resnet9")
class UnitStd(keras.initializers.Initializer):
    """`base`'s draw divided by its own standard deviation (with Bessel's correction, as
    torch's `Tensor.std()`): airbench94_muon's head, `w *= 1 / w.std()`."""

    def __init__(self, base=None):
        self.base = (
            keras.initializers.get(base) if base is not None else kernel_initializer("torch")
        )

    def __call__(self, shape, dtype=None):
        w = self.base(shape, dtype=dtype)
        n = int(np.prod(shape))
        variance = ops.sum(ops.square(w - ops.mean(w))) / (n - 1)
        return w / ops.sqrt(variance)

    def get_config(self):
        return {"base": keras.initializers.serialize(self.base)}

    @classmethod
    def from_config(cls, config):
        return cls(keras.initializers.deserialize(config["base"]))


def check_options(num_classes: int, width: float, init: str, logit_scale: float) -> None:
    """Raises ValueError, naming the argument, before a model with these options is built."""
    if num_classes < 1:
        raise ValueError(f"num_classes={num_classes!r} is invalid: expected an integer >= 1.")
    if not width > 0:
        raise ValueError(f"width={width!r} is invalid: expected a number > 0.")
    if not logit_scale > 0:
        raise ValueError(f"logit_scale={logit_scale!r} is invalid: expected a number > 0.")
    kernel_initializer(init)


def activation_dtype(dtype) -> str | None:
    """The dtype policy of the activation layers (ReLU, CELU) of a network whose policy is
    `dtype`: float32 where that computes in bfloat16, else `dtype` itself.

    XLA:CPU in jaxlib 0.11 miscompiles a fusion (its YNNPACK path) that holds two bf16
    maxima or minima sharing one broadcast constant, as two ReLUs do, and a reduction
    downstream (a max pool, a global mean): compiled bf16 inference gives NaN, inf or
    1e36 logits, while the same ops one by one, or any of them in float32, are right. In
    float32 the activations share no bf16 constant, and the result is the same:
    relu(round(x)) == round(relu(x)); CELU only gains precision (its exp in float32). The
    casts fuse into the neighbouring elementwise ops. Do not "optimise" this back to bf16.
    """
    policy = keras.dtype_policies.get(dtype) if dtype is not None else keras.config.dtype_policy()
    return "float32" if policy.compute_dtype == "bfloat16" else dtype


def scaled(channels: int, width: float) -> int:
    """A channel count times the width multiplier, at least 1."""
    return max(1, round(channels * width))


def batch_norm(
    splits: int = 1,
    scale: bool = True,
    momentum: float | None = None,
    epsilon: float | None = None,
) -> LayerFactory:
    """BatchNorm with PyTorch's settings (or `momentum`, Keras' convention, and `epsilon`);
    ghost BatchNorm over `splits` sub-batches where splits > 1; without a trained scale
    (gamma fixed at 1) where not `scale`."""
    momentum = BN_MOMENTUM if momentum is None else momentum
    epsilon = BN_EPSILON if epsilon is None else epsilon

    def make(name: str, dtype) -> layers.Layer:
        options = dict(momentum=momentum, epsilon=epsilon, scale=scale, dtype=dtype)
        if splits > 1:
            return GhostBatchNorm(splits, name=name, **options)
        return layers.BatchNormalization(name=name, **options)

    return make


def activation(kind: str = "relu", celu_alpha: float = 0.3) -> LayerFactory:
    """ReLU, CELU with its alpha, or the exact GELU; the layer is named `<block>_<kind>`,
    and computes in float32 under a bf16 policy (`activation_dtype`)."""
    if kind not in ACTIVATIONS:
        raise ValueError(
            f"activation={kind!r} is invalid: expected one of {', '.join(ACTIVATIONS)}."
        )

    def make(name: str, dtype) -> layers.Layer:
        dtype = activation_dtype(dtype)
        if kind == "celu":
            return CELU(celu_alpha, dtype=dtype, name=f"{name}_celu")
        if kind == "gelu":
            return GELU(dtype=dtype, name=f"{name}_gelu")
        return layers.ReLU(dtype=dtype, name=f"{name}_relu")

    return make


def conv_bn(
    x,
    filters: int,
    name: str,
    *,
    init: str,
    dtype,
    kernel: int = 3,
    stride: int = 1,
    norm: LayerFactory | None = None,
    act: LayerFactory | None = None,
    pool: int = 0,
    pool_before_norm: bool = False,
):
    """conv -> BN [-> act] [-> max pool], the block of every network here.

    Layer names: `<name>_conv`, `<name>_bn`, the activation's, `<name>_pool`, and
    `<name>_pad` before a strided convolution; they mirror the PyTorch modules' paths.

    Args:
        x: The input tensor (B, H, W, C).
        filters: Output channels.
        name: The block's name.
        init: Kernel initialisation (`kernel_initializer`).
        dtype: The layers' dtype policy.
        kernel, stride: The convolution's size and stride.
        norm: BatchNorm's factory (`batch_norm`); None: `batch_norm()`.
        act: The activation's factory (`activation`); None: no activation.
        pool: Max-pool size after the block (0: none).
        pool_before_norm: Pool between the convolution and BN instead (Page's faster
            recipe: BN and the activation then run on 4x fewer pixels).
    """
    x = _conv(x, filters, name, kernel, stride, init, dtype)

    def pooled(x):
        return layers.MaxPooling2D(pool, dtype=dtype, name=f"{name}_pool")(x)

    if pool and pool_before_norm:
        x = pooled(x)
    x = (norm or batch_norm())(f"{name}_bn", dtype)(x)
    if act is not None:
        x = act(name, dtype)(x)
    if pool and not pool_before_norm:
        x = pooled(x)
    return x


def _conv(x, filters: int, name: str, kernel: int, stride: int, init: str, dtype):
    if stride > 1 and kernel > 1:
        # PyTorch's padding=kernel//2 on both sides. Keras' "same" with stride 2 on an even
        # size pads 0 before and 1 after, which centres the windows on odd pixels: one pixel
        # off option A's x[::2, ::2] shortcut and off every PyTorch CIFAR ResNet.
        x = layers.ZeroPadding2D(kernel // 2, dtype=dtype, name=f"{name}_pad")(x)
    return layers.Conv2D(
        filters,
        kernel,
        strides=stride,
        padding="same" if stride == 1 else "valid",
        use_bias=False,
        # A fresh initializer per layer: an unseeded Keras initializer fixes its seed when
        # created, so one shared instance gives same-shaped layers equal weights.
        kernel_initializer=kernel_initializer(init),
        dtype=dtype,
        name=f"{name}_conv",
    )(x)


@keras.saving.register_keras_serializable(package="tf_resnet9")
class GhostBatchNorm(layers.BatchNormalization):
    """BatchNorm whose training statistics come from `splits` equal sub-batches.

    In training, the batch (B, H, W, C) is cut into `splits` consecutive groups of B / splits
    images; each group is normalised with its own mean and (biased, as Keras') variance.
    The running statistics move towards the mean over the groups of their statistics, so
    inference, which uses them, normalises with the groups' average. With splits=1 this is
    `BatchNormalization`. Page's code groups images s, s + splits, s + 2 splits, ...
    instead (his view(-1, C * splits, H, W)); the batch is shuffled, so both draw the same
    sub-batches in distribution, and consecutive ones stay on one device when the batch is
    sharded over devices (no BatchNorm communication with splits a multiple of them).

    Args:
        splits: Sub-batches per batch (Page: 16 of 32 images); it must divide the batch.
        **kwargs: Passed to `keras.layers.BatchNormalization` (axis -1 only).
    """

    def __init__(self, splits: int = 16, **kwargs):
        super().__init__(**kwargs)
        if splits < 1:
            raise ValueError(f"splits={splits!r} is invalid: expected an integer >= 1.")
        self.splits = splits

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable) or self.splits == 1:
            return super().call(inputs, training=training, mask=mask)
        batch = inputs.shape[0]
        if batch is not None and batch % self.splits:
            raise ValueError(
                f"a batch of {batch} is invalid for {self.name}: expected a multiple of "
                f"splits={self.splits}."
            )
        # float32 statistics, as Keras' BatchNormalization computes them under bf16/fp16.
        x = ops.cast(inputs, keras.backend.result_type(inputs.dtype, "float32"))
        ghosts = ops.reshape(x, (self.splits, -1, *x.shape[1:]))  # (splits, B/splits, ...)
        axes = tuple(range(1, len(ghosts.shape) - 1))
        mean, variance = ops.moments(ghosts, axes=axes, keepdims=True)  # (splits, 1, ..., C)
        normalized = (ghosts - mean) * ops.rsqrt(variance + self.epsilon)
        if self.scale:
            normalized = normalized * ops.cast(self.gamma, x.dtype)
        if self.center:
            normalized = normalized + ops.cast(self.beta, x.dtype)
        for moving, batch_value in ((self.moving_mean, mean), (self.moving_variance, variance)):
            average = ops.reshape(ops.mean(batch_value, axis=0), moving.shape)
            moving.assign(
                ops.cast(moving, x.dtype) * self.momentum + average * (1.0 - self.momentum)
            )
        return ops.cast(ops.reshape(normalized, ops.shape(x)), self.compute_dtype)

    def get_config(self):
        return super().get_config() | {"splits": self.splits}


@keras.saving.register_keras_serializable(package="tf_resnet9")
class CELU(layers.Layer):
    """CELU(x) = max(0, x) + min(0, alpha * (exp(x / alpha) - 1)) (`keras.ops.celu`)."""

    def __init__(self, alpha: float = 0.3, **kwargs):
        super().__init__(**kwargs)
        self.alpha = alpha

    def call(self, x):
        return ops.celu(x, alpha=self.alpha)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return super().get_config() | {"alpha": self.alpha}


@keras.saving.register_keras_serializable(package="tf_resnet9")
class ZeroChannels(layers.Layer):
    """Appends `extra` channels of zeros: option A's shortcut into a wider stage."""

    def __init__(self, extra: int, **kwargs):
        super().__init__(**kwargs)
        self.extra = extra

    def call(self, x):
        return ops.pad(x, [[0, 0], [0, 0], [0, 0], [0, self.extra]])

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], input_shape[-1] + self.extra)

    def get_config(self):
        return super().get_config() | {"extra": self.extra}


@keras.saving.register_keras_serializable(package="tf_resnet9")
class GELU(layers.Layer):
    """GELU(x) = x Phi(x), Phi the standard normal CDF: by default exact (the erf form,
    PyTorch's `nn.GELU()`, airbench's); `keras.ops.gelu` defaults to the tanh
    approximation, ~1e-3 away (`approximate=True`)."""

    def __init__(self, approximate: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.approximate = approximate

    def call(self, x):
        return ops.gelu(x, approximate=self.approximate)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return super().get_config() | {"approximate": self.approximate}


@keras.saving.register_keras_serializable(package="tf_resnet9")
class PatchWhitening(layers.Layer):
    """A patch x patch convolution without padding whose kernel is computed from data and
    fixed, and whose bias trains: airbench's first layer (32x32 -> 31x31 for patch 2).

    The kernel is a non-trainable variable: `adapt(images)` sets it to
    `tf_resnet9.data.whitening.whitening_kernel` of the images with this layer's
    settings (airbench's by default); until then it holds `Dirac`'s draw, as airbench's
    network does before its data arrive. The bias is trainable (airbench trains it for
    the first 3 epochs only: that is the optimizer's business, `TorchNesterovSGD`'s
    `last_update`).

    Args:
        patch: The kernel's height and width.
        eps, images_used, negatives, bessel, descending: As `whitening_kernel`'s.
        bias_initializer: The bias's initializer (airbench: zeros; airbench94_muon:
            PyTorch's, U(+-1 / sqrt(patch^2 C))).
        **kwargs: Passed to `keras.layers.Layer` (name, dtype).
    """

    def __init__(
        self,
        patch: int = 2,
        eps: float = 5e-4,
        images_used: int = 5_000,
        negatives: bool = True,
        bessel: bool = False,
        descending: bool = True,
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if int(patch) != patch or patch < 1:
            raise ValueError(f"patch={patch!r} is invalid: expected an integer >= 1.")
        self.patch, self.eps, self.images_used = int(patch), eps, images_used
        self.negatives, self.bessel, self.descending = negatives, bessel, descending
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def filters(self, channels: int) -> int:
        """Output channels for `channels` input channels: patch^2 C, twice with negatives."""
        return self.patch**2 * channels * (2 if self.negatives else 1)

    def build(self, input_shape):
        channels = input_shape[-1]
        shape = (self.patch, self.patch, channels, self.filters(channels))
        self.kernel = self.add_weight(shape, initializer=Dirac(), trainable=False, name="kernel")
        self.bias = self.add_weight(
            shape[-1:], initializer=self.bias_initializer, trainable=True, name="bias"
        )

    def call(self, x):
        y = ops.conv(x, ops.cast(self.kernel, x.dtype), strides=1, padding="valid")
        return y + ops.cast(self.bias, y.dtype)

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        shrink = self.patch - 1
        size = (None if h is None else h - shrink, None if w is None else w - shrink)
        return (b, *size, self.filters(c))

    def adapt(self, normalized_images) -> None:
        """Sets the kernel from normalised training images (N, H, W, C), unaugmented."""
        from tf_resnet9.data import whitening  # NumPy only

        kernel = whitening.whitening_kernel(
            np.asarray(normalized_images),
            self.eps,
            patch=self.patch,
            images_used=self.images_used,
            negatives=self.negatives,
            bessel=self.bessel,
            descending=self.descending,
        )
        if tuple(kernel.shape) != tuple(self.kernel.shape):
            raise ValueError(
                f"images of shape {tuple(np.shape(normalized_images))} are invalid for "
                f"{self.name}: its kernel is {tuple(self.kernel.shape)}."
            )
        self.kernel.assign(kernel)

    def get_config(self):
        return super().get_config() | {
            "patch": self.patch,
            "eps": self.eps,
            "images_used": self.images_used,
            "negatives": self.negatives,
            "bessel": self.bessel,
            "descending": self.descending,
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        }
