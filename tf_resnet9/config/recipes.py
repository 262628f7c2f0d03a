"""Recipes: named, documented sets of training settings, each from a published source.

A recipe gives defaults; any setting given explicitly (a command-line flag, or a keyword of
`TrainConfig.from_recipe`) overrides it, and results.json records the resolved values.
`page24` is `TrainConfig`'s own defaults. A default may depend on other settings (a
function of them): He et al.'s epoch count depends on whether 5,000 images are held out.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A named set of defaults.

    Attributes:
        name: The `--recipe` value.
        source: Where its numbers come from.
        summary: One line on what it is.
        reported: Test accuracy its source reports, per model (empty: none published).
        note: How to read those figures.
        defaults: `TrainConfig` field -> value, or -> function of the other settings
            (a dict of those given and the recipe's constant defaults).
    """

    name: str
    source: str
    summary: str
    reported: Mapping[str, float]
    note: str
    defaults: Mapping[str, object | Callable[[Mapping[str, object]], object]]

    def settings(self, given: Mapping[str, object]) -> dict[str, object]:
        """The recipe's defaults with `given` on top, derived defaults worked out."""
        constants = {k: v for k, v in self.defaults.items() if not callable(v)}
        known = constants | dict(given)
        derived = {k: v(known) for k, v in self.defaults.items() if callable(v) and k not in given}
        return known | derived


DEFAULT_RECIPE = "page24"  # `TrainConfig`'s own defaults
_CIFAR_RESNET_AUGMENT = {"pad": "zero", "cutout": False}  # 4 zero pixels, crop 32, flip

_AIRBENCH_SOURCE = (
    'K. Jordan, "94% on CIFAR-10 in 3.29 Seconds on a Single GPU" (2024), '
    "github.com/KellerJordan/cifar10-airbench"
)
_AIRBENCH_MOMENTUM = 0.85


def _airbench_lr(lr: float) -> float:
    """airbench's lr (per 1,024 examples, whatever the momentum) as a mean loss's at batch
    1,024: lr / (1 + 1 / (1 - momentum)) (`tf_resnet9.training.optimizers.
    from_airbench_units`; its weight decay is weight_decay / lr, whatever the batch)."""
    return lr / (1 + 1 / (1 - _AIRBENCH_MOMENTUM))


def _airbench(name: str, lr: float, weight_decay: float, warmup: float, end: float, **own):
    """The legacy airbench recipes' settings (airbench94, 95, 96): `own` on top of what
    they share. airbench's lr and weight decay per 1,024 examples, its warm-up as a share
    of the run and its final lr as a factor of the peak."""
    epochs, peak = own["epochs"], _airbench_lr(lr)
    return {
        "model": name,
        "batch_size": 1024,
        "optimizer": "torch_nesterov_sgd",
        "momentum": _AIRBENCH_MOMENTUM,
        "peak_lr": peak,
        "weight_decay": weight_decay / lr,
        "lr_schedule": "warmup_linear",
        "warmup_epochs": warmup * epochs,
        "initial_lr": 0.2 * peak,
        "min_lr": end * peak,
        "bn_bias_lr_scale": 64.0,
        "bn_bias_wd_scale": 1 / 64,
        **_AIRBENCH_NETWORK,
        "lookahead": True,
        **_AIRBENCH_AUGMENT,
        **own,
    }


# What every airbench recipe shares: the network's settings, the loss, the evaluation ...
_AIRBENCH_NETWORK = {
    "init": "torch",
    "activation": "gelu",
    "bn_momentum": 0.6,  # PyTorch's 0.4
    "bn_epsilon": 1e-12,
    "whiten_patch": 2,
    "whiten_bias_epochs": 3.0,
    "dirac_init": True,
    "logit_scale": 1 / 9,
    "label_smoothing": 0.2,
    "normalize": "airbench",
    "tta_level": 2,
}
# ... and the augmentation: reflect-padded translation by up to 2 pixels, alternating flip.
_AIRBENCH_AUGMENT = {"pad": "reflect", "translate": 2, "cutout": False, "flip": "alternating"}
_AIRBENCH_NOTE = (
    "the mean of {runs} runs on an A100 (airbench's README), {seconds} s each; "
    "README.org gives what was measured here"
)

