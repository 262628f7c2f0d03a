"""Keller Jordan's airbench recipes in plain PyTorch, written from their description (K.
Jordan, "94% on CIFAR-10 in 3.29 Seconds on a Single GPU", 2024, and the recipes' text), as
the reference `tf_resnet9`'s airbench pieces must match. Imports nothing from `tf_resnet9`.

Four recipes (`RECIPES`): airbench94, airbench95 and airbench96 (legacy/airbench9x.py of
github.com/KellerJordan/cifar10-airbench) and airbench94_muon (airbench94_muon.py). Each,
in the order a run meets it:

- Inputs: pixels / 255, normalised by CIFAR-10's mean and std on that scale (`CIFAR_MEAN`,
  `CIFAR_STD`; close to, not equal to, Page's 0..255 figures).
- Whitening: a 2x2 convolution without padding (32 -> 31) with 24 filters: the 12
  eigenvectors of the uncentred second moments (divided by n) of the 2x2x3 patches of the
  first 5,000 training images, each over sqrt(eigenvalue + 5e-4), then their negatives; the
  legacy recipes order them by descending eigenvalue, airbench94_muon ascending. Kernel
  frozen; a bias that trains for the first 3 epochs only (no update at all after: no
  gradient step, no momentum, no decay). Then GELU (exact, the erf form).
- Three groups: conv3x3 -> maxpool 2 -> BN -> GELU -> conv3x3 -> BN -> GELU (airbench96:
  a third conv3x3 -> BN, plus the group's first GELU output, then GELU); then maxpool 3
  (3x3 -> 1x1), a linear layer without bias, the logits times 1/9 (airbench94_muon: divided
  by the last group's width).
- BatchNorm: eps 1e-12, scale frozen at 1, bias trained; PyTorch momentum 0.4 (airbench96:
  PyTorch's default, 0.1).
- Init: PyTorch's defaults, then every convolution's first `in_channels` filters set to
  identities (dirac; the whitening convolution's too in the legacy recipes, before the data
  overwrites it). Legacy: the whitening bias starts at 0. Muon: the whitening bias keeps
  PyTorch's uniform init, and the linear weight is rescaled to unit standard deviation.
- Optimizer (legacy): `torch.optim.SGD(nesterov=True)`'s update (lr outside the velocity)
  on the loss summed over the batch, with label smoothing 0.2. The hyperparameters are
  given "per 1,024 examples" and decoupled from the momentum: lr / kilostep_scale and
  weight_decay * batch / kilostep_scale with kilostep_scale = 1024 (1 + 1 / (1 - momentum))
  (`sgd_groups`). BatchNorm biases take the lr x 64 at the same decay per step.
- Schedule (legacy): a factor on every group's lr, per update k = 0, 1, ...: linear from
  0.2 to 1 over the first int(warmup x total) updates, then linear to `end_factor` at
  update `total` (never reached). Runs are fractional in epochs: total updates
  ceil(epochs x steps per epoch), the last partial batch of every epoch dropped.
- Lookahead (legacy): after every 5th update t, each float tensor of the state dict (BN
  statistics included, the momentum not) moves: average = decay average + (1 - decay)
  value, value = average, with decay 0.95^5 (t / total)^3; after the last update, the
  values become the average. The average starts as the freshly initialised network,
  before the whitening filters are computed (as airbench's code orders it).
- Muon recipe: batch 2,000, 8 epochs, no warm-up, no lookahead: Muon (`reference.torch_muon`)
  on the conv filters (lr 0.24, momentum 0.6), Nesterov SGD on the BN biases and the
  whitening bias (lr 0.053) and the linear weight (lr 0.67), momentum 0.85, weight decay
  2e-6 x batch per step at lr 1; the lr decays linearly to 0 over the run (the whitening
  bias's over its 3 epochs).
- Augmentation: each image flipped or not once, at random, before the first epoch; every
  odd epoch (counting from 0) the whole set mirrored; each epoch each image translated by
  up to `translate` pixels in y and x (reflect padding), independently; airbench96 then
  cuts out a 12x12 square lying inside the image (zeros).
- Evaluation: test-time augmentation level 2 (`tta_logits`): the logits of the image and
  its mirror (weights 0.25 each), and of both translated by one pixel up-left and by one
  down-right (0.125 each).

Checked against airbench's own code (KellerJordan/cifar10-airbench at commit f1c599c,
run from outside the repository by `reference/compare_airbench_original.py`: the same
initial weights and random draws): in float64, every weight and statistic after every
update agrees to 2e-13; tests/parity/README.md ("airbench") has the figures.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from reference.torch_muon import Muon

NUM_CLASSES = 10
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)  # per channel, pixels / 255
CIFAR_STD = (0.2470, 0.2435, 0.2616)
IMAGE_SIZE = 32
WHITEN_KERNEL = 2
WHITEN_EPS = 5e-4
WHITEN_IMAGES = 5_000
BN_EPS = 1e-12
LABEL_SMOOTHING = 0.2
LOOKAHEAD_EVERY = 5
LOOKAHEAD_BASE = 0.95**5
EVAL_BATCH = 2_000


@dataclasses.dataclass(frozen=True)
class MuonSettings:
    """airbench94_muon's optimizers, in its own (summed-loss) units."""

    filter_lr: float = 0.24
    filter_momentum: float = 0.6
    bias_lr: float = 0.053  # BN biases and the whitening bias
    head_lr: float = 0.67
    momentum: float = 0.85  # the SGD's
    weight_decay_per_image: float = 2e-6  # x batch: the decay per step at lr 1


