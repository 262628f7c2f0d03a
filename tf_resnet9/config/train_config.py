"""The one place every setting of a training run is defined: default, unit, help, allowed
values and range. The command line (`tf_resnet9.config.flags`) is generated from these
fields."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

from tf_resnet9.backends.device import parse_bytes
from tf_resnet9.config.recipes import DEFAULT_RECIPE, RECIPES
from tf_resnet9.data.cifar import DATASETS
from tf_resnet9.data.splits import FOLDER
from tf_resnet9.data.tfds_source import PREFIX as TFDS
from tf_resnet9.errors import ConfigError
from tf_resnet9.models import ACTIVATIONS, INITS, MODELS

OPTIMIZERS = ("nesterov_sgd", "sgd", "adam")
LR_SCHEDULES = ("piecewise_linear", "multi_step", "cosine", "plateau")
PLATEAU_MONITORS = ("train_loss", "val_loss")
PADS = ("reflect", "zero")  # as `tf_resnet9.data.augment.pad_images` takes them
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
NORMALIZATIONS = ("cifar10", "data")  # the recipe's constants, or the training images' own
STEMS = ("cifar", "imagenet")  # ResNet-18's first layers
AUGMENT_MODES = ("device", "host")
RECIPE_EPOCHS = 24  # the length the recipe's schedule was tuned for


class Check(NamedTuple):
    """A range check of one setting: `test(value)` must hold; `allowed` says what may."""

    test: Callable[[object], bool]
    allowed: str


def _at_least(low: int) -> Check:
    return Check(lambda v: v >= low, f"an integer >= {low}")


def _is_amount(text: str) -> bool:
    try:
        return parse_bytes(text) > 0
    except ValueError:
        return False


_POSITIVE = Check(lambda v: v > 0, "a number > 0")
_NONNEGATIVE = Check(lambda v: v >= 0, "a number >= 0")
_FRACTION = Check(lambda v: 0 <= v < 1, "a number in [0, 1)")


def _setting(default, help: str, choices: tuple[str, ...] | None = None, check=None):
    """A field of `TrainConfig`: its default, help text, allowed values or range check
    (checked where set, None passing for the optional ones)."""
    metadata = {"help": help, "choices": choices, "check": check}
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run. Defaults are David Page's 24-epoch recipe (`page24`);
    `TrainConfig.from_recipe` starts from another recipe's (`tf_resnet9.config.recipes`).

    Learning rate and weight decay are in mean-loss units: the reference sums the loss over
    the batch and uses lr / batch_size and weight_decay * batch_size, which is the same update
    (see `tf_resnet9.training.optimizers.to_summed_loss_units`).
    """

    recipe: str = _setting(
        DEFAULT_RECIPE,
        "A named set of defaults for every setting below (page24, page10, he2016, "
        "adam_plateau; README.org); flags given override it.",
        tuple(RECIPES),
    )
    model: str = _setting(
        "resnet9",
        "The network: resnet9 (Page), resnet20/32/44/56/110 (He et al. 2016), resnet18.",
        MODELS,
    )
    dataset: str = _setting(
        "cifar10",
        "The data set: cifar10, cifar100 (its 100 fine labels), folder (--data_dir holds "
        "train/<class>/* and optionally test/<class>/*), or tfds:NAME[/CONFIG] (a "
        "tensorflow-datasets data set prepared in --data_dir).",
        check=Check(
            lambda v: v in DATASETS or v == FOLDER or (v.startswith(TFDS) and len(v) > len(TFDS)),
            f"one of {', '.join(DATASETS)}, {FOLDER} or {TFDS}NAME",
        ),
    )
    image_size: int | None = _setting(
        None,
        "Train on images of this side, resized where they differ (Pillow, bicubic); the "
        "augmentation's padding and cutout scale with it. Unset: the data's own (CIFAR's "
        "32; a class folder's most common size).",
        check=_at_least(8),
    )
    skip_bad_images: bool = _setting(
        False,
        "A class folder's unreadable or odd files are skipped, and counted in results.json "
        "(else the run stops, naming them).",
    )
    normalize: str | None = _setting(
        None,
        "cifar10: the recipe's per-channel mean and standard deviation (CIFAR-10's); data: "
        "the training images' own. Unset: cifar10 for CIFAR-10 and CIFAR-100, data for a "
        "class folder or a tensorflow-datasets data set.",
        NORMALIZATIONS,
    )
    epochs: int = _setting(
        RECIPE_EPOCHS, "Epochs to train; the lr peaks at 5/24 of them.", check=_at_least(1)
    )
    batch_size: int = _setting(
        512, "Images per step; the last partial batch is dropped.", check=_at_least(1)
    )
    optimizer: str = _setting(
        "nesterov_sgd",
        "nesterov_sgd (the recipe's), sgd (heavy-ball momentum) or adam; all with coupled "
        "L2 weight decay.",
        OPTIMIZERS,
    )
    peak_lr: float = _setting(
        0.4,
        "Peak (piecewise_linear) or initial learning rate per step, mean-loss units.",
        check=_POSITIVE,
    )
    lr_schedule: str = _setting(
        "piecewise_linear",
        "piecewise_linear (0 -> peak_lr -> 0), multi_step (x lr_decay at each of "
        "lr_milestones), cosine (to min_lr), plateau (x lr_decay when the monitored loss "
        "stalls for plateau_patience epochs, not below min_lr).",
        LR_SCHEDULES,
    )
    warmup_epochs: float = _setting(
        5.0,
        "piecewise_linear: epochs of linear warm-up 0 -> peak_lr (of 24; scaled for shorter runs).",
        check=_POSITIVE,
    )
    lr_milestones: tuple[float, ...] = _setting(
        (0.5, 0.75),
        "multi_step: where the lr drops, as fractions of the epochs.",
        check=Check(
            lambda m: (
                len(m) >= 1 and all(0 < x < 1 for x in m) and all(b > a for a, b in zip(m, m[1:]))
            ),
            "increasing fractions of training, each between 0 and 1",
        ),
    )
    lr_decay: float = _setting(
        0.1,
        "multi_step and plateau: the factor of each drop.",
        check=Check(lambda v: 0 < v < 1, "a number between 0 and 1"),
    )
    min_lr: float = _setting(
        0.0, "piecewise_linear and cosine: the final lr; plateau: the floor.", check=_NONNEGATIVE
    )
    lr_hold_epochs: float = _setting(
        0.0,
        "piecewise_linear: the last epochs held at min_lr (of the recipe's length).",
        check=_NONNEGATIVE,
    )
    plateau_patience: int = _setting(
        10,
        "plateau: epochs without improvement (Keras' min_delta 1e-4) before a drop.",
        check=_at_least(1),
    )
    plateau_monitor: str = _setting(
        "train_loss",
        "plateau: the loss watched; val_loss needs --val_split (never the test loss).",
        PLATEAU_MONITORS,
    )
    momentum: float = _setting(0.9, "Momentum of nesterov_sgd and sgd.", check=_FRACTION)
    weight_decay: float = _setting(
        5e-4,
        "Coupled L2 weight decay: added to the gradient, enters the momentum.",
        check=_NONNEGATIVE,
    )
    init: str = _setting(
        "torch",
        "Kernel initialisation: torch = U(+-1/sqrt(fan_in)) (the recipe); he_uniform is "
        "sqrt(6) times wider; he_normal N(0, 2/fan_in).",
        INITS,
    )
    width: float = _setting(
        1.0, "Multiplies every channel count (64/128/256/512); > 0.", check=_POSITIVE
    )
    logit_scale: float = _setting(0.125, "Constant multiplying the logits.", check=_POSITIVE)
    activation: str = _setting(
        "relu", "ResNet9's activation: relu, or celu (Page's later recipe).", ACTIVATIONS
    )
    celu_alpha: float = _setting(
        0.3, "celu: its alpha, CELU(x) = max(0,x) + min(0, a(e^(x/a)-1)).", check=_POSITIVE
    )
    pool_before_bn: bool = _setting(
        False,
        "ResNet9's pooled layers as conv -> pool -> BN -> act (else conv -> BN -> act -> pool).",
    )
    whiten_prep: bool = _setting(
        False,
        "ResNet9's prep layer: a fixed 3x3 patch-whitening convolution (from the training "
        "images), then 1x1 to 64 channels, BN, act.",
    )
    stem: str = _setting(
        "cifar",
        "ResNet-18's first layers: cifar (a 3x3 stride-1 convolution) or imagenet (7x7 "
        "stride 2 and a 3x3 stride-2 max pool: for large images).",
        STEMS,
    )
    freeze_bn_scale: bool = _setting(
        False, "ResNet9: BatchNorm's scale (gamma) fixed at 1, not trained."
    )
    ghost_bn_splits: int = _setting(
        1,
        "ResNet9: BatchNorm's training statistics per this many equal sub-batches (ghost "
        "BatchNorm); inference uses their running averages, averaged over the splits.",
        check=_at_least(1),
    )
    label_smoothing: float = _setting(
        0.0,
        "Training targets (1 - s) one-hot + s / classes (the loss reported too).",
        check=_FRACTION,
    )
    ema_momentum: float = _setting(
        0.0,
        "Evaluate (and save) an exponential moving average of the weights and BatchNorm "
        "statistics with this momentum per step (Page: 0.99); 0: off.",
        check=_FRACTION,
    )
    ema_every: int = _setting(
        5,
        "Move the average by momentum**N after the first update of every epoch and every "
        "N-th after it, as Page's code does (Page: 5).",
        check=_at_least(1),
    )
    tta_flip: bool = _setting(
        False, "Evaluate on the mean of the logits of each image and its mirror image."
    )
    bn_bias_lr_scale: float = _setting(
        1.0,
        "nesterov_sgd and sgd: BatchNorm biases (beta) train with lr times this (Page: 64).",
        check=_POSITIVE,
    )
    bn_bias_wd_scale: float = _setting(
        1.0,
        "nesterov_sgd and sgd: BatchNorm biases' weight decay times this (Page: 1/64).",
        check=_POSITIVE,
    )
    precision: str | None = _setting(
        None,
        "Unset: mixed_bfloat16 on a GPU with bf16, mixed_float16 on older GPUs, float32 on a CPU.",
        PRECISIONS,
    )
    jit: bool | None = _setting(
        None,
        "XLA-compile the train and eval steps. Unset: on, but off with TensorFlow on a CPU, "
        "where its own kernels are faster.",
    )
    devices: str | None = _setting(
        None,
        "Data parallel over this many of the host's devices (an integer), or all; each "
        "step's batch of batch_size is split over them; with --seeds, the seeds are split "
        "over them instead (JAX only). Unset: all on a GPU host (with --seeds, as many as "
        "split them evenly), 1 on a CPU.",
        check=Check(
            lambda v: str(v) == "all" or (str(v).isdigit() and int(v) >= 1),
            "all, or an integer >= 1",
        ),
    )
    pad: str = _setting(
        "reflect",
        "Training augmentation's padding before the random crop (4 pixels at 32x32: an "
        "eighth of the side): reflect (Page) or zero (He et al.).",
        PADS,
    )
    cutout: bool = _setting(
        True, "Training augmentation: cut out a square (8x8 at 32x32: a quarter of the side)."
    )
    augment: str | None = _setting(
        None,
        "Where crop, flip and cutout run: device (the training set on the accelerator) or "
        "host (tf.data, TensorFlow only). Unset: host with TensorFlow on a GPU, else device.",
        AUGMENT_MODES,
    )
    max_device_memory: str | None = _setting(
        None,
        "Place the padded training set on the device only within this much memory (e.g. "
        "8GiB, 512MB), else stream it from the host each epoch. Unset: within half the "
        "device's memory.",
        check=Check(_is_amount, "an amount of memory such as 8GiB, 512MB or 2G"),
    )
    steps_per_call: int | None = _setting(
        None,
        "Training steps per compiled call. Unset: a whole epoch with --augment device on a "
        "GPU, else 1 (XLA's CPU backend runs convolutions in loops far slower).",
        check=_at_least(1),
    )
    seed: int = _setting(0, "Seeds initialisation, shuffling and augmentation.")
    seeds: int = _setting(
        1,
        "Train this many independent runs, seeds seed, seed + 1, ... (see seeds_together); "
        "each into WORKDIR/seed-<n>, their summary into WORKDIR/seeds.json.",
        check=_at_least(1),
    )
    seeds_together: bool | None = _setting(
        None,
        "Train the --seeds in one compiled program (JAX's vmap), else one after another. "
        "Unset: together on a GPU with JAX, where it is faster; one after another on a CPU "
        "and on TensorFlow.",
    )
    train_limit: int | None = _setting(
        None,
        "Train on a random, class-balanced subset of N images (quick runs).",
        check=_at_least(1),
    )
    test_limit: int | None = _setting(
        None,
        "Evaluate on a random, class-balanced subset of N images (quick runs).",
        check=_at_least(1),
    )
    val_split: int = _setting(
        0,
        "Hold out N training images (random, class-balanced) as a validation set, "
        "evaluated after every epoch (He et al.: 5000).",
        check=_at_least(0),
    )
    subset_seed: int = _setting(
        0, "Seeds the choice of the --train_limit, --test_limit and --val_split subsets."
    )
    deterministic: bool = _setting(
        False,
        "Every op deterministic: on a GPU, XLA's deterministic kernels (slower); a CPU is "
        "deterministic anyway.",
    )
    keep_checkpoints: int = _setting(
        2,
        "Checkpoints kept in WORKDIR/checkpoints (one is written after every epoch).",
        check=_at_least(1),
    )
    tensorboard: bool = _setting(True, "Write TensorBoard logs to WORKDIR/tensorboard.")
    grad_log_every: int = _setting(
        25,
        "Log each layer group's gradient norm to TensorBoard every N steps.",
        check=_at_least(1),
    )

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value, choices, check = getattr(self, field.name), *_rules(field)
            if value is None:
                continue  # an optional setting left unset: the run resolves it
            if choices is not None:
                _require(value in choices, field.name, value, f"one of {', '.join(choices)}")
            if check is not None:
                _require(check.test(value), field.name, value, check.allowed)
        for rule in _COMBINATIONS:
            rule(self)

    @classmethod
    def from_recipe(cls, recipe: str = DEFAULT_RECIPE, **settings) -> TrainConfig:
        """The settings of `recipe` (`tf_resnet9.config.recipes.RECIPES`), `settings`
        overriding.

        Raises:
            ConfigError: the recipe is unknown, or a setting is invalid.
        """
        if recipe not in RECIPES:
            raise ConfigError("recipe", recipe, f"expected one of {', '.join(RECIPES)}.")
        return cls(recipe=recipe, **RECIPES[recipe].settings(settings))

    @staticmethod
    def field_choices(name: str) -> tuple[str, ...] | None:
        """The allowed values of a text setting, or None where any value of its type goes."""
        return {f.name: f.metadata["choices"] for f in dataclasses.fields(TrainConfig)}[name]

    @property
    def seed_values(self) -> tuple[int, ...]:
        """The seeds of the run's `seeds` runs: seed, seed + 1, ..."""
        return tuple(range(self.seed, self.seed + self.seeds))

    def of_seed(self, seed: int) -> TrainConfig:
        """The settings of the run of one of the seeds, as a run of that seed alone has them
        (what its results.json and checkpoints record)."""
        return dataclasses.replace(self, seed=seed, seeds=1)

    @property
    def lr_knots(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """(epochs, values) of the piecewise-linear learning rate: 0 at the start, peak_lr
        after the warm-up, min_lr lr_hold_epochs before the end, and held there.

        page24's knots are (0, 0), (5, 0.4), (24, 0). The warm-up and the hold are in epochs
        of the recipe's own length (24 for page24): shorter runs keep them at the same
        fraction of training (5/24), so a quick 2-epoch run still warms up and decays.
        """
        reference = RECIPES[self.recipe].defaults.get("epochs", RECIPE_EPOCHS)
        if callable(reference):  # a recipe whose length depends on other settings
            reference = self.epochs
        shorter = min(1.0, self.epochs / reference)
        peak_epoch = self.warmup_epochs * shorter
        if not self.lr_hold_epochs:
            return (0.0, peak_epoch, float(self.epochs)), (0.0, self.peak_lr, self.min_lr)
        decay_end = self.epochs - self.lr_hold_epochs * shorter
        values = (0.0, self.peak_lr, self.min_lr, self.min_lr)
        return (0.0, peak_epoch, decay_end, float(self.epochs)), values


def _rules(field: dataclasses.Field) -> tuple[tuple[str, ...] | None, Check | None]:
    return field.metadata["choices"], field.metadata["check"]


def _require(condition: bool, name: str, value, allowed: str) -> None:
    if not condition:
        raise ConfigError(name, value, f"expected {allowed}.")


# The checks of settings against each other; each names the setting to change.


def _ghost_splits_divide_the_batch(c: TrainConfig) -> None:
    _require(
        c.batch_size % c.ghost_bn_splits == 0,
        "ghost_bn_splits",
        c.ghost_bn_splits,
        f"an integer >= 1 dividing batch_size={c.batch_size}",
    )


def _min_lr_below_peak(c: TrainConfig) -> None:
    _require(c.min_lr < c.peak_lr, "min_lr", c.min_lr, "a number in [0, peak_lr)")


def _val_loss_needs_a_validation_set(c: TrainConfig) -> None:
    _require(
        c.plateau_monitor != "val_loss" or c.val_split > 0,
        "plateau_monitor",
        c.plateau_monitor,
        "val_loss needs a validation set: --val_split N",
    )


# ResNet9's switches of Page's faster recipe, at their plain values.
_RESNET9_ONLY = {
    "activation": "relu",
    "pool_before_bn": False,
    "freeze_bn_scale": False,
    "ghost_bn_splits": 1,
    "whiten_prep": False,
}


def _resnet9_switches_only_on_resnet9(c: TrainConfig) -> None:
    for name, plain in _RESNET9_ONLY.items():
        _require(
            c.model == "resnet9" or getattr(c, name) == plain,
            name,
            getattr(c, name),
            f"{plain!r}: it is a switch of ResNet9, not of {c.model}",
        )


def _stem_only_on_resnet18(c: TrainConfig) -> None:
    _require(
        c.model == "resnet18" or c.stem == "cifar",
        "stem",
        c.stem,
        f"'cifar': the ImageNet stem is ResNet-18's, not {c.model}'s",
    )


def _bias_scales_only_with_sgd(c: TrainConfig) -> None:
    for name in ("bn_bias_lr_scale", "bn_bias_wd_scale"):
        _require(
            c.optimizer != "adam" or getattr(c, name) == 1.0,
            name,
            getattr(c, name),
            "1.0 with adam (the scales are for the SGD optimizers)",
        )


def _schedule_leaves_room_to_decay(c: TrainConfig) -> None:
    knots = c.lr_knots[0] if c.lr_schedule == "piecewise_linear" else ()
    _require(
        all(b > a for a, b in zip(knots, knots[1:])),
        "lr_hold_epochs" if c.lr_hold_epochs else "warmup_epochs",
        c.lr_hold_epochs or c.warmup_epochs,
        f"a warm-up and hold that leave room for the decay in {c.epochs} epochs",
    )


_COMBINATIONS = (
    _ghost_splits_divide_the_batch,
    _min_lr_below_peak,
    _val_loss_needs_a_validation_set,
    _resnet9_switches_only_on_resnet9,
    _stem_only_on_resnet18,
    _bias_scales_only_with_sgd,
    _schedule_leaves_room_to_decay,
)
