"""The one place every setting of a training run is defined: default, unit, help, allowed
values. The command line (`tf_resnet9.config_flags`) is generated from these fields."""

from __future__ import annotations

import dataclasses

from tf_resnet9.data import DATASETS
from tf_resnet9.recipes import RECIPES

MODELS = ("resnet9", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "resnet18")
OPTIMIZERS = ("nesterov_sgd", "sgd", "adam")
LR_SCHEDULES = ("piecewise_linear", "multi_step", "cosine", "plateau")
PLATEAU_MONITORS = ("train_loss", "val_loss")
PADS = ("reflect", "zero")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
INITS = ("torch", "he_uniform", "he_normal")
ACTIVATIONS = ("relu", "celu")
AUGMENT_MODES = ("device", "host")
DATASET_NAMES = tuple(DATASETS)
RECIPE_EPOCHS = 24  # the length the recipe's schedule was tuned for


class ConfigError(ValueError):
    """A training setting is invalid.

    Attributes:
        setting: The setting's name (the same as its command-line flag).
        value: The value given.
        reason: What is wrong, or what is allowed.
    """

    def __init__(self, setting: str, value, reason: str):
        super().__init__(f"{setting}={value!r} is invalid: {reason}")
        self.setting, self.value, self.reason = setting, value, reason