@dataclasses.dataclass(frozen=True)
class Recipe:
    """One airbench recipe; lr and weight_decay per 1,024 examples (legacy), see above."""

    name: str
    widths: tuple[int, int, int]
    epochs: float
    batch_size: int
    target: float  # the mean test accuracy the recipe claims
    residual: bool = False  # airbench96's third conv per group
    bn_momentum: float = 0.4  # PyTorch's convention
    lr: float = 11.5
    weight_decay: float = 0.0153
    momentum: float = 0.85
    bias_scaler: float = 64.0
    warmup: float = 0.23  # fraction of the updates
    end_factor: float = 0.07
    lookahead: bool = True
    translate: int = 2
    cutout: int = 0
    whiten_bias_epochs: int = 3
    tta_level: int = 2
    muon: MuonSettings | None = None

    @property
    def legacy(self) -> bool:
        return self.muon is None


RECIPES = {
    recipe.name: recipe
    for recipe in (
        Recipe("airbench94", (64, 256, 256), epochs=9.9, batch_size=1024, target=0.94),
        Recipe("airbench95", (128, 384, 384), epochs=15, batch_size=1024, target=0.95, lr=10.0),
        Recipe(
            "airbench96",
            (128, 384, 512),
            epochs=37,
            batch_size=1024,
            target=0.96,
            residual=True,
            bn_momentum=0.1,
            lr=9.0,
            weight_decay=0.012,
            warmup=0.1,
            end_factor=0.0,
            translate=4,
            cutout=12,
        ),
        Recipe(
            "airbench94_muon",
            (64, 256, 256),
            epochs=8,
            batch_size=2000,
            target=0.94,
            warmup=0.0,
            end_factor=0.0,
            lookahead=False,
            muon=MuonSettings(),
        ),
    )
}


def disable_tf32() -> None:
    """Float32 matmuls and convolutions in full float32 (TF32 rounds inputs to 10 bits)."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def scaled_widths(recipe: Recipe, width: float) -> tuple[int, int, int]:
    """The groups' widths times `width`, rounded, at least 1 (narrow networks for tests)."""
    return tuple(max(1, round(c * width)) for c in recipe.widths)


# The network.


def batch_norm(channels: int, momentum: float) -> nn.BatchNorm2d:
    """BatchNorm2d with airbench's settings: eps 1e-12, weight frozen at 1, bias trained."""
    norm = nn.BatchNorm2d(channels, eps=BN_EPS, momentum=momentum)
    norm.weight.requires_grad_(False)
    return norm


