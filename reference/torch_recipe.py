"""The recipe in PyTorch, written from its description (README.org, "The recipe"): the
reference `tf_resnet9` must match.

Plain `torch.nn` in NCHW with PyTorch's own defaults (Conv2d/Linear init, BatchNorm2d
eps=1e-5, momentum=0.1), the recipe's optimizer in its original units (loss summed over the
batch, lr inside the velocity), its learning-rate schedule and its augmentation, each in the
order the recipe gives. Module paths (`layer1.residual.res1.conv`) are the names
`tests.parity.name_map` maps to Keras layers.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

NUM_CLASSES = 10
# Channels of prep, layer1, layer2, layer3 at width 1.
CHANNELS = {"prep": 64, "layer1": 128, "layer2": 256, "layer3": 512}

LOGIT_SCALE = 0.125
# Learning rate: piecewise linear through these (epoch, value) knots; 50,000 // 512 steps
# per epoch.
LR_EPOCHS, LR_VALUES, STEPS_PER_EPOCH = (0.0, 5.0, 24.0), (0.0, 0.4, 0.0), 97
RECIPE_EPOCHS = 24  # the length the schedule was written for: LR_EPOCHS[-1]
MOMENTUM = 0.9
WEIGHT_DECAY = 5e-4  # mean-loss units; `set_lr` converts to the reference's own
MEAN = (125.31, 122.95, 113.87)  # per channel, 0..255 scale
STD = (62.99, 62.09, 66.70)
PAD, CROP, CUTOUT = 4, 32, 8


def disable_tf32() -> None:
    """Float32 matmuls and convolutions in full float32 (TF32 rounds inputs to 10 bits)."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


class ConvBN(nn.Module):
    """cbr(c): 3x3 conv (no bias) -> BatchNorm -> ReLU, optionally followed by a 2x2 max pool."""

    def __init__(self, c_in: int, c_out: int, pool: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(c_out)  # PyTorch defaults: eps=1e-5, momentum=0.1
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2) if pool else nn.Identity()

    def forward(self, x):
        return self.pool(self.relu(self.bn(self.conv(x))))


class Residual(nn.Module):
    """x + cbr(cbr(x))."""

    def __init__(self, c: int):
        super().__init__()
        self.res1 = ConvBN(c, c)
        self.res2 = ConvBN(c, c)

    def forward(self, x):
        return x + self.res2(self.res1(x))


class Layer(ConvBN):
    """cbr -> pool, then a residual block where the recipe has one."""

    def __init__(self, c_in: int, c_out: int, residual: bool):
        super().__init__(c_in, c_out, pool=True)
        self.residual = Residual(c_out) if residual else nn.Identity()

    def forward(self, x):
        return self.residual(super().forward(x))


class ResNet9(nn.Module):
    """ResNet9 on normalised NCHW images (B, 3, 32, 32) -> logits (B, num_classes)."""

    def __init__(self, width: float = 1.0, num_classes: int = NUM_CLASSES):
        super().__init__()
        c = {name: max(1, round(count * width)) for name, count in CHANNELS.items()}
        self.prep = ConvBN(3, c["prep"])
        self.layer1 = Layer(c["prep"], c["layer1"], residual=True)  # (B, 128, 16, 16)
        self.layer2 = Layer(c["layer1"], c["layer2"], residual=False)  # (B, 256, 8, 8)
        self.layer3 = Layer(c["layer2"], c["layer3"], residual=True)  # (B, 512, 4, 4)
        self.pool = nn.MaxPool2d(4)  # (B, 512, 1, 1)
        self.linear = nn.Linear(c["layer3"], num_classes, bias=False)

    def forward(self, x):
        x = self.layer3(self.layer2(self.layer1(self.prep(x))))
        # (B, 512, 1, 1) -> (B, 512): with 1x1 spatial, NCHW and Keras' NHWC flatten alike.
        return self.linear(torch.flatten(self.pool(x), 1)) * LOGIT_SCALE


def lr_knots(epochs: int = RECIPE_EPOCHS) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(epochs, values) of the schedule for a run of `epochs` epochs.

    A shorter run keeps the warm-up at the same fraction of training (the peak at 5/24 of
    its epochs), so that a quick run still warms up and decays; a longer one keeps the
    peak at epoch 5 and decays for longer.
    """
    peak = LR_EPOCHS[1] * min(1.0, epochs / RECIPE_EPOCHS)
    return (0.0, peak, float(epochs)), LR_VALUES


def recipe_lr(step: int) -> float:
    """Learning rate of update `step` (1-based) in mean-loss units: the first is 0.4 / 485."""
    return float(np.interp(step / STEPS_PER_EPOCH, LR_EPOCHS, LR_VALUES))


class RecipeSGD(torch.optim.Optimizer):
    """The recipe's Nesterov SGD in the reference's units, for a loss summed over the batch.

    Per weight w with velocity v (starting at 0), with the group's lr and weight_decay in
    summed-loss units (`set_lr`):

        d = -lr * (grad + weight_decay * w)
        v = momentum * v + d
        w = w + d + momentum * v

    The lr multiplies the gradient before it enters v, unlike `torch.optim.SGD`, which keeps
    v in gradient units and multiplies by the current lr afterwards.
    """

    def __init__(self, params, momentum: float = MOMENTUM):
        super().__init__(params, {"lr": 0.0, "weight_decay": 0.0, "momentum": momentum})

    @torch.no_grad()
    def step(self, closure=None):
        if closure is not None:
            raise ValueError("closure is not supported: compute the loss before step().")
        for group in self.param_groups:
            for w in group["params"]:
                state = self.state[w]
                if "velocity" not in state:
                    state["velocity"] = torch.zeros_like(w)
                v = state["velocity"]
                d = (w.grad + group["weight_decay"] * w) * -group["lr"]
                v.mul_(group["momentum"]).add_(d)
                w.add_(d + group["momentum"] * v)


def to_summed_loss_units(lr: float, weight_decay: float, batch_size: int) -> tuple[float, float]:
    """(lr, weight_decay) in mean-loss units -> the same update for a loss summed over the batch.

    The summed loss's gradient is batch_size times the mean loss's, so the lr is divided by
    batch_size and the weight decay multiplied by it: lr/B * (B g + wd B w) = lr (g + wd w).
    (The package has its own copy of this rule; the reference keeps one of its own, so that
    a mistake in either shows in the parity tests.)
    """
    return lr / batch_size, weight_decay * batch_size


def set_lr(optimizer: torch.optim.Optimizer, lr: float, batch_size: int) -> None:
    """Sets the next update's lr (mean-loss units) in the summed-loss units the reference uses."""
    lr_summed, weight_decay_summed = to_summed_loss_units(lr, WEIGHT_DECAY, batch_size)
    for group in optimizer.param_groups:
        group["lr"] = lr_summed
        group["weight_decay"] = weight_decay_summed


