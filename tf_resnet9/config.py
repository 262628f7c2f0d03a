"""The one place every hyperparameter of the recipe is defined (../shared/RECIPE.md)."""

from __future__ import annotations

import dataclasses

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
INITS = ("torch", "he_uniform")
AUGMENT_MODES = ("device", "host")
RECIPE_EPOCHS = 24  # the length the recipe's schedule was tuned for


class ConfigError(ValueError):
    """A training setting is invalid; the message names the setting."""


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run. Defaults are David Page's 24-epoch recipe.

    Learning rate and weight decay are in mean-loss units: the reference sums the loss over
    the batch and uses lr / batch_size and weight_decay * batch_size, which is the same update
    (see `tf_resnet9.optimizer.to_summed_loss_units`).
    """

    epochs: int = RECIPE_EPOCHS
    batch_size: int = 512  # images per step; the last partial batch is dropped
    peak_lr: float = 0.4  # per step, mean-loss units
    warmup_epochs: float = 5.0  # lr rises linearly 0 -> peak_lr, then falls to 0 at `epochs`
    momentum: float = 0.9  # Nesterov
    weight_decay: float = 5e-4  # coupled L2: added to the gradient, enters the momentum
    init: str = "torch"  # "torch": U(+-1/sqrt(fan_in)); "he_uniform": sqrt(6) times wider
    width: float = 1.0  # multiplies every channel count (64/128/256/512)
    logit_scale: float = 0.125
    precision: str | None = None  # None: mixed_bfloat16 on a bf16 GPU, float32 on CPU
    jit: bool = True  # XLA-compile the train and eval steps
    augment: str | None = None  # None: "host" (tf.data) on TensorFlow, "device" on JAX
    steps_per_call: int | None = None  # None: an epoch per call (device augment, GPU), else 1
    seed: int = 0
    train_limit: int | None = None  # use only the first N training images
    test_limit: int | None = None  # use only the first N test images

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
        _require(
            self.precision is None or self.precision in PRECISIONS,
            "precision",
            self.precision,
            f"one of {', '.join(PRECISIONS)}",
        )
        _require(
            self.augment is None or self.augment in AUGMENT_MODES,
            "augment",
            self.augment,
            f"one of {', '.join(AUGMENT_MODES)}",
        )
        for name in ("steps_per_call", "train_limit", "test_limit"):
            value = getattr(self, name)
            _require(value is None or value >= 1, name, value, "an integer >= 1 (or unset)")

    @property
    def lr_knots(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """(epochs, values) of the piecewise-linear learning rate.

        The recipe's knots are (0, 0), (5, 0.4), (24, 0). Shorter runs keep the peak at the
        same fraction of training (5/24), so a quick 2-epoch run still warms up and decays.
        """
        peak_epoch = min(self.warmup_epochs, self.warmup_epochs * self.epochs / RECIPE_EPOCHS)
        return (0.0, peak_epoch, float(self.epochs)), (0.0, self.peak_lr, 0.0)


def _require(condition: bool, name: str, value, allowed: str) -> None:
    if not condition:
        raise ConfigError(f"{name}={value!r} is invalid: expected {allowed}.")