def conv3x3(c_in: int, c_out: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)


class ConvGroup(nn.Module):
    """conv1 -> pool -> norm1 -> GELU -> conv2 -> norm2 -> GELU; with `residual`,
    GELU(norm3(conv3(that)) + the first GELU's output)."""

    def __init__(self, c_in: int, c_out: int, bn_momentum: float, residual: bool):
        super().__init__()
        self.conv1 = conv3x3(c_in, c_out)
        self.pool = nn.MaxPool2d(2)  # floors: 31 -> 15 -> 7 -> 3
        self.norm1 = batch_norm(c_out, bn_momentum)
        self.conv2 = conv3x3(c_out, c_out)
        self.norm2 = batch_norm(c_out, bn_momentum)
        self.residual = residual
        if residual:
            self.conv3 = conv3x3(c_out, c_out)
            self.norm3 = batch_norm(c_out, bn_momentum)

    def forward(self, x):
        x = F.gelu(self.norm1(self.pool(self.conv1(x))))  # exact GELU: approximate="none"
        y = F.gelu(self.norm2(self.conv2(x)))
        if not self.residual:
            return y
        return F.gelu(self.norm3(self.conv3(y)) + x)


class AirbenchNet(nn.Module):
    """An airbench network on normalised NCHW images (B, 3, 32, 32) -> logits (B, classes).

    Module paths: whiten, block1.conv1, block1.norm1, ..., block3.norm2 (.conv3, .norm3),
    head; `tf_resnet9.convert_torch` maps airbench's own state-dict names onto them.
    """

    def __init__(
        self,
        widths: tuple[int, int, int],
        residual: bool = False,
        bn_momentum: float = 0.4,
        logit_scale: float | None = 1 / 9,
        num_classes: int = NUM_CLASSES,
    ):
        super().__init__()
        whiten_width = 2 * 3 * WHITEN_KERNEL**2  # 24: 12 filters and their negatives
        self.whiten = nn.Conv2d(3, whiten_width, WHITEN_KERNEL, padding=0, bias=True)
        self.whiten.weight.requires_grad_(False)
        c_in = whiten_width
        for i, c_out in enumerate(widths, start=1):
            self.add_module(f"block{i}", ConvGroup(c_in, c_out, bn_momentum, residual))
            c_in = c_out
        self.pool = nn.MaxPool2d(3)
        self.head = nn.Linear(c_in, num_classes, bias=False)
        # None: divide by the width of the features (airbench94_muon's head(x) / x.size(-1)).
        self.logit_scale = 1 / c_in if logit_scale is None else logit_scale

    def blocks(self) -> list[ConvGroup]:
        return [self.block1, self.block2, self.block3]

    def forward(self, x):
        x = F.gelu(self.whiten(x))  # (B, 24, 31, 31)
        for block in self.blocks():
            x = block(x)  # (B, c, 15, 15), (B, c, 7, 7), (B, c, 3, 3)
        x = torch.flatten(self.pool(x), 1)  # (B, c)
        return self.head(x) * self.logit_scale

    def convs(self) -> list[nn.Conv2d]:
        return [m for m in self.modules() if isinstance(m, nn.Conv2d)]

    def norm_biases(self) -> list[nn.Parameter]:
        return [m.bias for m in self.modules() if isinstance(m, nn.BatchNorm2d)]


def dirac_first_filters(weight: torch.Tensor) -> None:
    """Sets the first in_channels filters of a conv weight (out, in, kh, kw) to identities
    (all of them when out <= in): filter i passes input channel i through at the centre."""
    with torch.no_grad():
        nn.init.dirac_(weight[: weight.shape[1]])


def make_net(recipe: Recipe, width: float = 1.0, num_classes: int = NUM_CLASSES) -> AirbenchNet:
    """The recipe's network at `width`, initialised as the recipe initialises it, from
    torch's global generator (the whitening filters are set later, from data)."""
    net = AirbenchNet(
        scaled_widths(recipe, width),
        recipe.residual,
        recipe.bn_momentum,
        1 / 9 if recipe.legacy else None,
        num_classes,
    )
    for conv in net.convs():
        if conv is not net.whiten or recipe.legacy:
            dirac_first_filters(conv.weight)
    with torch.no_grad():
        if recipe.legacy:
            net.whiten.bias.zero_()
        else:
            net.head.weight.div_(net.head.weight.std())  # unbiased std over all entries
    return net


