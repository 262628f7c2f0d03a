"""Muon on convolution kernels, Nesterov SGD on the rest: airbench94_muon's optimizer.

Muon (K. Jordan, "Muon: an optimizer for hidden layers in neural networks", 2024) keeps a
Nesterov momentum of the raw gradient, orthogonalises it with a few Newton-Schulz
iterations (G = U S V^T becomes about U V^T) and steps along that. Keras 3.15's
`keras.optimizers.Muon` treats 2-D variables only; airbench94_muon applies it to the 4-D
convolution kernels, each seen as a matrix (out, kh kw in), and renormalises each kernel
before the step instead of decaying it.
"""

from __future__ import annotations

import math

import keras
from keras import ops

from tf_resnet9.training.optimizers import TorchNesterovSGD, _deserialize_lr, _serialize_lr

# X <- a X + (b A + c A^2) X with A = X X^T: a quintic whose slope at 0 is steep, so that three
# steps move the singular values of the normalised matrix from (0, 1] into about
# [0.5, 1.5] (not to 1: the recipe does not need it).
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
NS_STEPS = 3
# Added to the Frobenius norm of the momentum before dividing by it. airbench's 1e-7 is for
# a summed loss's gradient; a mean loss's is batch times smaller, so 1e-7 / batch gives the
# same quotient (in bf16 neither changes a digit).
NS_EPSILON = 1e-7


def newton_schulz(matrix, steps: int = NS_STEPS, eps: float = NS_EPSILON, dtype="bfloat16"):
    """About U V^T of a 2-D `matrix` = U S V^T, computed in `dtype` (airbench: bf16).

    Divided by its Frobenius norm (its largest singular value is then <= 1) and, with more
    rows than columns, transposed so that the Gram matrix A = X X^T is the smaller one;
    transposed back at the end. Returned in `dtype`.
    """
    if len(matrix.shape) != 2:
        raise ValueError(f"matrix of shape {tuple(matrix.shape)} is invalid: expected 2-D.")
    a, b, c = NS_COEFFICIENTS
    x = ops.cast(matrix, dtype)
    x = x / (ops.norm(x) + ops.cast(eps, dtype))
    tall = matrix.shape[0] > matrix.shape[1]
    if tall:
        x = ops.transpose(x)
    for _ in range(steps):
        gram = _matmul(x, ops.transpose(x), dtype)
        x = a * x + _matmul(b * gram + _matmul(c * gram, gram, dtype), x, dtype)
    return ops.transpose(x) if tall else x


def _matmul(x, y, dtype):
    """x @ y of `dtype` values with float32 sums, rounded to `dtype`: what a GPU's bf16
    matmul computes. Written out because TensorFlow's CPU kernels (oneDNN) have no bf16
    matmul without AVX-512 and abort the process instead of falling back."""
    return ops.cast(ops.matmul(ops.cast(x, "float32"), ops.cast(y, "float32")), dtype)


@keras.saving.register_keras_serializable(package="tf_resnet9")
class ConvMuon(TorchNesterovSGD):
    """Muon on every trainable 4-D variable (conv kernels, Keras layout (kh, kw, in, out)),
    `TorchNesterovSGD` (with its groups) on the others.

    Per kernel W with gradient g and buffer m (starting at 0), each update:

        m = muon_momentum * m + g
        u = g + muon_momentum * m                   (Nesterov)
        W = W * sqrt(out) / ||W||_F                 (the whole kernel, not each filter)
        W = W - muon_lr * NS(u as a matrix (out, kh kw in))

    No weight decay on the kernels (the renormalisation holds their scale). The gradient's
    scale (mean or summed loss) cancels in NS, but for `ns_epsilon`. The column order of
    the matrix (Keras' kh kw in, PyTorch's in kh kw) does not change NS's result: a
    permutation of columns commutes with it.

    Args:
        learning_rate: The other variables' lr (see `TorchNesterovSGD`; airbench94_muon:
            the head's, its biases in groups).
        muon_learning_rate: The kernels' lr, float or schedule (airbench94_muon: 0.24, to 0
            linearly over the run).
        muon_momentum: The kernels' Nesterov momentum (airbench94_muon: 0.6).
        ns_steps: Newton-Schulz iterations.
        ns_dtype: Their precision (airbench: "bfloat16"; "float32" to check it).
        ns_epsilon: See `NS_EPSILON`.
        **kwargs: `TorchNesterovSGD`'s (momentum, weight_decay, groups, ...).
    """

    def __init__(
        self,
        learning_rate=0.01,
        muon_learning_rate=0.24,
        muon_momentum: float = 0.6,
        ns_steps: int = NS_STEPS,
        ns_dtype: str = "bfloat16",
        ns_epsilon: float = NS_EPSILON,
        name: str = "conv_muon",
        **kwargs,
    ):
        super().__init__(learning_rate, name=name, **kwargs)
        if not 0 <= muon_momentum < 1:
            raise ValueError(
                f"muon_momentum={muon_momentum!r} is invalid: expected a number in [0, 1)."
            )
        if int(ns_steps) != ns_steps or ns_steps < 1:
            raise ValueError(f"ns_steps={ns_steps!r} is invalid: expected an integer >= 1.")
        self.muon_learning_rate = _deserialize_lr(muon_learning_rate)
        self.muon_momentum = muon_momentum
        self.ns_steps, self.ns_dtype, self.ns_epsilon = int(ns_steps), ns_dtype, ns_epsilon

    @staticmethod
    def is_muon_variable(variable) -> bool:
        return len(variable.shape) == 4

    def _muon_lr(self, dtype):
        lr = self.muon_learning_rate
        if isinstance(lr, keras.optimizers.schedules.LearningRateSchedule):
            lr = lr(self.iterations)
        return ops.cast(lr, dtype)

    def update_step(self, gradient, variable, learning_rate):
        if not self.is_muon_variable(variable):
            return super().update_step(gradient, variable, learning_rate)
        buffer = self.velocities[self._get_variable_index(variable)]
        dtype = variable.dtype
        w = ops.convert_to_tensor(variable)  # an array, read once
        momentum = ops.cast(self.muon_momentum, dtype)
        gradient = ops.cast(gradient, dtype)
        new_buffer = momentum * ops.convert_to_tensor(buffer) + gradient
        update = gradient + momentum * new_buffer
        out = variable.shape[-1]
        matrix = ops.transpose(ops.reshape(update, (-1, out)))  # (out, kh kw in)
        direction = newton_schulz(matrix, self.ns_steps, self.ns_epsilon, self.ns_dtype)
        direction = ops.reshape(ops.transpose(ops.cast(direction, dtype)), variable.shape)
        normalised = w * (math.sqrt(out) / ops.norm(ops.reshape(w, (-1,))))
        self.assign(buffer, new_buffer)
        self.assign(variable, normalised - self._muon_lr(dtype) * direction)

    def get_config(self):
        return super().get_config() | {
            "muon_learning_rate": _serialize_lr(self.muon_learning_rate),
            "muon_momentum": self.muon_momentum,
            "ns_steps": self.ns_steps,
            "ns_dtype": self.ns_dtype,
            "ns_epsilon": self.ns_epsilon,
        }
