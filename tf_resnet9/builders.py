"""What a `TrainConfig` builds: the network, its learning rate, its optimizer, the compiled
steps that train them, and the training input that feeds them."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras

from tf_resnet9 import backends, models
from tf_resnet9.backends.placement import SingleDevice
from tf_resnet9.config import TrainConfig
from tf_resnet9.config.settings import RunSettings
from tf_resnet9.data import whitening
from tf_resnet9.data.augment import preprocess
from tf_resnet9.data.cifar import num_classes
from tf_resnet9.data.inputs import DeviceInput, TrainInput
from tf_resnet9.models.layers import activation, batch_norm
from tf_resnet9.training.optimizers import AdamL2, MomentumSGD, NesterovSGD
from tf_resnet9.training.schedules import PiecewiseLinear, ReduceLROnPlateau, cosine, multi_step
from tf_resnet9.training.steps import CompiledSteps

_OPTIMIZERS = {"nesterov_sgd": NesterovSGD, "sgd": MomentumSGD}


def build_model(config: TrainConfig, dtype: str | None = None, train_images=None) -> keras.Model:
    """The network `config.model`, untrained: normalised images -> logits.

    `train_images` (uint8, N x 32 x 32 x 3): the data the whitening prep is computed from
    (`config.whiten_prep`); stand-in zeros give a model of the same shapes.
    """
    options = {
        "num_classes": num_classes(config.dataset),
        "width": config.width,
        "init": config.init,
        "logit_scale": config.logit_scale,
        "dtype": dtype,
    }
    if config.model == "resnet9":
        options |= {
            "norm": batch_norm(config.ghost_bn_splits, scale=not config.freeze_bn_scale),
            "act": activation(config.activation, config.celu_alpha),
            "pool_before_bn": config.pool_before_bn,
            "whitening": _whitening(config, train_images),
        }
    return models.build(config.model, **options)


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


def placement(devices: int, seeds: int = 1):
    """Where a run's arrays live: one device; data parallel over `devices`; or for `seeds`
    trained together, their runs split over `devices` (both JAX)."""
    if devices == 1:
        return SingleDevice()
    return backends.seed_parallel(devices) if seeds > 1 else backends.data_parallel(devices)


def build_steps(config: TrainConfig, run: RunSettings, lr, train_images=None) -> CompiledSteps:
    """The network of `config` with its optimizer following `lr` (`learning_rate`), in
    `run`'s precision, compiled (with XLA where `run.jit`) on `run.devices` devices (data
    parallel where more than one). The gradient norms are for TensorBoard only: without it,
    the steps skip them. `train_images`: see `build_model`.
    """
    where = placement(run.devices)
    with where.scope():  # the variables replicated on every device under data parallel
        model = build_model(config, run.precision, train_images)
        optimizer = build_optimizer(config, lr, run.precision)
        return _compiled_steps(config, run.jit, model, optimizer, where)


def _compiled_steps(config: TrainConfig, jit: bool, model, optimizer, where) -> CompiledSteps:
    return CompiledSteps(
        model,
        optimizer,
        jit=jit,
        grad_norms=config.tensorboard,
        label_smoothing=config.label_smoothing,
        tta_flip=config.tta_flip,
        ema=(config.ema_momentum, config.ema_every) if config.ema_momentum else None,
        placement=where,
    )


def train_input(config: TrainConfig, run: RunSettings, images, labels, where=None) -> TrainInput:
    """The training input `run.augment` names ("device", or "host": tf.data, which needs
    TensorFlow), with the config's augmentation, placed by `where` (the steps'
    `placement`)."""
    if run.augment == "device":
        input_type = DeviceInput
    else:
        from tf_resnet9.data.host_input import HostInput as input_type  # only with TensorFlow
    return input_type(
        images,
        labels,
        config.batch_size,
        run.steps_per_call,
        config.seed,
        pad=config.pad,
        cutout=config.cutout,
        placement=where,
    )


def lr_callbacks(
    config: TrainConfig, optimizer: keras.optimizers.Optimizer, earlier: Sequence = ()
) -> list[keras.callbacks.Callback]:
    """The callbacks that set the learning rate between epochs (plateau), else none.
    `earlier`: the `EpochRecord`s of a resumed run's epochs."""
    if config.lr_schedule != "plateau":
        return []
    return [
        ReduceLROnPlateau(
            optimizer,
            config.peak_lr,
            [record.as_dict() for record in earlier],
            monitor=config.plateau_monitor,
            factor=config.lr_decay,
            patience=config.plateau_patience,
            min_lr=config.min_lr,
        )
    ]