def _setting(default, help: str, choices: tuple[str, ...] | None = None):
    return dataclasses.field(default=default, metadata={"help": help, "choices": choices})


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run. Defaults are David Page's 24-epoch recipe (`page24`);
    `TrainConfig.from_recipe` starts from another recipe's (`tf_resnet9.recipes`).

    Learning rate and weight decay are in mean-loss units: the reference sums the loss over
    the batch and uses lr / batch_size and weight_decay * batch_size, which is the same update
    (see `tf_resnet9.optimizer.to_summed_loss_units`).
    """

    recipe: str = _setting(
        "page24",
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
        "cifar10", "The data set: cifar10, or cifar100 (its 100 fine labels).", DATASET_NAMES
    )
    epochs: int = _setting(RECIPE_EPOCHS, "Epochs to train; the lr peaks at 5/24 of them.")
    batch_size: int = _setting(512, "Images per step; the last partial batch is dropped.")
    optimizer: str = _setting(
        "nesterov_sgd",
        "nesterov_sgd (the recipe's), sgd (heavy-ball momentum) or adam; all with coupled "
        "L2 weight decay.",
        OPTIMIZERS,
    )
    peak_lr: float = _setting(
        0.4, "Peak (piecewise_linear) or initial learning rate per step, mean-loss units."
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
    )
    lr_milestones: tuple[float, ...] = _setting(
        (0.5, 0.75), "multi_step: where the lr drops, as fractions of the epochs."
    )
    lr_decay: float = _setting(0.1, "multi_step and plateau: the factor of each drop.")
    min_lr: float = _setting(0.0, "piecewise_linear and cosine: the final lr; plateau: the floor.")
    lr_hold_epochs: float = _setting(
        0.0, "piecewise_linear: the last epochs held at min_lr (of the recipe's length)."
    )
    plateau_patience: int = _setting(
        10, "plateau: epochs without improvement (Keras' min_delta 1e-4) before a drop."
    )
    plateau_monitor: str = _setting(
        "train_loss",
        "plateau: the loss watched; val_loss needs --val_split (never the test loss).",
        PLATEAU_MONITORS,
    )
    momentum: float = _setting(0.9, "Momentum of nesterov_sgd and sgd.")
    weight_decay: float = _setting(
        5e-4, "Coupled L2 weight decay: added to the gradient, enters the momentum."
    )
    init: str = _setting(
        "torch",
        "Kernel initialisation: torch = U(+-1/sqrt(fan_in)) (the recipe); he_uniform is "
        "sqrt(6) times wider; he_normal N(0, 2/fan_in).",
        INITS,
    )
    width: float = _setting(1.0, "Multiplies every channel count (64/128/256/512); > 0.")
    logit_scale: float = _setting(0.125, "Constant multiplying the logits.")
    activation: str = _setting(
        "relu", "ResNet9's activation: relu, or celu (Page's later recipe).", ACTIVATIONS
    )
    celu_alpha: float = _setting(0.3, "celu: its alpha, CELU(x) = max(0,x) + min(0, a(e^(x/a)-1)).")
    pool_before_bn: bool = _setting(
        False,
        "ResNet9's pooled layers as conv -> pool -> BN -> act (else conv -> BN -> act -> pool).",
    )
    whiten_prep: bool = _setting(
        False,
        "ResNet9's prep layer: a fixed 3x3 patch-whitening convolution (from the training "
        "images), then 1x1 to 64 channels, BN, act.",
    )
    freeze_bn_scale: bool = _setting(
        False, "ResNet9: BatchNorm's scale (gamma) fixed at 1, not trained."
    )
    ghost_bn_splits: int = _setting(
        1,
        "ResNet9: BatchNorm's training statistics per this many equal sub-batches (ghost "
        "BatchNorm); inference uses their running averages, averaged over the splits.",
    )
    label_smoothing: float = _setting(
        0.0, "Training targets (1 - s) one-hot + s / classes (the loss reported too)."
    )
    ema_momentum: float = _setting(
        0.0,
        "Evaluate (and save) an exponential moving average of the weights and BatchNorm "
        "statistics with this momentum per step (Page: 0.99); 0: off.",
    )
    ema_every: int = _setting(5, "Move the average every N updates, by momentum**N (Page: 5).")
    tta_flip: bool = _setting(
        False, "Evaluate on the mean of the logits of each image and its mirror image."
    )
    bn_bias_lr_scale: float = _setting(
        1.0, "nesterov_sgd: BatchNorm biases (beta) train with lr times this (Page: 64)."
    )
    bn_bias_wd_scale: float = _setting(
        1.0, "nesterov_sgd: BatchNorm biases' weight decay times this (Page: 1/64)."
    )
    precision: str | None = _setting(
        None,
        "Unset: mixed_bfloat16 on a GPU with bf16, mixed_float16 on older GPUs, float32 on a CPU.",
        PRECISIONS,
    )
    jit: bool = _setting(True, "XLA-compile the train and eval steps.")
    pad: str = _setting(
        "reflect",
        "Training augmentation's 4-pixel padding before the random crop: reflect (Page) or "
        "zero (He et al.).",
        PADS,
    )
    cutout: bool = _setting(True, "Training augmentation: cut out an 8x8 square.")
    augment: str | None = _setting(
        None,
        "Where crop, flip and cutout run: device (the training set on the accelerator) or "
        "host (tf.data, TensorFlow only). Unset: host on TensorFlow, device on JAX.",
        AUGMENT_MODES,
    )
    steps_per_call: int | None = _setting(
        None,
        "Training steps per compiled call. Unset: a whole epoch with --augment device on a "
        "GPU, else 1 (XLA's CPU backend runs convolutions in loops far slower).",
    )
    seed: int = _setting(0, "Seeds initialisation, shuffling and augmentation.")
    train_limit: int | None = _setting(
        None, "Train on a random, class-balanced subset of N images (quick runs)."
    )
    test_limit: int | None = _setting(
        None, "Evaluate on a random, class-balanced subset of N images (quick runs)."
    )
    val_split: int = _setting(
        0,
        "Hold out N training images (random, class-balanced) as a validation set, "
        "evaluated after every epoch (He et al.: 5000).",
    )
    subset_seed: int = _setting(
        0, "Seeds the choice of the --train_limit, --test_limit and --val_split subsets."
    )
    deterministic: bool = _setting(
        False, "Make every op deterministic: two runs with the same seed give the same numbers."
    )
    keep_checkpoints: int = _setting(
        2, "Checkpoints kept in WORKDIR/checkpoints (one is written after every epoch)."
    )
    tensorboard: bool = _setting(True, "Write TensorBoard logs to WORKDIR/tensorboard.")
    grad_log_every: int = _setting(
        25, "Log each layer group's gradient norm to TensorBoard every N steps."
    )

    def __post_init__(self):
        _require(self.epochs >= 1, "epochs", self.epochs, "an integer >= 1")
        _require(self.batch_size >= 1, "batch_size", self.batch_size, "an integer >= 1")
        _require(self.peak_lr > 0, "peak_lr", self.peak_lr, "a number > 0")
        _require(self.warmup_epochs > 0, "warmup_epochs", self.warmup_epochs, "a number > 0")
        _require(0 <= self.momentum < 1, "momentum", self.momentum, "a number in [0, 1)")
        _require(self.weight_decay >= 0, "weight_decay", self.weight_decay, "a number >= 0")
        _require(self.init in INITS, "init", self.init, f"one of {', '.join(INITS)}")
        _require(self.width > 0, "width", self.width, "a number > 0")
        _require(self.logit_scale > 0, "logit_scale", self.logit_scale, "a number > 0")
        _require(self.celu_alpha > 0, "celu_alpha", self.celu_alpha, "a number > 0")
        _require(
            0 <= self.ema_momentum < 1, "ema_momentum", self.ema_momentum, "a number in [0, 1)"
        )
        _require(
            0 <= self.label_smoothing < 1,
            "label_smoothing",
            self.label_smoothing,
            "a number in [0, 1)",
        )
        for name in ("bn_bias_lr_scale", "bn_bias_wd_scale"):
            _require(getattr(self, name) > 0, name, getattr(self, name), "a number > 0")
        _require(
            self.ghost_bn_splits >= 1 and self.batch_size % self.ghost_bn_splits == 0,
            "ghost_bn_splits",
            self.ghost_bn_splits,
            f"an integer >= 1 dividing batch_size={self.batch_size}",
        )
        _require(0 < self.lr_decay < 1, "lr_decay", self.lr_decay, "a number between 0 and 1")
        _require(0 <= self.min_lr < self.peak_lr, "min_lr", self.min_lr, "a number in [0, peak_lr)")
        milestones = self.lr_milestones
        _require(
            len(milestones) >= 1
            and all(0 < m < 1 for m in milestones)
            and all(b > a for a, b in zip(milestones, milestones[1:])),
            "lr_milestones",
            milestones,
            "increasing fractions of training, each between 0 and 1",
        )
        _require(self.val_split >= 0, "val_split", self.val_split, "an integer >= 0")
        _require(
            self.plateau_monitor != "val_loss" or self.val_split > 0,
            "plateau_monitor",
            self.plateau_monitor,
            "val_loss needs a validation set: --val_split N",
        )
        for name in (
            "recipe",
            "model",
            "dataset",
            "optimizer",
            "lr_schedule",
            "pad",
            "activation",
            "precision",
            "augment",
            "plateau_monitor",
        ):
            choices = self.field_choices(name)
            value = getattr(self, name)
            _require(value is None or value in choices, name, value, f"one of {', '.join(choices)}")
        for name in ("keep_checkpoints", "grad_log_every", "plateau_patience", "ema_every"):
            _require(getattr(self, name) >= 1, name, getattr(self, name), "an integer >= 1")
        for name in ("steps_per_call", "train_limit", "test_limit"):
            value = getattr(self, name)
            _require(value is None or value >= 1, name, value, "an integer >= 1 (or unset)")
        resnet9_only = {
            "activation": "relu",
            "pool_before_bn": False,
            "freeze_bn_scale": False,
            "ghost_bn_splits": 1,
            "whiten_prep": False,
        }
        for name, plain in resnet9_only.items():
            _require(
                self.model == "resnet9" or getattr(self, name) == plain,
                name,
                getattr(self, name),
                f"{plain!r}: it is a switch of ResNet9, not of {self.model}",
            )
        for name in ("bn_bias_lr_scale", "bn_bias_wd_scale"):
            _require(
                self.optimizer != "adam" or getattr(self, name) == 1.0,
                name,
                getattr(self, name),
                "1.0 with adam (the scales are for the SGD optimizers)",
            )
        _require(self.lr_hold_epochs >= 0, "lr_hold_epochs", self.lr_hold_epochs, "a number >= 0")
        knots = self.lr_knots[0] if self.lr_schedule == "piecewise_linear" else ()
        _require(
            all(b > a for a, b in zip(knots, knots[1:])),
            "lr_hold_epochs" if self.lr_hold_epochs else "warmup_epochs",
            self.lr_hold_epochs or self.warmup_epochs,
            f"a warm-up and hold that leave room for the decay in {self.epochs} epochs",
        )

    @classmethod
    def from_recipe(cls, recipe: str = "page24", **settings) -> TrainConfig:
        """The settings of `recipe` (`tf_resnet9.recipes.RECIPES`), `settings` overriding.

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
        return (0.0, peak_epoch, decay_end, float(self.epochs)), (
            0.0,
            self.peak_lr,
            self.min_lr,
            self.min_lr,
        )


def _require(condition: bool, name: str, value, allowed: str) -> None:
    if not condition:
        raise ConfigError(name, value, f"expected {allowed}.")
