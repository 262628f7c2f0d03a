"""Optimizers with coupled L2 weight decay (the decay is added to the gradient, as in
PyTorch's `weight_decay`, not applied to the weights beside it as Keras' `weight_decay`
does): the recipe's Nesterov SGD, He et al.'s momentum SGD, and Adam."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="tf_resnet9")
class NesterovSGD(keras.optimizers.Optimizer):
    """Nesterov SGD whose weight decay is an L2 term inside the momentum.

    For every trainable weight w, each step (v starts at 0):

        g = grad(mean loss) + weight_decay * w
        d = -lr * g
        v = momentum * v + d
        w = w + d + momentum * v

    This differs from `keras.optimizers.SGD(weight_decay=...)`, whose decay is decoupled
    (applied to w directly, never entering v), and from `torch.optim.SGD(nesterov=True)`,
    which keeps lr outside v (equal only while lr is constant; the recipe changes it every
    step).

    Args:
        learning_rate: Float or a `keras.optimizers.schedules.LearningRateSchedule`.
        momentum: Nesterov momentum in [0, 1).
        weight_decay: L2 coefficient added to the gradient (mean-loss units).
        name: Optimizer name.
        bn_bias_scales: (lr factor, weight-decay factor) for BatchNorm's biases (the
            variables named "beta"); Page's faster recipe uses (64, 1/64).
        **kwargs: Passed to `keras.optimizers.Optimizer` (e.g. gradient clipping).
    """

    NESTEROV = True  # the update's last line; `MomentumSGD` has the heavy-ball form

    def __init__(
        self,
        learning_rate=0.01,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        name: str = "nesterov_sgd",
        bn_bias_scales: tuple[float, float] = (1.0, 1.0),
        **kwargs,
    ):
        # Keras' own `weight_decay` is decoupled; ours must not reach the base class.
        super().__init__(learning_rate=learning_rate, weight_decay=None, name=name, **kwargs)
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum={momentum!r} is invalid: expected a number in [0, 1).")
        if weight_decay is None or weight_decay < 0:
            raise ValueError(f"weight_decay={weight_decay!r} is invalid: expected a number >= 0.")
        self.momentum = momentum
        self.l2 = weight_decay
        self.bn_bias_scales = tuple(float(x) for x in bn_bias_scales)

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.velocities = self.add_optimizer_variables(variables, "velocity")
        self._scales = [
            self.bn_bias_scales if variable.name == "beta" else (1.0, 1.0) for variable in variables
        ]

    def update_step(self, gradient, variable, learning_rate):
        lr_scale, l2_scale = self._scales[self._get_variable_index(variable)]
        lr = ops.cast(learning_rate, variable.dtype) * lr_scale
        momentum = ops.cast(self.momentum, variable.dtype)
        l2 = ops.cast(self.l2 * l2_scale, variable.dtype)
        velocity = self.velocities[self._get_variable_index(variable)]
        step = ops.multiply(-lr, ops.cast(gradient, variable.dtype) + l2 * variable)  # d
        new_velocity = momentum * velocity + step
        self.assign(velocity, new_velocity)
        self.assign_add(variable, step + momentum * new_velocity if self.NESTEROV else new_velocity)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "momentum": self.momentum,
                "weight_decay": self.l2,
                "bn_bias_scales": list(self.bn_bias_scales),
            }
        )
        return config


@keras.saving.register_keras_serializable(package="tf_resnet9")
class MomentumSGD(NesterovSGD):
    """SGD with heavy-ball momentum and coupled L2 weight decay (He et al. 2016's optimizer).

    As `NesterovSGD`, but the last line of the update is `w = w + v`. PyTorch's
    `SGD(momentum=0.9)` keeps lr outside v (v = m v + g, w = w - lr v): the two are equal
    while lr is constant, and differ for a few steps after a step decay (PyTorch's
    velocity shrinks at once, this one within ~1 / (1 - momentum) steps).
    """

    NESTEROV = False

    def __init__(self, learning_rate=0.1, momentum=0.9, weight_decay=1e-4, name="sgd", **kw):
        super().__init__(learning_rate, momentum, weight_decay, name=name, **kw)


@keras.saving.register_keras_serializable(package="tf_resnet9")
class AdamL2(keras.optimizers.Adam):
    """Adam whose weight decay is an L2 term added to the gradient before the moments, as
    PyTorch's `Adam(weight_decay=...)` (Keras' `weight_decay` is AdamW's decoupled one).

    Args:
        learning_rate: Float or a `keras.optimizers.schedules.LearningRateSchedule`.
        weight_decay: L2 coefficient added to the gradient (mean-loss units).
        **kwargs: Passed to `keras.optimizers.Adam` (beta_1, beta_2, epsilon, ...).
    """

    def __init__(self, learning_rate=1e-3, weight_decay: float = 1e-5, name="adam", **kwargs):
        # PyTorch's epsilon is 1e-8, Keras' 1e-7.
        kwargs.setdefault("epsilon", 1e-8)
        super().__init__(learning_rate=learning_rate, weight_decay=None, name=name, **kwargs)
        if weight_decay is None or weight_decay < 0:
            raise ValueError(f"weight_decay={weight_decay!r} is invalid: expected a number >= 0.")
        self.l2 = weight_decay

    def update_step(self, gradient, variable, learning_rate):
        gradient = ops.cast(gradient, variable.dtype)
        super().update_step(
            gradient + ops.cast(self.l2, variable.dtype) * variable, variable, learning_rate
        )

    def get_config(self):
        return super().get_config() | {"weight_decay": self.l2}


def to_summed_loss_units(lr: float, weight_decay: float, batch_size: int) -> tuple[float, float]:
    """The reference's (lr, weight_decay) for a loss summed, not averaged, over the batch.

    cifar10-fast sums the loss, so its gradient is batch_size times ours; it divides the lr
    by batch_size and multiplies the weight decay by batch_size so that lr * g, and hence
    every update, is unchanged: lr/B * (B * grad_mean + wd*B * w) = lr * (grad_mean + wd * w).
    """
    return lr / batch_size, weight_decay * batch_size
