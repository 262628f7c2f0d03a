"""Optimizers with coupled L2 weight decay (the decay is added to the gradient, as in
PyTorch's `weight_decay`, not applied to the weights beside it as Keras' `weight_decay`
does): the recipe's Nesterov SGD, He et al.'s momentum SGD, Adam, and airbench's
(`TorchNesterovSGD`: PyTorch's Nesterov form, per-variable groups), with the conversions
of each source's units to a mean loss's."""

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


def _serialize_lr(value):
    if isinstance(value, keras.optimizers.schedules.LearningRateSchedule):
        return keras.optimizers.schedules.serialize(value)
    return value


def _deserialize_lr(value):
    return keras.optimizers.schedules.deserialize(value) if isinstance(value, dict) else value


def variable_matches(path: str, match: str) -> bool:
    """Whether a variable's path ("block1_norm1/beta") is what `match` names: the whole
    path, or its last parts ("beta": every BatchNorm bias; "whiten/bias")."""
    return path == match or path.endswith("/" + match)


@keras.saving.register_keras_serializable(package="tf_resnet9")
class TorchNesterovSGD(keras.optimizers.Optimizer):
    """`torch.optim.SGD(momentum, nesterov=True, weight_decay)`'s update, in mean-loss
    units, with per-variable groups: airbench's optimizer.

    Per trainable weight w with velocity v (starting at 0), each update:

        d = grad(mean loss) + weight_decay * w
        v = momentum * v + d
        w = w - lr * (d + momentum * v)

    The lr multiplies the velocity on its way out (PyTorch's form), where `NesterovSGD`
    (Page's) multiplies the gradient on its way in: the two agree while lr is constant and
    part when it changes, as airbench's changes every update. v is in gradient units.

    Groups, each a dict, the first whose "match" fits a variable's path applying
    (`variable_matches`; variables no group matches take the optimizer's own settings):

        "match": "beta"             the variables (a path or its last parts)
        "lr_scale": 64.0            times the (group's) learning rate; default 1
        "wd_scale": 1 / 64          times weight_decay; default 1
        "learning_rate": schedule   the group's own lr (float or schedule); default the
                                    optimizer's
        "last_update": 144          after this many updates (optimizer.iterations), the
                                    variables and their velocities stay as they are: no
                                    step, no momentum, no decay; default never

    airbench94: `TorchNesterovSGD(schedule, 0.85, wd, groups=[{"match": "beta",
    "lr_scale": 64, "wd_scale": 1/64}, {"match": "whiten/bias", "last_update": 144}])`,
    lr and wd from `from_airbench_units` (`tf_resnet9.training.optimizers`).

    Args:
        learning_rate: Float or a `keras.optimizers.schedules.LearningRateSchedule`, called
            with the number of updates already applied.
        momentum: Nesterov momentum in [0, 1).
        weight_decay: L2 coefficient added to the gradient (mean-loss units).
        groups: The groups, as above.
        name: Optimizer name.
        **kwargs: Passed to `keras.optimizers.Optimizer`.
    """

    GROUP_KEYS = ("match", "lr_scale", "wd_scale", "learning_rate", "last_update")

    def __init__(
        self,
        learning_rate=0.01,
        momentum: float = 0.85,
        weight_decay: float = 0.0,
        groups=(),
        name: str = "torch_nesterov_sgd",
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
        self.groups = [self._checked_group(group) for group in groups]

    def _checked_group(self, group) -> dict:
        group = dict(group)
        unknown = sorted(set(group) - set(self.GROUP_KEYS))
        if unknown or not isinstance(group.get("match"), str):
            raise ValueError(
                f"groups entry {group!r} is invalid: expected a dict with a 'match' path and "
                f"only the keys {', '.join(self.GROUP_KEYS)}."
            )
        last = group.get("last_update")
        if last is not None and (int(last) != last or last < 0):
            raise ValueError(f"last_update={last!r} is invalid: expected an integer >= 0.")
        group["learning_rate"] = _deserialize_lr(group.get("learning_rate"))
        return group

    def group_of(self, variable) -> dict:
        """The settings of the first group matching `variable`'s path ({} if none)."""
        path = variable.path if hasattr(variable, "path") else str(variable)
        return next((g for g in self.groups if variable_matches(path, g["match"])), {})

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.velocities = self.add_optimizer_variables(variables, "velocity")
        self._settings = [self.group_of(variable) for variable in variables]

    def _group_lr(self, group: dict, learning_rate, dtype):
        own = group.get("learning_rate")
        if own is None:
            lr = learning_rate
        elif isinstance(own, keras.optimizers.schedules.LearningRateSchedule):
            lr = own(self.iterations)
        else:
            lr = own
        return ops.cast(lr, dtype) * group.get("lr_scale", 1.0)

    def _frozen(self, group: dict):
        """A bool scalar: whether this update leaves the group's variables as they are."""
        last = group.get("last_update")
        return None if last is None else ops.greater_equal(self.iterations, last)

    def update_step(self, gradient, variable, learning_rate):
        index = self._get_variable_index(variable)
        group = self._settings[index]
        velocity = self.velocities[index]
        # Arrays, read once (a stateless scope maps them on JAX; TensorFlow passes tf.Variables).
        w, v = ops.convert_to_tensor(variable), ops.convert_to_tensor(velocity)
        lr = self._group_lr(group, learning_rate, variable.dtype)
        momentum = ops.cast(self.momentum, variable.dtype)
        l2 = ops.cast(self.l2 * group.get("wd_scale", 1.0), variable.dtype)
        d = ops.cast(gradient, variable.dtype) + l2 * w
        new_v = momentum * v + d
        new_w = w - lr * (d + momentum * new_v)
        frozen = self._frozen(group)
        if frozen is not None:
            new_v, new_w = ops.where(frozen, v, new_v), ops.where(frozen, w, new_w)
        self.assign(velocity, new_v)
        self.assign(variable, new_w)

    def get_config(self):
        config = super().get_config()
        groups = [
            group | {"learning_rate": _serialize_lr(group.get("learning_rate"))}
            for group in self.groups
        ]
        config.update({"momentum": self.momentum, "weight_decay": self.l2, "groups": groups})
        return config


def from_airbench_units(
    lr: float, weight_decay: float, momentum: float, batch_size: int
) -> tuple[float, float]:
    """airbench's hyperparameters (per 1,024 examples, decoupled from the momentum) as
    `TorchNesterovSGD`'s (lr, weight_decay) for a mean loss.

    airbench (legacy) sums the loss over the batch and gives torch.optim.SGD
    lr_t = lr / kilostep_scale and weight_decay = (weight_decay x batch / kilostep_scale)
    / lr_t, with kilostep_scale = 1024 (1 + 1 / (1 - momentum)): the decay per update is
    weight_decay x batch / kilostep_scale, whatever the lr, and the step per unit of
    per-example gradient is lr / 1024 / (1 + 1 / (1 - momentum)), whatever the momentum.
    A summed loss's gradient is batch x the mean's, so for the mean loss the lr is
    batch x lr_t and the L2 coefficient weight_decay_t / batch = weight_decay / lr:

        airbench94: lr 11.5, weight_decay 0.0153, momentum 0.85, batch 1,024
                    -> (1.5, 1.3304e-3); BN biases lr x64, weight decay / 64.
    """
    kilostep_scale = 1024 * (1 + 1 / (1 - momentum))
    torch_lr = lr / kilostep_scale
    decay_per_update = weight_decay * batch_size / kilostep_scale
    return torch_lr * batch_size, decay_per_update / torch_lr / batch_size


def from_summed_loss_units(
    lr: float, decay_per_update: float, batch_size: int
) -> tuple[float, float]:
    """A torch.optim.SGD group on a summed loss (lr, and weight_decay = decay_per_update /
    lr, as airbench94_muon writes it) as `TorchNesterovSGD`'s (lr, weight_decay) for a mean
    loss: (lr x batch, decay_per_update / lr / batch).

        airbench94_muon, batch 2,000, decay per update 2e-6 x 2,000: BN and whitening
        biases lr 0.053 -> (106, 3.774e-5); the head lr 0.67 -> (1340, 2.985e-6).
    """
    return lr * batch_size, decay_per_update / lr / batch_size
