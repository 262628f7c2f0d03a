"""What a `TrainConfig` builds: the network, its learning rate, its optimizer, and the
compiled steps that train them."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras

from tf_resnet9 import data, whitening
from tf_resnet9.augment import preprocess
from tf_resnet9.config import TrainConfig
from tf_resnet9.model import resnet9
from tf_resnet9.optimizer import AdamL2, MomentumSGD, NesterovSGD
from tf_resnet9.resnets import cifar_resnet, resnet18_cifar
from tf_resnet9.schedule import PiecewiseLinear, ReduceLROnPlateau, cosine, multi_step
from tf_resnet9.steps import CompiledSteps

_OPTIMIZERS = {"nesterov_sgd": NesterovSGD, "sgd": MomentumSGD}


def build_model(config: TrainConfig, dtype: str | None = None, train_images=None) -> keras.Model:
    """The network `config.model`, untrained: normalised images -> logits.

    `train_images` (uint8, N x 32 x 32 x 3): the data the whitening prep is computed from
    (`config.whiten_prep`); stand-in zeros give a model of the same shapes.
    """
    options = {
        "num_classes": data.num_classes(config.dataset),
        "width": config.width,
        "init": config.init,
        "logit_scale": config.logit_scale,
        "dtype": dtype,
    }
    if config.model == "resnet9":
        return resnet9(
            **options,
            activation=config.activation,
            celu_alpha=config.celu_alpha,
            pool_before_bn=config.pool_before_bn,
            freeze_bn_scale=config.freeze_bn_scale,
            ghost_bn_splits=config.ghost_bn_splits,
            whitening=_whitening(config, train_images),
        )
    if config.model == "resnet18":
        return resnet18_cifar(**options)
    return cifar_resnet(int(config.model.removeprefix("resnet")), **options)


def _whitening(config: TrainConfig, train_images):
    if not config.whiten_prep:
        return None
    if train_images is None:
        raise ValueError("whiten_prep=True needs the training images to compute its filter.")
    images = keras.ops.convert_to_numpy(preprocess(train_images[: whitening.IMAGES_USED]))
    return whitening.whitening_kernel(images)


def learning_rate(config: TrainConfig, steps_per_epoch: int):
    """`config.lr_schedule` as the optimizer takes it: a schedule of the update count, or,
    for plateau, the starting value (`lr_callbacks` changes it between epochs)."""
    if config.lr_schedule == "piecewise_linear":
        return PiecewiseLinear(*config.lr_knots, steps_per_epoch=steps_per_epoch)
    if config.lr_schedule == "multi_step":
        milestones = [m * config.epochs for m in config.lr_milestones]
        return multi_step(config.peak_lr, milestones, config.lr_decay, steps_per_epoch)
    if config.lr_schedule == "cosine":
        return cosine(config.peak_lr, config.epochs, steps_per_epoch, config.min_lr)
    return config.peak_lr


def lr_of_update(optimizer: keras.optimizers.Optimizer, lr) -> Callable[[int], float]:
    """The learning rate of update `step` (0-based), for the records: the schedule's, or
    the optimizer's current one where callbacks set it."""
    if isinstance(lr, keras.optimizers.schedules.LearningRateSchedule):
        return lambda step: float(lr(step))
    return lambda step: float(keras.ops.convert_to_numpy(optimizer.learning_rate))


def build_optimizer(config: TrainConfig, lr, precision: str) -> keras.optimizers.Optimizer:
    if config.optimizer == "adam":
        optimizer = AdamL2(lr, weight_decay=config.weight_decay)
    else:
        optimizer = _OPTIMIZERS[config.optimizer](
            lr,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
            bn_bias_scales=(config.bn_bias_lr_scale, config.bn_bias_wd_scale),
        )
    if precision == "mixed_float16":
        # fp16 gradients underflow without a loss scale; bf16 has float32's exponent range.
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def build_steps(config: TrainConfig, precision: str, lr, train_images=None) -> CompiledSteps:
    """The network of `config` with its optimizer following `lr` (`learning_rate`),
    compiled. The gradient norms are for TensorBoard only: without it, the steps skip them.
    `train_images`: see `build_model`.
    """
    model = build_model(config, precision, train_images)
    optimizer = build_optimizer(config, lr, precision)
    return CompiledSteps(
        model,
        optimizer,
        jit=config.jit,
        grad_norms=config.tensorboard,
        cutout=config.cutout,
        label_smoothing=config.label_smoothing,
        tta_flip=config.tta_flip,
        ema=(config.ema_momentum, config.ema_every) if config.ema_momentum else None,
    )


def lr_callbacks(
    config: TrainConfig, optimizer: keras.optimizers.Optimizer, earlier: Sequence[dict] = ()
) -> list[keras.callbacks.Callback]:
    """The callbacks that set the learning rate between epochs (plateau), else none."""
    if config.lr_schedule != "plateau":
        return []
    return [
        ReduceLROnPlateau(
            optimizer,
            config.peak_lr,
            earlier,
            monitor=config.plateau_monitor,
            factor=config.lr_decay,
            patience=config.plateau_patience,
            min_lr=config.min_lr,
        )
    ]
