"""What a `TrainConfig` builds, all in one place: `build_training` makes everything the epoch
loop needs to train the runs of some seeds (as flax's `create_train_state` does): each run's
network, optimizer and compiled steps, their learning rates, and the inputs that feed them.
The run (`tf_resnet9.experiment`), the benchmarks and the probes all build through it."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

import keras
import numpy as np

from tf_resnet9 import backends, models
from tf_resnet9.backends.placement import SingleDevice
from tf_resnet9.config import TrainConfig
from tf_resnet9.config.settings import RunSettings
from tf_resnet9.data import whitening
from tf_resnet9.data.augment import geometry, preprocess
from tf_resnet9.data.inputs import DeviceInput, TrainInput
from tf_resnet9.data.splits import Splits
from tf_resnet9.models import AIRBENCH_MODELS
from tf_resnet9.models.layers import activation, batch_norm
from tf_resnet9.outputs import checkpoints
from tf_resnet9.training import loop
from tf_resnet9.training.evaluation import EvalSet
from tf_resnet9.training.lanes import Lanes, SeedInput, SeedSteps
from tf_resnet9.training.muon import NS_EPSILON, ConvMuon
from tf_resnet9.training.optimizers import AdamL2, MomentumSGD, NesterovSGD, TorchNesterovSGD
from tf_resnet9.training.records import Progress
from tf_resnet9.training.schedules import (
    LearningRate,
    PiecewiseLinear,
    Scaled,
    WarmupLinearDecay,
    cosine,
    multi_step,
)
from tf_resnet9.training.steps import CompiledSteps

_OPTIMIZERS = {"nesterov_sgd": NesterovSGD, "sgd": MomentumSGD}


@dataclasses.dataclass(frozen=True)
class Training:
    """Everything the epoch loop (`tf_resnet9.training.loop.fit`) needs to train the runs of
    `seeds` of one config, each run a lane of `steps`.

    Attributes:
        config: The settings (every seed's but its seed).
        settings: What was resolved of them (`tf_resnet9.config.settings.resolve`).
        splits: The data.
        seeds: The runs' seeds, one lane each, in order.
        steps: The compiled steps: one run's `CompiledSteps`, or the seeds' `SeedSteps`.
        learning_rates: Each lane's `LearningRate`.
        whitening_time_s: Seconds computing a whitening kernel from the training images
            (0 without one): airbench's clock counts them.
    """

    config: TrainConfig
    settings: RunSettings
    splits: Splits
    seeds: tuple[int, ...]
    steps: Lanes
    learning_rates: tuple[LearningRate, ...]
    whitening_time_s: float = 0.0

    @property
    def updates(self) -> int:
        """The run's updates (`TrainConfig.updates`)."""
        return self.config.updates(self.settings.steps_per_epoch)

    @property
    def epochs(self) -> int:
        """The epochs it trains in, the last perhaps part-way."""
        return self.config.epochs_run(self.settings.steps_per_epoch)

    def inputs(self, stand_in: bool = False) -> tuple[TrainInput, dict[str, EvalSet]]:
        """(the training input, {"test": ..., "val": ... with a validation set}), placed where
        the steps read them; of zeros of the same shapes with `stand_in` (for compiling)."""
        train, named = self.splits.train, {"test": self.splits.test}
        named |= {"val": self.splits.val} if self.splits.val else {}
        if stand_in:
            train = tuple(map(_zeros_like, train))
            named = {name: tuple(map(_zeros_like, split)) for name, split in named.items()}
        size, where = self.settings.eval_batch_size, self.steps.placement
        eval_sets = {name: EvalSet.build(*split, size, where) for name, split in named.items()}
        return self._train_input(*train), eval_sets

    def _train_input(self, images, labels) -> TrainInput:
        where = self.steps.placement
        first = train_input(self.config, self.settings, images, labels, self.seeds[0], where)
        if len(self.seeds) == 1:
            return first
        return SeedInput.of_seeds(first, self.seeds)

    def compile(self) -> float:
        """Compiles every program the epochs run, on stand-in data; returns the seconds."""
        train, eval_sets = self.inputs(stand_in=True)
        last = loop.epoch_steps(self.epochs, self.settings.steps_per_epoch, self.updates)
        return loop.warm_up(self.steps, train, list(eval_sets.values()), last_epoch_steps=last)

    def restore(self, saved: Sequence[checkpoints.Checkpoint]) -> list[Progress]:
        """Puts each lane's checkpoint into its variables and learning rate; returns each
        lane's progress.

        Raises:
            CheckpointError: a checkpoint is of other settings or another model.
        """
        progress = []
        for seed, lane, rate, checkpoint in zip(
            self.seeds, self.steps.lanes, self.learning_rates, saved
        ):
            checkpoints.check_resumable(checkpoint, self.config.of_seed(seed), lane.shapes)
            lane.restore(checkpoint.arrays)
            rate.replay(checkpoint.progress.records)
            progress.append(checkpoint.progress)
        return progress


def _zeros_like(array) -> np.ndarray:
    """Zeros of `array`'s shape and type that take no memory (a set streamed from disk may
    not fit it); what reads them copies what it reads."""
    return np.broadcast_to(np.zeros((), array.dtype), array.shape)


def build_training(
    config: TrainConfig, settings: RunSettings, splits: Splits, seeds: Sequence[int]
) -> Training:
    """The runs of `seeds` of `config`, each initialised from its seed as a run alone is:
    together (`settings.seeds_together`) as lanes of one compiled program, else one."""
    alone = dataclasses.replace(settings, devices=1) if len(seeds) > 1 else settings
    started = time.perf_counter()
    kernel = _prep_whitening(config, settings, splits.train[0])
    whitening_s = time.perf_counter() - started
    lanes = []
    for seed in seeds:
        keras.utils.set_random_seed(seed)
        lanes.append(build_steps(config, alone, splits, kernel))
    whitening_s += _adapt_whitening(lanes, settings, splits.train[0])
    if len(seeds) == 1:
        steps = lanes[0]
    else:
        steps = SeedSteps(lanes, settings.jit, placement(settings.devices, len(seeds)))
    rates = tuple(learning_rate(config, settings.steps_per_epoch) for _ in seeds)
    return Training(config, settings, splits, tuple(seeds), steps, rates, whitening_s)


def build_model(
    config: TrainConfig, settings: RunSettings, splits: Splits, whitening_kernel=None
) -> keras.Model:
    """The network `config.model`, untrained: images of `settings.image_size`, normalised
    as `settings.normalization` says -> logits, one per class of `splits`; ResNet9's
    whitening prep (`config.whiten_prep`) with `whitening_kernel`."""
    options = {
        "num_classes": splits.num_classes,
        "width": config.width,
        "init": config.init,
        "logit_scale": config.logit_scale,
        "dtype": settings.precision,
        "image_size": settings.image_size,
    }
    norm = {"momentum": config.bn_momentum, "epsilon": config.bn_epsilon}
    if config.model in AIRBENCH_MODELS:
        own = {
            "bn_momentum": config.bn_momentum,
            "bn_epsilon": config.bn_epsilon,
            "whiten_patch": config.whiten_patch,
            "dirac": config.dirac_init,
        }  # unset: the network's own
        options |= {name: value for name, value in own.items() if value is not None}
    elif config.model == "resnet9":
        options |= {
            "norm": batch_norm(config.ghost_bn_splits, not config.freeze_bn_scale, **norm),
            "act": activation(config.activation or "relu", config.celu_alpha),
            "pool_before_bn": config.pool_before_bn,
            "whitening": whitening_kernel,
        }
    else:
        options["norm"] = batch_norm(**norm)
    if config.model == "resnet18":
        options["stem"] = config.stem
    return models.build(config.model, **options)


def _prep_whitening(config: TrainConfig, settings: RunSettings, train_images):
    """ResNet9's whitening kernel (Page's, `config.whiten_prep`) of the training images."""
    if not config.whiten_prep:
        return None
    first = np.asarray(train_images[: whitening.IMAGES_USED])
    images = preprocess(first, settings.normalization, settings.image_size)
    patch = config.whiten_patch or whitening.PATCH
    return whitening.whitening_kernel(keras.ops.convert_to_numpy(images), patch=patch)


def _adapt_whitening(lanes: Sequence[CompiledSteps], settings: RunSettings, train_images):
    """Sets an airbench network's whitening kernel from the training images, after its
    steps were built (their lookahead's average starts from the kernel before, as
    airbench's does); returns the seconds it took (0 for other networks)."""
    if "whiten" not in {layer.name for layer in lanes[0].model.layers}:
        return 0.0
    started = time.perf_counter()
    first, *others = [lane.model.get_layer("whiten") for lane in lanes]
    images = preprocess(
        np.asarray(train_images[: first.images_used]),
        settings.normalization,
        settings.image_size,
    )
    first.adapt(keras.ops.convert_to_numpy(images))
    for layer in others:  # every seed's kernel is the data's: computed once
        layer.kernel.assign(keras.ops.convert_to_numpy(first.kernel))
    return time.perf_counter() - started


def schedule(config: TrainConfig, steps_per_epoch: int):
    """The Keras schedule of the run's learning rate, a function of the updates done
    (`config.lr_schedule`); None for plateau, which follows the losses."""
    updates = config.updates(steps_per_epoch)
    if config.lr_schedule == "piecewise_linear":
        return PiecewiseLinear(*config.lr_knots, steps_per_epoch=steps_per_epoch)
    if config.lr_schedule == "multi_step":
        milestones = [m * config.epochs for m in config.lr_milestones]
        return multi_step(config.peak_lr, milestones, config.lr_decay, steps_per_epoch)
    if config.lr_schedule == "cosine":
        return cosine(config.peak_lr, config.epochs, steps_per_epoch, config.min_lr)
    if config.lr_schedule == "warmup_linear":
        peak = config.peak_lr
        warmup = config.warmup_updates(updates)
        return WarmupLinearDecay(
            peak, updates, warmup, config.initial_lr / peak, config.min_lr / peak
        )
    return None


def learning_rate(config: TrainConfig, steps_per_epoch: int) -> LearningRate:
    """The learning rate of every update of a run of `config` (`config.lr_schedule`)."""
    updates = config.updates(steps_per_epoch)
    if config.lr_schedule != "plateau":
        return LearningRate(schedule(config, steps_per_epoch), updates)
    plateau = keras.callbacks.ReduceLROnPlateau(
        mode="min",
        monitor=config.plateau_monitor,
        factor=config.lr_decay,
        patience=config.plateau_patience,
        min_lr=config.min_lr,
    )
    return LearningRate(config.peak_lr, updates, plateau)


def build_optimizer(
    config: TrainConfig, precision: str, steps_per_epoch: int
) -> keras.optimizers.Optimizer:
    """The optimizer of `config`, its learning rate set by each step (`LearningRate`)."""
    if config.optimizer == "adam":
        optimizer = AdamL2(config.peak_lr, weight_decay=config.weight_decay)
    elif config.optimizer in _OPTIMIZERS:
        optimizer = _OPTIMIZERS[config.optimizer](
            config.peak_lr,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
            bn_bias_scales=(config.bn_bias_lr_scale, config.bn_bias_wd_scale),
        )
    else:
        optimizer = _grouped_optimizer(config, steps_per_epoch)
    if precision == "mixed_float16":
        # fp16 gradients underflow without a loss scale; bf16 has float32's exponent range.
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def _grouped_optimizer(config: TrainConfig, steps_per_epoch: int) -> TorchNesterovSGD:
    """airbench's: PyTorch's Nesterov SGD, or Muon on the kernels beside it, with groups
    for the BatchNorm biases and an airbench network's whitening bias."""
    biases = {"lr_scale": config.bn_bias_lr_scale, "wd_scale": config.bn_bias_wd_scale}
    muon = config.optimizer == "muon"
    whiten = {"match": "whiten/bias"} | (biases if muon else {})
    last = config.whiten_bias_updates(steps_per_epoch)
    if last is not None:
        whiten["last_update"] = last
        if muon and last:  # its own lr, linear to 0 over its updates
            bias_lr = config.peak_lr * config.bn_bias_lr_scale
            whiten |= {"learning_rate": WarmupLinearDecay(bias_lr, last), "lr_scale": 1.0}
    options = {
        "momentum": config.momentum,
        "weight_decay": config.weight_decay,
        "groups": [{"match": "beta"} | biases, whiten],
    }
    if not muon:
        return TorchNesterovSGD(config.peak_lr, **options)
    kernels = Scaled(schedule(config, steps_per_epoch), config.muon_lr / config.peak_lr)
    return ConvMuon(
        config.peak_lr,
        muon_learning_rate=kernels,
        muon_momentum=config.muon_momentum,
        ns_epsilon=NS_EPSILON / config.batch_size,  # airbench's, for a summed loss
        **options,
    )


def placement(devices: int, seeds: int = 1):
    """Where a run's arrays live: one device; data parallel over `devices`; or for `seeds`
    trained together, their runs split over `devices` (both JAX)."""
    if devices == 1:
        return SingleDevice()
    return backends.seed_parallel(devices) if seeds > 1 else backends.data_parallel(devices)


def build_steps(
    config: TrainConfig, settings: RunSettings, splits: Splits, whitening_kernel=None
) -> CompiledSteps:
    """The network of `config` with its optimizer, in `settings`' precision, compiled (with
    XLA where `settings.jit`) on `settings.devices` devices (data parallel where more than
    one). The gradient norms are for TensorBoard only: without it, the steps skip them.
    """
    where = placement(settings.devices)
    spe = settings.steps_per_epoch
    with where.scope():  # the variables replicated on every device under data parallel
        model = build_model(config, settings, splits, whitening_kernel)
        optimizer = build_optimizer(config, settings.precision, spe)
        return CompiledSteps(
            model,
            optimizer,
            jit=settings.jit,
            grad_norms=config.tensorboard,
            label_smoothing=config.label_smoothing,
            tta_level=config.tta_level,
            ema=(config.ema_momentum, config.ema_every) if config.ema_momentum else None,
            lookahead=config.updates(spe) if config.lookahead else None,
            placement=where,
            normalization=settings.normalization,
        )


def train_input(
    config: TrainConfig, settings: RunSettings, images, labels, seed: int, where=None
) -> TrainInput:
    """The training input `settings` names: the set placed on the device (`DeviceInput`),
    streamed to it (`StreamingInput`), or augmented on the host by tf.data (`HostInput`,
    TensorFlow only); with the config's augmentation at the images' size, its draws from
    `seed`, placed by `where` (the steps' `placement`)."""
    if settings.augment == "host":
        from tf_resnet9.data.host_input import HostInput as input_type  # only with TensorFlow
    elif settings.stream:
        from tf_resnet9.data.streaming import StreamingInput as input_type
    else:
        input_type = DeviceInput
    return input_type(
        images,
        labels,
        config.batch_size,
        settings.steps_per_call,
        seed,
        pad=config.pad,
        cutout=config.cutout,
        placement=where,
        geometry=geometry(settings.image_size, config.translate, config.cutout_size),
        normalization=settings.normalization,
        flip=config.flip,
    )
