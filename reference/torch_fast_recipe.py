"""Page's faster recipe (`--recipe page10`) in PyTorch, written from its description
(README.org, "The faster recipe"), beside the 24-epoch reference (`torch_recipe`): the
baseline `benchmarks.reference_torch --recipe page10` times.

Independent of the package where the package has its own code: the whitening filter, ghost
BatchNorm, the EMA and the test-time augmentation are written here again. Ghost BatchNorm
takes sub-batches of consecutive images and keeps running statistics of the biased batch
variance, as the package does (Page's code takes every 16th image, and PyTorch's unbiased
variance: the same in distribution, the batches being shuffled).
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from reference.torch_recipe import CHANNELS, NUM_CLASSES, WEIGHT_DECAY

SPLITS = 16
CELU_ALPHA = 0.3
LOGIT_SCALE = 1 / 16
LABEL_SMOOTHING = 0.2
BIAS_LR_SCALE, BIAS_WD_SCALE = 64.0, 1 / 64
EMA_MOMENTUM, EMA_EVERY = 0.99, 5
WHITENING_EPS, WHITENING_IMAGES = 1e-2, 10_000


class GhostBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d with training statistics per `splits` sub-batches; scale frozen at 1."""

    def __init__(self, channels: int, splits: int = SPLITS):
        super().__init__(channels)
        self.splits = splits
        self.weight.requires_grad_(False)

    def forward(self, x):
        if not self.training:
            return super().forward(x)
        groups = x.reshape(self.splits, -1, *x.shape[1:])  # (splits, B/splits, C, H, W)
        mean = groups.mean(dim=(1, 3, 4), keepdim=True)
        variance = groups.var(dim=(1, 3, 4), unbiased=False, keepdim=True)
        y = (groups - mean) / torch.sqrt(variance + self.eps)
        y = y * self.weight[:, None, None] + self.bias[:, None, None]
        with torch.no_grad():
            for running, value in ((self.running_mean, mean), (self.running_var, variance)):
                running.mul_(1 - self.momentum).add_(self.momentum * value.mean(0).flatten())
        return y.reshape(x.shape)


class ConvBN(nn.Module):
    """conv -> [pool] -> ghost BN -> CELU: the pool before BN, where there is one."""

    def __init__(self, c_in: int, c_out: int, pool: bool = False, kernel: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=False)
        self.pool = nn.MaxPool2d(2) if pool else nn.Identity()
        self.bn = GhostBatchNorm(c_out)

    def forward(self, x):
        return F.celu(self.bn(self.pool(self.conv(x))), alpha=CELU_ALPHA)


class Layer(nn.Module):
    def __init__(self, c_in: int, c_out: int, residual: bool):
        super().__init__()
        self.conv_bn = ConvBN(c_in, c_out, pool=True)
        self.res = nn.Sequential(ConvBN(c_out, c_out), ConvBN(c_out, c_out)) if residual else None

    def forward(self, x):
        x = self.conv_bn(x)
        return x + self.res(x) if self.res is not None else x


def whitening_filters(normalised_nchw: torch.Tensor, eps: float = WHITENING_EPS):
    """(27, 3, 3, 3) filters: eigenvectors of the 3x3x3 patches' second moments, each over
    sqrt(eigenvalue + eps), from the first 10,000 images."""
    images = normalised_nchw[:WHITENING_IMAGES].double()
    c = images.shape[1]
    patches = images.unfold(2, 3, 1).unfold(3, 3, 1)  # (N, C, 30, 30, 3, 3)
    patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, c * 9)  # (patches, C*3*3)
    values, vectors = torch.linalg.eigh(patches.T @ patches / (len(patches) - 1))
    filters = vectors.T / torch.sqrt(values + eps)[:, None]  # row k: filter k
    return filters.reshape(-1, c, 3, 3).float()


class FastResNet9(nn.Module):
    """ResNet9 with the faster recipe's switches, on normalised NCHW images."""

    def __init__(self, whitening: torch.Tensor, width: float = 1.0):
        super().__init__()
        c = {name: max(1, round(count * width)) for name, count in CHANNELS.items()}
        self.whiten = nn.Conv2d(3, whitening.shape[0], 3, padding=1, bias=False)
        self.whiten.weight.data.copy_(whitening)
        self.whiten.weight.requires_grad_(False)
        self.prep = ConvBN(whitening.shape[0], c["prep"], kernel=1)
        self.layer1 = Layer(c["prep"], c["layer1"], residual=True)
        self.layer2 = Layer(c["layer1"], c["layer2"], residual=False)
        self.layer3 = Layer(c["layer2"], c["layer3"], residual=True)
        self.pool = nn.MaxPool2d(4)
        self.linear = nn.Linear(c["layer3"], NUM_CLASSES, bias=False)

    def forward(self, x):
        x = self.layer3(self.layer2(self.layer1(self.prep(self.whiten(x)))))
        return self.linear(torch.flatten(self.pool(x), 1)) * LOGIT_SCALE


def param_groups(model: nn.Module) -> list[dict]:
    """BatchNorm biases in a group of their own: lr x64, weight decay / 64."""
    biases = [m.bias for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    ids = {id(p) for p in biases}
    others = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
    return [
        {"params": others, "lr_scale": 1.0, "wd_scale": 1.0},
        {"params": biases, "lr_scale": BIAS_LR_SCALE, "wd_scale": BIAS_WD_SCALE},
    ]


def set_lr(optimizer: torch.optim.Optimizer, lr: float, batch_size: int) -> None:
    """Each group's lr and weight decay in the summed-loss units, with its scales."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group["lr_scale"] / batch_size
        group["weight_decay"] = WEIGHT_DECAY * group["wd_scale"] * batch_size


def summed_loss(logits, labels):
    return F.cross_entropy(logits, labels, reduction="sum", label_smoothing=LABEL_SMOOTHING)


class EMA:
    """An average of every weight and buffer, moved by EMA_MOMENTUM**EMA_EVERY after the
    first update of every epoch and every EMA_EVERY-th after it, as Page's code moves it
    (`update(model, s)` after the update of step s of its epoch, from 0)."""

    def __init__(self, model: nn.Module):
        self.model = copy.deepcopy(model)

    @torch.no_grad()
    def update(self, model: nn.Module, step_in_epoch: int) -> None:
        if step_in_epoch % EMA_EVERY:
            return
        rho = EMA_MOMENTUM**EMA_EVERY
        for average, value in zip(self.model.state_dict().values(), model.state_dict().values()):
            if average.dtype.is_floating_point:
                average.mul_(rho).add_((1 - rho) * value)


def tta_logits(forward, images: torch.Tensor) -> torch.Tensor:
    """Mean of the logits of the images and their mirror images."""
    return (forward(images) + forward(torch.flip(images, dims=(3,)))) / 2


def lr_knots(epochs: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(0, 0), (2, 1.0), (8, 0.1), (10, 0.1), scaled to `epochs` as the package scales them."""
    reference_epochs = 10
    shorter = min(1.0, epochs / reference_epochs)
    knots = (0.0, 2.0 * shorter, epochs - 2.0 * shorter, float(epochs))
    return knots, (0.0, 1.0, 0.1, 0.1)


def lr_at(step: int, steps_per_epoch: int, epochs: int) -> float:
    return float(np.interp(step / steps_per_epoch, *lr_knots(epochs)))
