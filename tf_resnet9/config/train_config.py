"""The one place every setting of a training run is defined: default, unit, help, allowed
values and range. The command line (`tf_resnet9.config.flags`) is generated from these
fields."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import NamedTuple

from tf_resnet9.backends.device import parse_bytes
from tf_resnet9.config.recipes import DEFAULT_RECIPE, RECIPES
from tf_resnet9.data.cifar import DATASETS
from tf_resnet9.data.splits import FOLDER
from tf_resnet9.data.tfds_source import PREFIX as TFDS
from tf_resnet9.errors import ConfigError
from tf_resnet9.models import ACTIVATIONS, AIRBENCH_MODELS, INITS, MODELS

OPTIMIZERS = ("nesterov_sgd", "sgd", "adam", "torch_nesterov_sgd", "muon")
# The optimizers with variable groups (`tf_resnet9.training.optimizers.TorchNesterovSGD`).
GROUPED_OPTIMIZERS = ("torch_nesterov_sgd", "muon")
LR_SCHEDULES = ("piecewise_linear", "multi_step", "cosine", "plateau", "warmup_linear")
PLATEAU_MONITORS = ("train_loss", "val_loss")
PADS = ("reflect", "zero")  # as `tf_resnet9.data.augment.pad_images` takes them
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
# The recipe's constants, the training images' own, or airbench's (CIFAR-10's, its digits).
NORMALIZATIONS = ("cifar10", "data", "airbench")
STEMS = ("cifar", "imagenet")  # ResNet-18's first layers
AUGMENT_MODES = ("device", "host")
FLIPS = ("random", "alternating")  # as `tf_resnet9.data.inputs.DeviceInput` takes them
TTA_LEVELS = (0, 1, 2)  # as `tf_resnet9.training.tta.tta_logits` takes them
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
# Keras and NumPy take seeds of 32 bits.
_SEED = Check(lambda v: 0 <= v < 2**32, f"an integer in 0..{2**32 - 1}")
_OPEN_FRACTION = Check(lambda v: 0 < v < 1, "a number between 0 and 1")


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
        "adam_plateau, airbench94, airbench94_muon, airbench95, airbench96; README.org); "
        "flags given override it.",
        tuple(RECIPES),
    )
    model: str = _setting(
        "resnet9",
        "The network: resnet9 (Page), resnet20/32/44/56/110 (He et al. 2016), resnet18, "
        "airbench94/95/96 and airbench94_muon (Keller Jordan's).",
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
        "the training images' own; airbench: airbench's figures for CIFAR-10. Unset: "
        "cifar10 for CIFAR-10 and CIFAR-100, data for a class folder or a "
        "tensorflow-datasets data set.",
        NORMALIZATIONS,
    )
    epochs: float = _setting(
        RECIPE_EPOCHS,
        "Epochs to train; a fraction trains the last epoch part-way: ceil(epochs x steps "
        "per epoch) updates in all (airbench94: 9.9).",
        check=_POSITIVE,
    )
    batch_size: int = _setting(
        512, "Images per step; the last partial batch is dropped.", check=_at_least(1)
    )
    optimizer: str = _setting(
        "nesterov_sgd",
        "nesterov_sgd (the recipe's: the lr multiplies the gradient entering the momentum), "
        "sgd (heavy-ball momentum), adam, torch_nesterov_sgd (PyTorch's Nesterov form: the "
        "lr multiplies the momentum's output; airbench's) or muon (Muon on the convolution "
        "kernels, torch_nesterov_sgd on the rest: airbench94_muon's); all with coupled L2 "
        "weight decay.",
        OPTIMIZERS,
    )
    peak_lr: float = _setting(
        0.4,
        "Peak (piecewise_linear, warmup_linear) or initial learning rate per step, mean-loss "
        "units.",
        check=_POSITIVE,
    )
    lr_schedule: str = _setting(
        "piecewise_linear",
        "piecewise_linear (0 -> peak_lr -> 0), multi_step (x lr_decay at each of "
        "lr_milestones), cosine (to min_lr), plateau (x lr_decay when the monitored loss "
        "stalls for plateau_patience epochs, not below min_lr), warmup_linear (airbench's: "
        "initial_lr -> peak_lr linearly over the warm-up, then linearly towards min_lr, per "
        "update).",
        LR_SCHEDULES,
    )
    warmup_epochs: float = _setting(
        5.0,
        "piecewise_linear and warmup_linear: epochs of linear warm-up to peak_lr (of the "
        "recipe's length: scaled for shorter runs).",
        check=_NONNEGATIVE,
    )
    initial_lr: float = _setting(
        0.0,
        "warmup_linear: the lr of the first update (airbench: 0.2 x peak_lr).",
        check=_NONNEGATIVE,
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
        0.0,
        "piecewise_linear, cosine and warmup_linear: the final lr; plateau: the floor.",
        check=_NONNEGATIVE,
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
    momentum: float = _setting(
        0.9, "Momentum of the SGD optimizers (and of muon's other variables).", check=_FRACTION
    )
    muon_lr: float = _setting(
        0.24,
        "muon: the convolution kernels' learning rate at the schedule's peak (Muon's steps "
        "are orthogonalised: no loss units).",
        check=_POSITIVE,
    )
    muon_momentum: float = _setting(
        0.6, "muon: the convolution kernels' Nesterov momentum.", check=_FRACTION
    )
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
    logit_scale: float | None = _setting(
        0.125,
        "Constant multiplying the logits; none: 1 / the head's input width (airbench networks "
        "only: airbench94_muon's 1/256 at full width).",
        check=_POSITIVE,
    )
    activation: str | None = _setting(
        None,
        "ResNet9's activation: relu, celu (Page's later recipe) or gelu (exact, erf form). "
        "Unset: the network's own (relu; the airbench networks' gelu, their only one).",
        ACTIVATIONS,
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
    bn_momentum: float | None = _setting(
        None,
        "BatchNorm's momentum in Keras' convention (running = m running + (1 - m) batch; "
        "PyTorch's momentum is 1 - m). Unset: the network's own (0.9, PyTorch's default; "
        "airbench94/95 0.6).",
        check=_OPEN_FRACTION,
    )
    bn_epsilon: float | None = _setting(
        None,
        "BatchNorm's epsilon. Unset: the network's own (1e-5, PyTorch's; airbench 1e-12).",
        check=_POSITIVE,
    )
    whiten_patch: int | None = _setting(
        None,
        "The patch-whitening layer's patch side (ResNet9's --whiten_prep, the airbench "
        "networks' first layer). Unset: the network's own (3; airbench 2).",
        check=_at_least(1),
    )
    whiten_bias_epochs: float | None = _setting(
        None,
        "airbench networks: their whitening layer's bias trains for the first N epochs, then "
        "stays as it is (no step, momentum or decay after); torch_nesterov_sgd at the run's "
        "lr, muon at the BN biases' falling linearly to 0 over those epochs. Unset: "
        "throughout.",
        check=_NONNEGATIVE,
    )
    dirac_init: bool | None = _setting(
        None,
        "airbench networks: the first in_channels filters of each 3x3 convolution start as "
        "identities. Unset: on (airbench's).",
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
    lookahead: bool = _setting(
        False,
        "airbench's lookahead: every 5 updates an average of the weights and BN statistics "
        "moves towards them (decay 0.95^5 (t/T)^3) and they are set to it; at the end they "
        "become the average.",
    )
    tta_level: int = _setting(
        0,
        "Test-time augmentation: 0 none; 1 the mean of the logits of each image and its "
        "mirror image (Page); 2 those and both moved one pixel diagonally each way "
        "(airbench: weights 1/4, 1/4, 1/8 x 4).",
        check=Check(lambda v: v in TTA_LEVELS, "0, 1 or 2"),
    )
    bn_bias_lr_scale: float = _setting(
        1.0,
        "BatchNorm biases (beta) train with lr times this (Page: 64); not with adam.",
        check=_POSITIVE,
    )
    bn_bias_wd_scale: float = _setting(
        1.0,
        "BatchNorm biases' weight decay times this (Page: 1/64); not with adam.",
        check=_POSITIVE,
    )
    precision: str | None = _setting(
        None,
        "Unset: mixed_bfloat16 on a GPU with bf16, mixed_float16 on older GPUs, float32 on a CPU.",
        PRECISIONS,
    )
    jit: bool | None = _setting(
        None,
        "XLA-compile the train and eval steps. Unset: on, but off with TensorFlow on a CPU "
        "in float32, where its own kernels are faster.",
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
        "Training augmentation's padding before the random crop (--translate pixels): "
        "reflect (Page, airbench) or zero (He et al.).",
        PADS,
    )
    translate: int | None = _setting(
        None,
        "Training augmentation: pad each side by this many pixels and crop back at random, "
        "moving images by up to as much (airbench94: 2). Unset: an eighth of the side (4 at "
        "32x32).",
        check=_at_least(0),
    )
    cutout: bool = _setting(True, "Training augmentation: cut out a square (cutout_size).")
    cutout_size: int | None = _setting(
        None,
        "The cutout square's side (airbench96: 12). Unset: a quarter of the image's (8 at 32x32).",
        check=_at_least(1),
    )
    flip: str = _setting(
        "random",
        "Training augmentation's mirroring: random (each image with probability 1/2, every "
        "epoch: Page's) or alternating (airbench's: each image's flip drawn once, then the "
        "whole set mirrored every other epoch).",
        FLIPS,
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
    seed: int = _setting(0, "Seeds initialisation, shuffling and augmentation.", check=_SEED)
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
        0,
        "Seeds the choice of the --train_limit, --test_limit and --val_split subsets.",
        check=_SEED,
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

    def updates(self, steps_per_epoch: int) -> int:
        """The run's updates: ceil(epochs x steps_per_epoch) (airbench94's 9.9 epochs of 48
        steps: 476), a product within round-off of a whole number taken as it."""
        return math.ceil(self.epochs * steps_per_epoch - _ROUND_OFF)

    def epochs_run(self, steps_per_epoch: int) -> int:
        """Epochs the run trains in, the last perhaps part-way: ceil(updates / steps)."""
        return -(-self.updates(steps_per_epoch) // steps_per_epoch)

    def whiten_bias_updates(self, steps_per_epoch: int) -> int | None:
        """The updates the whitening bias trains for, ceil(whiten_bias_epochs x steps) as
        airbench counts them (144 of 48-step epochs); None: all."""
        if self.whiten_bias_epochs is None:
            return None
        return math.ceil(self.whiten_bias_epochs * steps_per_epoch - _ROUND_OFF)

    def warmup_updates(self, updates: int) -> int:
        """warmup_linear: the warm-up's updates, as airbench counts them: int(updates x its
        share of the run), the share warmup_epochs / epochs (scaled as `lr_knots`' are)."""
        share = self.warmup_epochs * self._length_scale / self.epochs
        return int(updates * share + _ROUND_OFF)

    @property
    def _length_scale(self) -> float:
        """This run's length over its recipe's, at most 1: the warm-up and hold, in epochs
        of the recipe's length, keep their share of shorter runs."""
        reference = RECIPES[self.recipe].defaults.get("epochs", RECIPE_EPOCHS)
        if callable(reference):  # a recipe whose length depends on other settings
            reference = self.epochs
        return min(1.0, self.epochs / reference)

    @property
    def lr_knots(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """(epochs, values) of the piecewise-linear learning rate: 0 at the start, peak_lr
        after the warm-up, min_lr lr_hold_epochs before the end, and held there.

        page24's knots are (0, 0), (5, 0.4), (24, 0). The warm-up and the hold are in epochs
        of the recipe's own length (24 for page24): shorter runs keep them at the same
        fraction of training (5/24), so a quick 2-epoch run still warms up and decays.
        """
        shorter = self._length_scale
        peak_epoch = self.warmup_epochs * shorter
        if not self.lr_hold_epochs:
            return (0.0, peak_epoch, float(self.epochs)), (0.0, self.peak_lr, self.min_lr)
        decay_end = self.epochs - self.lr_hold_epochs * shorter
        values = (0.0, self.peak_lr, self.min_lr, self.min_lr)
        return (0.0, peak_epoch, decay_end, float(self.epochs)), values


# Products like 0.1 x 30 land a hair above the whole number they stand for.
_ROUND_OFF = 1e-9


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
    "pool_before_bn": False,
    "freeze_bn_scale": False,
    "ghost_bn_splits": 1,
    "whiten_prep": False,
}
# The airbench networks' settings, unset elsewhere.
_AIRBENCH_ONLY = ("whiten_bias_epochs", "dirac_init")


def _resnet9_switches_only_on_resnet9(c: TrainConfig) -> None:
    for name, plain in _RESNET9_ONLY.items():
        _require(
            c.model == "resnet9" or getattr(c, name) == plain,
            name,
            getattr(c, name),
            f"{plain!r}: it is a switch of ResNet9, not of {c.model}",
        )


def _airbench_settings_only_on_airbench(c: TrainConfig) -> None:
    for name in _AIRBENCH_ONLY:
        _require(
            c.model in AIRBENCH_MODELS or getattr(c, name) is None,
            name,
            getattr(c, name),
            f"none: it is a setting of the airbench networks, not of {c.model}",
        )


def _activation_of_the_network(c: TrainConfig) -> None:
    own = {"resnet9": ACTIVATIONS} | {m: ("gelu",) for m in AIRBENCH_MODELS}
    allowed = own.get(c.model, ("relu",))
    _require(
        c.activation is None or c.activation in allowed,
        "activation",
        c.activation,
        f"{' or '.join(allowed)} for {c.model} (or none, its own)",
    )


def _logit_scale_by_width_only_on_airbench(c: TrainConfig) -> None:
    _require(
        c.logit_scale is not None or c.model in AIRBENCH_MODELS,
        "logit_scale",
        c.logit_scale,
        f"a number > 0 for {c.model} (none, 1 / the head's width, is the airbench networks')",
    )


def _whitening_where_there_is_one(c: TrainConfig) -> None:
    _require(
        c.whiten_patch is None or c.model in AIRBENCH_MODELS or c.whiten_prep,
        "whiten_patch",
        c.whiten_patch,
        f"none: {c.model} has no whitening layer (ResNet9's needs --whiten_prep)",
    )


def _whitening_bias_needs_grouped_optimizer(c: TrainConfig) -> None:
    _require(
        c.whiten_bias_epochs is None or c.optimizer in GROUPED_OPTIMIZERS,
        "whiten_bias_epochs",
        c.whiten_bias_epochs,
        f"none with {c.optimizer}: stopping the bias is torch_nesterov_sgd's or muon's",
    )


def _muon_needs_a_schedule(c: TrainConfig) -> None:
    _require(
        c.optimizer != "muon" or c.lr_schedule != "plateau",
        "lr_schedule",
        c.lr_schedule,
        "a schedule known in advance with muon (its kernels' lr follows the schedule's shape)",
    )


def _one_average(c: TrainConfig) -> None:
    _require(
        not (c.lookahead and c.ema_momentum),
        "ema_momentum",
        c.ema_momentum,
        "0 with --lookahead (one average of the weights at a time)",
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
    knots = c.lr_knots[0] if c.lr_schedule in ("piecewise_linear", "warmup_linear") else ()
    if c.lr_schedule == "warmup_linear":  # its warm-up may be empty
        knots = knots[1:]
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
    _airbench_settings_only_on_airbench,
    _activation_of_the_network,
    _logit_scale_by_width_only_on_airbench,
    _whitening_where_there_is_one,
    _whitening_bias_needs_grouped_optimizer,
    _muon_needs_a_schedule,
    _one_average,
    _stem_only_on_resnet18,
    _bias_scales_only_with_sgd,
    _schedule_leaves_room_to_decay,
)