# Whitening.


def normalise(images_uint8_nhwc: np.ndarray, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 (N, 32, 32, 3) -> NCHW `dtype`: (pixel / 255 - CIFAR_MEAN) / CIFAR_STD."""
    x = torch.from_numpy(np.ascontiguousarray(images_uint8_nhwc)).permute(0, 3, 1, 2)
    x = x.to(dtype) / 255
    mean = torch.tensor(CIFAR_MEAN, dtype=dtype)[:, None, None]
    std = torch.tensor(CIFAR_STD, dtype=dtype)[:, None, None]
    return (x - mean) / std


def whitening_filters(
    images: torch.Tensor, eps: float = WHITEN_EPS, descending: bool = True
) -> torch.Tensor:
    """The whitening convolution's weight (2 C k^2, C, k, k) from normalised NCHW images.

    Patches are taken with `F.unfold` (im2col, every k x k window, no padding) and their
    uncentred second moments X^T X / n in float64; eigenvector v_j over
    sqrt(lambda_j + eps), then the negatives of all of them. The legacy recipes list the
    eigenvectors by descending eigenvalue, airbench94_muon by ascending (`descending`).
    An eigenvector's sign is arbitrary: only the pair (v, -v) is determined.
    """
    n, c = images.shape[:2]
    k = WHITEN_KERNEL
    patches = F.unfold(images.double(), k)  # (N, C k k, L): rows in (c, kh, kw) order
    patches = patches.transpose(1, 2).reshape(-1, c * k * k)  # (N L, C k k)
    moments = patches.T @ patches / len(patches)
    values, vectors = torch.linalg.eigh(moments)  # ascending
    filters = (vectors / torch.sqrt(values + eps)).T  # row j: v_j / sqrt(lambda_j + eps)
    if descending:
        filters = filters.flip(0)
    filters = filters.reshape(-1, c, k, k)
    return torch.cat([filters, -filters]).float()


def init_whitening(net: AirbenchNet, normalised: torch.Tensor, recipe: Recipe) -> None:
    """Sets `net.whiten`'s weight from the first `WHITEN_IMAGES` (normalised) images."""
    filters = whitening_filters(normalised[:WHITEN_IMAGES], descending=recipe.legacy)
    with torch.no_grad():
        net.whiten.weight.copy_(filters.to(net.whiten.weight))


# The optimizer, in airbench's units: the loss summed over the batch.


def summed_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy with label smoothing 0.2, summed over the batch (bf16 logits in
    float32)."""
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    return F.cross_entropy(logits, labels, label_smoothing=LABEL_SMOOTHING, reduction="sum")


class NesterovSGD(torch.optim.Optimizer):
    """`torch.optim.SGD(momentum, nesterov=True, weight_decay)`'s update, one param group
    at a time, with a group option `updates` (None: no limit): after that many updates of
    the optimizer the group's parameters stay as they are (no decay, no momentum).

    Per parameter w with velocity v (starting at 0), each update:

        d = grad + weight_decay * w
        v = momentum * v + d
        w = w - lr * (d + momentum * v)

    lr multiplies v on its way out, not on its way in: v is in gradient units, and a lr
    that changes (every update here) scales the whole step at once.
    """

    def __init__(self, groups: list[dict], momentum: float):
        defaults = {"lr": 0.0, "weight_decay": 0.0, "momentum": momentum, "updates": None}
        super().__init__(groups, defaults)
        self.count = 0  # updates so far

    @torch.no_grad()
    def step(self, closure=None):
        if closure is not None:
            raise ValueError("closure is not supported: compute the loss before step().")
        for group in self.param_groups:
            if group["updates"] is not None and self.count >= group["updates"]:
                continue
            for w in group["params"]:
                if w.grad is None:
                    continue
                state = self.state[w]
                if "velocity" not in state:
                    state["velocity"] = torch.zeros_like(w)
                v = state["velocity"]
                d = w.grad + group["weight_decay"] * w
                v.mul_(group["momentum"]).add_(d)
                w.sub_(group["lr"] * (d + group["momentum"] * v))
        self.count += 1


def kilostep_units(recipe: Recipe) -> tuple[float, float]:
    """(lr, decay per step at factor 1) of `torch.optim.SGD` from the recipe's
    per-1,024-example values: lr / kilostep_scale and weight_decay x batch / kilostep_scale.

    kilostep_scale = 1024 (1 + 1 / (1 - momentum)): with a constant gradient g, Nesterov's
    step settles at lr (1 + momentum / (1 - momentum)) ... ~ lr / (1 - momentum) per unit
    gradient, and a summed loss's gradient grows with the batch; the recipe's lr is the
    step per unit of per-example gradient, whatever the momentum.
    """
    kilostep_scale = 1024 * (1 + 1 / (1 - recipe.momentum))
    return recipe.lr / kilostep_scale, recipe.weight_decay * recipe.batch_size / kilostep_scale


def sgd_groups(net: AirbenchNet, recipe: Recipe, steps_per_epoch: int) -> list[dict]:
    """Param groups with their initial lr, the weight-decay coefficient and the update
    limit. The coefficient is decay / lr0, so lr x coefficient, the decay of each update,
    follows the schedule's factor; BN biases' lr is 64x, their decay per update the same.
    "lr0" keeps the unscheduled lr (`set_lr` multiplies it by the factor)."""
    whiten_updates = math.ceil(recipe.whiten_bias_epochs * steps_per_epoch)
    norm_biases = net.norm_biases()
    if recipe.legacy:
        lr, decay = kilostep_units(recipe)
        bias_lr, head_lr, whiten_lr = lr * recipe.bias_scaler, lr, lr
        filters = [conv.weight for conv in net.convs() if conv is not net.whiten]
        others = [{"params": filters + [net.head.weight], "lr0": lr, "weight_decay": decay / lr}]
    else:
        muon = recipe.muon
        decay = muon.weight_decay_per_image * recipe.batch_size
        bias_lr, head_lr, whiten_lr = muon.bias_lr, muon.head_lr, muon.bias_lr
        others = [{"params": [net.head.weight], "lr0": head_lr, "weight_decay": decay / head_lr}]
    return [
        {"params": norm_biases, "lr0": bias_lr, "weight_decay": decay / bias_lr},
        {
            "params": [net.whiten.bias],
            "lr0": whiten_lr,
            "weight_decay": decay / whiten_lr,
            "updates": whiten_updates,
            "whiten": True,
        },
        *others,
    ]


def lr_factor(recipe: Recipe, update: int, total: int) -> float:
    """The schedule's factor for update `update` (0-based) of `total`."""
    warmup = int(total * recipe.warmup)
    if update < warmup:
        return 0.2 + 0.8 * update / warmup
    frac = (update - warmup) / (total - warmup)
    return 1.0 - (1.0 - recipe.end_factor) * frac


def whiten_bias_factor(update: int, whiten_updates: int) -> float:
    """airbench94_muon's whitening-bias factor: linear from 1 to 0 over its updates."""
    return 1.0 - update / whiten_updates


# Lookahead.


def lookahead_decay(t: int, total: int) -> float:
    """The average's decay after update t (1-based) of `total`: 0.95^5 (t / total)^3."""
    return LOOKAHEAD_BASE * (t / total) ** 3


class Lookahead:
    """An average of every float tensor of a network's state dict (weights, biases, BN
    statistics), which the network is then reset to (`update`)."""

    def __init__(self, net: nn.Module):
        self.average = {
            k: v.detach().clone() for k, v in net.state_dict().items() if v.is_floating_point()
        }

    @torch.no_grad()
    def update(self, net: nn.Module, decay: float) -> None:
        """average = decay average + (1 - decay) value; value = average (decay 1: value =
        average, the end of training)."""
        state = net.state_dict()
        for name, average in self.average.items():
            average.lerp_(state[name], 1.0 - decay)
            state[name].copy_(average)


# Training.


class Trainer:
    """A network, its optimizers, schedule and lookahead, stepped one batch at a time.

    Args:
        net: The network, its whitening filters already set.
        recipe: The recipe.
        steps_per_epoch: Batches per epoch (the last partial one dropped).
        total: Updates in the run: ceil(epochs x steps_per_epoch).
        lookahead: The average (made from the fresh network, before the whitening), or
            None for recipes without one.
        ns_dtype: Muon's Newton-Schulz precision (the recipe: bf16).
        forward: The network's forward pass (default: `net` itself; e.g. under autocast).
    """

    def __init__(
        self,
        net: AirbenchNet,
        recipe: Recipe,
        steps_per_epoch: int,
        total: int,
        lookahead: Lookahead | None = None,
        ns_dtype=torch.bfloat16,
        forward: Callable | None = None,
    ):
        self.net, self.recipe, self.total = net, recipe, total
        self.forward = forward or net
        self.whiten_updates = math.ceil(recipe.whiten_bias_epochs * steps_per_epoch)
        momentum = recipe.momentum if recipe.legacy else recipe.muon.momentum
        self.sgd = NesterovSGD(sgd_groups(net, recipe, steps_per_epoch), momentum)
        self.muon = None
        if not recipe.legacy:
            filters = [conv.weight for conv in net.convs() if conv is not net.whiten]
            settings = recipe.muon
            self.muon = Muon(filters, settings.filter_lr, settings.filter_momentum, ns_dtype)
        self.lookahead = lookahead
        self.updates = 0

    def set_lr(self) -> None:
        """Every group's lr for the next update."""
        k = self.updates
        factor = lr_factor(self.recipe, k, self.total)
        for group in self.sgd.param_groups:
            whiten = group.get("whiten", False) and not self.recipe.legacy
            group["lr"] = group["lr0"] * (
                whiten_bias_factor(k, self.whiten_updates) if whiten else factor
            )
        if self.muon is not None:
            for group in self.muon.param_groups:
                group["lr"] = self.recipe.muon.filter_lr * factor

    def step(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """One update on a batch (normalised NCHW, int64 labels).

        Returns:
            The batch's mean loss before the update, as a tensor (reading it would wait
            for the device).
        """
        self.net.train()
        self.set_lr()
        loss = summed_loss(self.forward(images), labels)
        self.net.zero_grad(set_to_none=True)
        loss.backward()
        self.sgd.step()
        if self.muon is not None:
            self.muon.step()
        self.updates += 1
        if self.lookahead is not None:
            if self.updates % LOOKAHEAD_EVERY == 0:
                self.lookahead.update(self.net, lookahead_decay(self.updates, self.total))
            if self.updates == self.total:
                self.lookahead.update(self.net, 1.0)  # the weights become the average
        return loss.detach() / len(labels)


# The loader's random draws and what it does with them.


class EpochDraws(NamedTuple):
    """One epoch's random choices for a set of N images: int64 tensors."""

    order: torch.Tensor  # (N,): a permutation, batches in that order
    shift_y: torch.Tensor  # (N,): translation in -translate..translate
    shift_x: torch.Tensor
    cutout_y: torch.Tensor  # (N,): the square's top-left row, 0..32 - cutout
    cutout_x: torch.Tensor


def draw_flips(count: int, generator: torch.Generator) -> torch.Tensor:
    """Which images start mirrored: bool (count,), each True with probability 1/2."""
    return torch.randint(0, 2, (count,), generator=generator).bool()


def draw_epoch(count: int, recipe: Recipe, generator: torch.Generator) -> EpochDraws:
    """The choices of one epoch: order, translations and cutout corners."""
    r = recipe.translate
    corner = IMAGE_SIZE - recipe.cutout

    def uniform(low: int, high: int):  # integers low..high, each equally likely
        return torch.randint(low, high + 1, (count,), generator=generator)

    return EpochDraws(
        order=torch.randperm(count, generator=generator),
        shift_y=uniform(-r, r),
        shift_x=uniform(-r, r),
        cutout_y=uniform(0, corner),
        cutout_x=uniform(0, corner),
    )


def mirror(images: torch.Tensor, where: torch.Tensor | bool = True) -> torch.Tensor:
    """Images (N, C, H, W) mirrored left-right where `where` (bool (N,) or one bool)."""
    if isinstance(where, bool):
        return images.flip(-1) if where else images
    return torch.where(where[:, None, None, None], images.flip(-1), images)


def translate(images: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, pad: int) -> torch.Tensor:
    """Image i moved by (dy[i], dx[i]) pixels (|d| <= pad), the edge filled by reflection:
    output pixel (y, x) is input pixel (y - dy, x - dx) of the reflect-padded image."""
    padded = F.pad(images, (pad,) * 4, mode="reflect")  # (N, C, H + 2 pad, W + 2 pad)
    size = images.shape[-1]
    offsets = torch.arange(size, device=images.device)
    rows = (pad - dy)[:, None] + offsets  # (N, H) rows of the padded image
    cols = (pad - dx)[:, None] + offsets
    n = torch.arange(images.shape[0], device=images.device)[:, None, None]
    gathered = padded.permute(0, 2, 3, 1)[n, rows[:, :, None], cols[:, None, :]]  # (N,H,W,C)
    return gathered.permute(0, 3, 1, 2)


def cut_out(images: torch.Tensor, y0: torch.Tensor, x0: torch.Tensor, size: int) -> torch.Tensor:
    """Sets the size x size square at (y0[i], x0[i]) of image i to 0 (the mean colour)."""
    idx = torch.arange(images.shape[-1], device=images.device)
    in_rows = (idx >= y0[:, None]) & (idx < y0[:, None] + size)  # (N, H)
    in_cols = (idx >= x0[:, None]) & (idx < x0[:, None] + size)
    square = in_rows[:, None, :, None] & in_cols[:, None, None, :]  # (N, 1, H, W)
    return images.masked_fill(square, 0.0)


def epoch_images(
    flipped: torch.Tensor, draws: EpochDraws, epoch: int, recipe: Recipe
) -> torch.Tensor:
    """The training set of epoch `epoch` (from 0), in the set's order.

    Args:
        flipped: The normalised set with each image's initial flip applied (`mirror` with
            `draw_flips`).
        draws: This epoch's choices.
    """
    images = flipped
    if recipe.translate:
        images = translate(images, draws.shift_y, draws.shift_x, recipe.translate)
    images = mirror(images, epoch % 2 == 1)  # the whole set, every other epoch
    if recipe.cutout:
        images = cut_out(images, draws.cutout_y, draws.cutout_x, recipe.cutout)
    return images


def epoch_batches(images: torch.Tensor, labels: torch.Tensor, order: torch.Tensor, batch: int):
    """Batches of `batch` in `order`, the last partial one dropped."""
    for start in range(0, len(order) - batch + 1, batch):
        idx = order[start : start + batch]
        yield images[idx], labels[idx]


# Test-time augmentation.


def tta_logits(forward: Callable, images: torch.Tensor, level: int) -> torch.Tensor:
    """Logits averaged over views of each image: level 0 the image alone; 1 the image and
    its mirror (1/2 each); 2 those (1/4 each) and both moved by one pixel diagonally, up-left
    and down-right with reflected edges, and mirrored (1/8 each)."""
    if level not in (0, 1, 2):
        raise ValueError(f"level={level!r} is invalid: expected 0, 1 or 2.")
    if level == 0:
        return forward(images)

    def with_mirror(x):
        return 0.5 * forward(x) + 0.5 * forward(mirror(x))

    logits = with_mirror(images)
    if level == 1:
        return logits
    ones = torch.ones(len(images), dtype=torch.long, device=images.device)
    moved = [with_mirror(translate(images, s * ones, s * ones, 1)) for s in (1, -1)]
    return 0.5 * logits + 0.25 * (moved[0] + moved[1])


@torch.no_grad()
def evaluate(
    net: AirbenchNet,
    images: torch.Tensor,
    labels: torch.Tensor,
    level: int,
    forward: Callable | None = None,
) -> float:
    """Test accuracy with test-time augmentation `level`, in inference mode, in batches of
    2,000 (`forward`: the network's forward pass, default `net` itself)."""
    net.eval()
    batches = images.split(EVAL_BATCH)
    logits = torch.cat([tta_logits(forward or net, batch, level) for batch in batches])
    net.train()
    return (logits.argmax(1) == labels).float().mean().item()


def train(
    recipe: Recipe | str,
    train_set: tuple[np.ndarray, np.ndarray],
    test_set: tuple[np.ndarray, np.ndarray],
    seed: int,
    width: float = 1.0,
    epochs: float | None = None,
    device: str | torch.device = "cpu",
    autocast: torch.dtype | None = None,
    ns_dtype=torch.bfloat16,
) -> dict:
    """One run of `recipe` as airbench times it, on uint8 NHWC images and int labels.

    The clock covers computing the whitening filters, training and the final evaluation
    with the recipe's test-time augmentation; the per-epoch evaluations (no augmentation)
    are outside it, as airbench's are. The data are normalised on `device` before it.

    Args:
        recipe: A `Recipe` or its name.
        train_set, test_set: (uint8 images (N, 32, 32, 3), int labels (N,)).
        seed: Seeds the initial weights and every random draw.
        width: Multiplies the groups' widths (below 1 for quick runs).
        epochs: Overrides the recipe's (fractional allowed).
        device: Where to train.
        autocast: A lower precision for the forward pass (bf16 on a GPU), or None.
        ns_dtype: Muon's Newton-Schulz precision.

    Returns:
        {"test_accuracy" (with the recipe's TTA), "test_accuracy_no_tta" (after the last
        epoch), "time_s" (the clock), "eval_time_s" (the per-epoch evaluations, outside
        it), "updates", "epochs"}.
    """
    recipe = RECIPES[recipe] if isinstance(recipe, str) else recipe
    epochs = recipe.epochs if epochs is None else epochs
    device = torch.device(device)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    x_train, x_test = (normalise(x).to(device) for x in (train_set[0], test_set[0]))
    y_train, y_test = (
        torch.from_numpy(y.astype(np.int64)).to(device) for y in (train_set[1], test_set[1])
    )
    steps = len(x_train) // recipe.batch_size
    if steps < 1:
        raise ValueError(
            f"{len(x_train)} training images are fewer than a batch of {recipe.batch_size}."
        )
    total = math.ceil(steps * epochs)
    net = make_net(recipe, width).to(device)
    lookahead = Lookahead(net) if recipe.lookahead else None

    def forward(x):
        with torch.autocast(device.type, autocast, enabled=autocast is not None):
            return net(x).float()

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    init_whitening(net, x_train, recipe)
    trainer = Trainer(net, recipe, steps, total, lookahead, ns_dtype, forward)
    flipped = mirror(x_train, draw_flips(len(x_train), generator).to(device))
    eval_time, accuracy, epoch = 0.0, 0.0, 0
    while trainer.updates < total:
        draws = EpochDraws(*(d.to(device) for d in draw_epoch(len(x_train), recipe, generator)))
        images = epoch_images(flipped, draws, epoch, recipe)
        for x, y in epoch_batches(images, y_train, draws.order, recipe.batch_size):
            trainer.step(x, y)
            if trainer.updates == total:
                break
        epoch += 1
        sync()
        eval_start = time.perf_counter()
        accuracy = evaluate(net, x_test, y_test, 0, forward)
        eval_time += time.perf_counter() - eval_start
    tta_accuracy = evaluate(net, x_test, y_test, recipe.tta_level, forward)
    sync()
    return {
        "test_accuracy": tta_accuracy,
        "test_accuracy_no_tta": accuracy,
        "time_s": time.perf_counter() - start - eval_time,
        "eval_time_s": eval_time,
        "updates": trainer.updates,
        "epochs": epochs,
    }
