"""What a `TrainConfig` builds, all in one place: `build_training` makes everything the epoch
loop needs to train the runs of some seeds (as flax's `create_train_state` does): each run's
network, optimizer and compiled steps, their learning rates, and the inputs that feed them.
The run (`tf_resnet9.experiment`), the benchmarks and the probes all build through it."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import keras
import numpy as np

from tf_resnet9 import backends, models
from tf_resnet9.backends.placement import SingleDevice
from tf_resnet9.config import TrainConfig
from tf_resnet9.config.settings import RunSettings
from tf_resnet9.data import whitening
from tf_resnet9.data.augment import preprocess
from tf_resnet9.data.inputs import DeviceInput, TrainInput
from tf_resnet9.data.splits import Splits
from tf_resnet9.models.layers import activation, batch_norm
from tf_resnet9.outputs import checkpoints
from tf_resnet9.training import loop
from tf_resnet9.training.evaluation import EvalSet
from tf_resnet9.training.lanes import Lanes, SeedInput, SeedSteps
from tf_resnet9.training.optimizers import AdamL2, MomentumSGD, NesterovSGD
from tf_resnet9.training.records import Progress
from tf_resnet9.training.schedules import LearningRate, PiecewiseLinear, cosine, multi_step
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
    """

    config: TrainConfig
    settings: RunSettings
    splits: Splits
    seeds: tuple[int, ...]
    steps: Lanes
    learning_rates: tuple[LearningRate, ...]

    @property
    def epochs(self) -> int:
        return self.config.epochs

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
        return loop.warm_up(self.steps, train, list(eval_sets.values()))

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
    lanes = []
    for seed in seeds:
        keras.utils.set_random_seed(seed)
        lanes.append(build_steps(config, alone, splits))
    if len(seeds) == 1:
        steps = lanes[0]
    else:
        steps = SeedSteps(lanes, settings.jit, placement(settings.devices, len(seeds)))
    rates = tuple(learning_rate(config, settings.steps_per_epoch) for _ in seeds)
    return Training(config, settings, splits, tuple(seeds), steps, rates)


def build_model(config: TrainConfig, settings: RunSettings, splits: Splits) -> keras.Model:
    """The network `config.model`, untrained: images of `settings.image_size`, normalised
    as `settings.normalization` says -> logits, one per class of `splits`; the whitening
    prep (`config.whiten_prep`) computed from its training images."""
    options = {
        "num_classes": splits.num_classes,
        "width": config.width,
        "init": config.init,
        "logit_scale": config.logit_scale,
        "dtype": settings.precision,
        "image_size": settings.image_size,
    }
    if config.model == "resnet9":
        options |= {
            "norm": batch_norm(config.ghost_bn_splits, scale=not config.freeze_bn_scale),
            "act": activation(config.activation, config.celu_alpha),
            "pool_before_bn": config.pool_before_bn,
            "whitening": _whitening(config, settings, splits.train[0]),
        }
    if config.model == "resnet18":
        options["stem"] = config.stem
    return models.build(config.model, **options)


def _whitening(config: TrainConfig, settings: RunSettings, train_images):
    if not config.whiten_prep:
        return None
    first = np.asarray(train_images[: whitening.IMAGES_USED])
    images = preprocess(first, settings.normalization, settings.image_size)
    return whitening.whitening_kernel(keras.ops.convert_to_numpy(images))


def learning_rate(config: TrainConfig, steps_per_epoch: int) -> LearningRate:
    """The learning rate of every update of a run of `config` (`config.lr_schedule`)."""
    updates = config.epochs * steps_per_epoch
    if config.lr_schedule == "piecewise_linear":
        schedule = PiecewiseLinear(*config.lr_knots, steps_per_epoch=steps_per_epoch)
    elif config.lr_schedule == "multi_step":
        milestones = [m * config.epochs for m in config.lr_milestones]
        schedule = multi_step(config.peak_lr, milestones, config.lr_decay, steps_per_epoch)
    elif config.lr_schedule == "cosine":
        schedule = cosine(config.peak_lr, config.epochs, steps_per_epoch, config.min_lr)
    else:
        plateau = keras.callbacks.ReduceLROnPlateau(
            mode="min",
            monitor=config.plateau_monitor,
            factor=config.lr_decay,
            patience=config.plateau_patience,
            min_lr=config.min_lr,
        )
        return LearningRate(config.peak_lr, updates, plateau)
    return LearningRate(schedule, updates)


def build_optimizer(config: TrainConfig, precision: str) -> keras.optimizers.Optimizer:
    """The optimizer of `config`, its learning rate set by each step (`LearningRate`)."""
    if config.optimizer == "adam":
        optimizer = AdamL2(config.peak_lr, weight_decay=config.weight_decay)
    else:
        optimizer = _OPTIMIZERS[config.optimizer](
            config.peak_lr,
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


def build_steps(config: TrainConfig, settings: RunSettings, splits: Splits) -> CompiledSteps:
    """The network of `config` with its optimizer, in `settings`' precision, compiled (with
    XLA where `settings.jit`) on `settings.devices` devices (data parallel where more than
    one). The gradient norms are for TensorBoard only: without it, the steps skip them.
    """
    where = placement(settings.devices)
    with where.scope():  # the variables replicated on every device under data parallel
        model = build_model(config, settings, splits)
        optimizer = build_optimizer(config, settings.precision)
        return CompiledSteps(
            model,
            optimizer,
            jit=settings.jit,
            grad_norms=config.tensorboard,
            label_smoothing=config.label_smoothing,
            tta_flip=config.tta_flip,
            ema=(config.ema_momentum, config.ema_every) if config.ema_momentum else None,
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
        normalization=settings.normalization,
    )