RECIPES = {
    recipe.name: recipe
    for recipe in (
        Recipe(
            name=DEFAULT_RECIPE,
            source='D. Page, "How to train your ResNet" (Myrtle.ai, 2018), cifar10-fast\'s '
            "dawn.py: DAWNBench's 79 s entry",
            summary="ResNet9, Nesterov SGD, piecewise-linear lr 0 -> 0.4 -> 0 over 24 "
            "epochs, batch 512, reflect-pad crop, flip, cutout 8x8",
            reported={"resnet9": 0.94},
            note="the median of 50 runs on a V100: 94.08%; 35 of them reached 94%",
            defaults={},  # TrainConfig's own defaults
        ),
        Recipe(
            name="page10",
            source='D. Page, "How to train your ResNet 8: Bag of tricks" (Myrtle.ai, '
            "2019) and its notebook: 26 s on a V100",
            summary="ResNet9 with ghost BatchNorm (16 x 32), BN scale frozen at 1, CELU(0.3), "
            "pool before BN, a patch-whitening prep, logits x 1/16, label smoothing 0.2, no "
            "cutout, lr 0 -> 1.0 (epoch 2) -> 0.1 (epoch 8) held to 10, BN biases at lr x64 "
            "and weight decay / 64, an EMA of the weights (0.99 every 5 steps) evaluated "
            "with flip test-time augmentation",
            reported={"resnet9": 0.94},
            note="94.1% with flip test-time augmentation (Page's figure for the 26 s run)",
            defaults={
                "epochs": 10,
                "peak_lr": 1.0,
                "warmup_epochs": 2.0,
                "min_lr": 0.1,
                "lr_hold_epochs": 2.0,
                "logit_scale": 1 / 16,
                "activation": "celu",
                "celu_alpha": 0.3,
                "pool_before_bn": True,
                "freeze_bn_scale": True,
                "ghost_bn_splits": 16,
                "whiten_prep": True,
                "label_smoothing": 0.2,
                "cutout": False,
                "bn_bias_lr_scale": 64.0,
                "bn_bias_wd_scale": 1 / 64,
                "ema_momentum": 0.99,
                "ema_every": 5,
                "tta_level": 1,
            },
        ),
        Recipe(
            name="he2016",
            source='K. He, X. Zhang, S. Ren, J. Sun, "Deep Residual Learning for Image '
            'Recognition", CVPR 2016, Section 4.2',
            summary="ResNet-20/32/44/56/110 (option A), momentum SGD 0.9, L2 1e-4, batch "
            "128, lr 0.1 / 10 at 50% and 75% of training (32k and 48k of 64k iterations), "
            "zero-pad 4, crop, flip, He-normal init",
            # Table 6: test error 8.75%, 7.51%, 7.17%, 6.97%, 6.43%.
            reported={
                "resnet20": 0.9125,
                "resnet32": 0.9249,
                "resnet44": 0.9283,
                "resnet56": 0.9303,
                "resnet110": 0.9357,
            },
            note="one run each, ResNet-110 the best of 5 (mean error 6.61%); trained on 45k "
            "images, the lr warmed up at 0.01 for ResNet-110's first 400 iterations",
            defaults={
                "model": "resnet20",
                "optimizer": "sgd",
                "momentum": 0.9,
                "weight_decay": 1e-4,
                "batch_size": 128,
                "peak_lr": 0.1,
                "lr_schedule": "multi_step",
                "lr_milestones": (0.5, 0.75),
                "lr_decay": 0.1,
                "init": "he_normal",
                "logit_scale": 1.0,
                **_CIFAR_RESNET_AUGMENT,
                # 64k iterations of 128 images: 182 epochs of 45k (351 steps each), 164 of 50k.
                "epochs": lambda known: 182 if known.get("val_split") else 164,
            },
        ),
        Recipe(
            name="adam_plateau",
            source="A CIFAR ResNet-18 study in PyTorch (torchvision's basic blocks with a "
            "CIFAR stem): Adam, lr 1e-3, weight decay 1e-5, lr x0.1 when the loss stops "
            "falling, floor 1e-6; the decay rule here is Keras' ReduceLROnPlateau",
            summary="ResNet-18 (CIFAR stem), Adam with L2 1e-5, lr 1e-3 x0.1 after "
            "--plateau_patience epochs without a lower training loss, floor 1e-6, batch "
            "128, zero-pad 4, crop, flip",
            reported={},
            note="no published figure for this recipe: README.org gives what was measured",
            defaults={
                "model": "resnet18",
                "optimizer": "adam",
                "weight_decay": 1e-5,
                "batch_size": 128,
                "peak_lr": 1e-3,
                "lr_schedule": "plateau",
                "lr_decay": 0.1,
                "min_lr": 1e-6,
                "plateau_patience": 3,
                "epochs": 50,
                "init": "torch",
                "logit_scale": 1.0,
                **_CIFAR_RESNET_AUGMENT,
            },
        ),
        Recipe(
            name="airbench94",
            source=_AIRBENCH_SOURCE + ": legacy/airbench94.py",
            summary="airbench94's network (2x2 patch whitening, three conv groups 64/256/256, "
            "GELU), PyTorch's Nesterov SGD, 9.9 epochs of batch 1,024, lr warm-up over 23% "
            "then down to 7%, lookahead, translate 2 with alternating flip, TTA level 2",
            reported={"airbench94": 0.9401},
            note=_AIRBENCH_NOTE.format(runs="1,000", seconds="3.83"),
            defaults=_airbench("airbench94", 11.5, 0.0153, 0.23, 0.07, epochs=9.9),
        ),
        Recipe(
            name="airbench95",
            source=_AIRBENCH_SOURCE + ": legacy/airbench95.py",
            summary="airbench94's recipe on a wider network (128/384/384) for 15 epochs, "
            "lr 10.0 (airbench's units)",
            reported={"airbench95": 0.9501},
            note=_AIRBENCH_NOTE.format(runs="200", seconds="10.4"),
            defaults=_airbench("airbench95", 10.0, 0.0153, 0.23, 0.07, epochs=15),
        ),
        Recipe(
            name="airbench96",
            source=_AIRBENCH_SOURCE + ": legacy/airbench96.py",
            summary="widths 128/384/512, three convolutions a group with a residual over the "
            "last two, 37 epochs, lr 9.0 and weight decay 0.012 (airbench's units), warm-up "
            "10% then down to 0, translate 4, cutout 12x12",
            reported={"airbench96": 0.9603},
            note=_AIRBENCH_NOTE.format(runs="200", seconds="34.7"),
            defaults=_airbench(
                "airbench96",
                9.0,
                0.012,
                0.1,
                0.0,
                epochs=37,
                bn_momentum=0.9,  # PyTorch's default: airbench96 leaves it unset
                translate=4,
                cutout=True,
                cutout_size=12,
            ),
        ),
        Recipe(
            name="airbench94_muon",
            source=_AIRBENCH_SOURCE + ": airbench94_muon.py",
            summary="airbench94's network (its whitening filters in ascending order, the "
            "whitening bias and head initialised as PyTorch's and at unit std, logits / the "
            "head's width), "
            "Muon on the convolution kernels and Nesterov SGD on the rest, 8 epochs of batch "
            "2,000, every lr linear to 0, no lookahead",
            reported={"airbench94_muon": 0.9401},
            note=_AIRBENCH_NOTE.format(runs="200", seconds="2.59"),
            defaults={
                "model": "airbench94_muon",
                "epochs": 8,
                "batch_size": 2000,
                "optimizer": "muon",
                "muon_lr": 0.24,
                "muon_momentum": 0.6,
                "momentum": _AIRBENCH_MOMENTUM,
                # airbench94_muon's SGD groups sum the loss: lr x batch for a mean loss, and
                # a decay of 2e-6 x batch per update at lr 1 (weight decay = decay / lr).
                "peak_lr": 0.67 * 2000,  # the head's
                "weight_decay": 2e-6 / 0.67,
                "bn_bias_lr_scale": 0.053 / 0.67,  # the biases' lr 0.053
                "bn_bias_wd_scale": 0.67 / 0.053,  # the same decay per update
                "lr_schedule": "warmup_linear",
                "warmup_epochs": 0.0,
                "min_lr": 0.0,
                **_AIRBENCH_NETWORK,
                "logit_scale": None,  # 1 / the head's width: 1/256
                **_AIRBENCH_AUGMENT,
            },
        ),
    )
}