def summed_loss(logits, labels):
    """The reference's loss: softmax cross-entropy summed over the batch."""
    return F.cross_entropy(logits, labels, reduction="sum")


def velocity_of(optimizer: torch.optim.Optimizer, weight) -> torch.Tensor:
    """The velocity (mean-loss units, like Keras') that `RecipeSGD` keeps for `weight`."""
    return optimizer.state[weight]["velocity"]


# Augmentation, in the recipe's order: normalise, reflect-pad, crop, flip, cutout.


def normalise(images_uint8_nhwc: np.ndarray) -> torch.Tensor:
    """uint8 (N, 32, 32, 3) -> float32 NCHW with zero mean colour and unit std per channel."""
    x = torch.from_numpy(images_uint8_nhwc).permute(0, 3, 1, 2).float()
    mean = torch.tensor(MEAN, dtype=torch.float32)[:, None, None]
    std = torch.tensor(STD, dtype=torch.float32)[:, None, None]
    return (x - mean) / std


def reflect_pad(images: torch.Tensor, pad: int = PAD) -> torch.Tensor:
    """NCHW -> NCH(+2pad)W(+2pad), mirroring without repeating the edge pixel."""
    return F.pad(images, (pad, pad, pad, pad), mode="reflect")


class Draws(NamedTuple):
    """One random choice per example: int64 tensors (N,)."""

    crop_y: torch.Tensor
    crop_x: torch.Tensor
    flip: torch.Tensor  # 1: mirror left-right
    cutout_y: torch.Tensor
    cutout_x: torch.Tensor


def draw(count: int, generator: torch.Generator) -> Draws:
    """The recipe's random choices for `count` examples, from `generator`."""

    def uniform(high):  # integers 0..high, each equally likely
        return torch.randint(0, high + 1, (count,), generator=generator)

    return Draws(
        crop_y=uniform(2 * PAD),
        crop_x=uniform(2 * PAD),
        flip=uniform(1),
        cutout_y=uniform(CROP - CUTOUT),
        cutout_x=uniform(CROP - CUTOUT),
    )


def augment(padded: torch.Tensor, draws: Draws) -> torch.Tensor:
    """Crop, flip and cut out each padded normalised image (N, 3, 40, 40) -> (N, 3, 32, 32)."""
    out = torch.empty(padded.shape[0], padded.shape[1], CROP, CROP, dtype=padded.dtype)
    for i, (y, x, flip, cy, cx) in enumerate(zip(*(d.tolist() for d in draws))):
        image = padded[i, :, y : y + CROP, x : x + CROP]
        if flip:
            image = torch.flip(image, dims=(2,))
        image = image.clone()  # a copy: the cutout must not write into `padded`
        image[:, cy : cy + CUTOUT, cx : cx + CUTOUT] = 0.0  # the mean colour
        out[i] = image
    return out


def batched_augment(padded: torch.Tensor, draws: Draws, cutout: bool = True) -> torch.Tensor:
    """`augment` for a whole batch at once, on the batch's device (the GPU baseline's).

    Args:
        padded: (B, C, 40, 40) normalised, reflect-padded images.
        draws: One draw per image, on the same device.

    Returns:
        (B, C, 32, 32): cropped at (crop_y, crop_x), mirrored where flip is 1, and (with
        `cutout`) an 8x8 square from (cutout_y, cutout_x) set to 0.
    """
    offsets = torch.arange(CROP, device=padded.device)
    rows = draws.crop_y[:, None] + offsets  # (B, 32)
    cols = draws.crop_x[:, None] + offsets
    cols = torch.where(draws.flip[:, None].bool(), cols.flip(1), cols)  # mirror = read backwards
    batch = torch.arange(padded.shape[0], device=padded.device)[:, None, None]
    images = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # (B,32,32,C)
    if not cutout:
        return images.permute(0, 3, 1, 2)
    in_rows = (offsets >= draws.cutout_y[:, None]) & (offsets < draws.cutout_y[:, None] + CUTOUT)
    in_cols = (offsets >= draws.cutout_x[:, None]) & (offsets < draws.cutout_x[:, None] + CUTOUT)
    square = in_rows[:, :, None, None] & in_cols[:, None, :, None]
    return images.masked_fill(square, 0.0).permute(0, 3, 1, 2)
