"""The classic CIFAR ResNets in plain PyTorch, the reference the package's must match.

Written from the papers and from the PyTorch code people train and publish these networks
with, independently of `tf_resnet9` (nothing imported from it):

- `CifarResNet(depth)`: He et al. 2016, "Deep Residual Learning for Image Recognition",
  Section 4.2: depth 6n + 2, a 3x3 stem of 16 filters, three stages of n basic blocks with
  16, 32 and 64 filters, stride 2 in the first convolution of stages 2 and 3, option A
  shortcuts, global average pooling, a linear layer with bias. Option A as Idelbayev's
  pytorch_resnet_cifar10 (whose pretrained weights are the ones people compare with) writes
  it: the input subsampled x[:, :, ::2, ::2], then zero channels, half before and half after
  the copied ones (`OPTION_A_ZEROS` "split"); "end" appends them all after the copied
  channels instead, a permutation of the same network.
- `ResNet18()`: ResNet-18 as kuangliu's pytorch-cifar adapts it to 32x32 images: a 3x3
  stride-1 stem of 64 filters, no max pool, four stages of two basic blocks with 64, 128,
  256 and 512 filters, 1x1 stride-2 projection + BatchNorm shortcuts where the shape
  changes.

NCHW, PyTorch's own defaults everywhere (Conv2d padding=1, BatchNorm2d eps=1e-5 and
momentum=0.1, Linear with bias, PyTorch's init). Module paths are those codebases' own
(`conv1`, `bn1`, `layer2.0.conv1`, `layer2.0.shortcut.0`, `linear`), so their state dicts
load here as they are.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

NUM_CLASSES = 10
# Where option A puts the zero channels of a widening shortcut.
OPTION_A_ZEROS = ("split", "end")
CIFAR_STEM, CIFAR_STAGES = 16, (16, 32, 64)
RESNET18_STEM, RESNET18_STAGES, RESNET18_BLOCKS = 64, (64, 128, 256, 512), 2


def scaled(channels: int, width: float) -> int:
    """`channels` times `width`, rounded, at least 1 (narrow models for quick tests)."""
    return max(1, round(channels * width))


class OptionA(nn.Module):
    """He et al.'s option A shortcut: subsample by `stride`, then pad with zero channels.

    "split" puts (c_out - c_in) // 2 zero channels before the copied ones and the rest after
    them (Idelbayev's `F.pad(..., (0, 0, 0, 0, planes // 4, planes // 4))` when c_out is
    2 c_in); "end" puts them all after.
    """

    def __init__(self, c_in: int, c_out: int, stride: int, zeros: str = "split"):
        super().__init__()
        if zeros not in OPTION_A_ZEROS:
            raise ValueError(f"zeros={zeros!r} is invalid: expected one of {OPTION_A_ZEROS}.")
        extra = c_out - c_in
        self.stride = stride
        self.before = extra // 2 if zeros == "split" else 0
        self.after = extra - self.before

    def forward(self, x):
        x = x[:, :, :: self.stride, :: self.stride]  # even pixels: where padding=1 centres
        # F.pad's pairs run from the last axis back: (W, W, H, H, C before, C after).
        return F.pad(x, (0, 0, 0, 0, self.before, self.after))


def projection(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    """1x1 convolution with `stride` and BatchNorm: state dict keys `0.weight`, `1.*`."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
    )


class BasicBlock(nn.Module):
    """relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)), conv1 with `stride`.

    Args:
        shortcut: Where the shape changes, "A" (`OptionA`) or "projection"; elsewhere the
            shortcut is the identity (an empty `nn.Sequential`, no keys, as in the sources).
        zeros: Option A's zero channels, "split" or "end".
    """

    def __init__(self, c_in: int, c_out: int, stride: int, shortcut: str, zeros: str):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)  # PyTorch defaults: eps=1e-5, momentum=0.1
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        if stride == 1 and c_in == c_out:
            self.shortcut = nn.Sequential()
        elif shortcut == "A":
            self.shortcut = OptionA(c_in, c_out, stride, zeros)
        else:
            self.shortcut = projection(c_in, c_out, stride)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """A 3x3 stem, stages of basic blocks (stride 2 first in every stage after the first),
    global average pooling and a linear layer: NCHW (B, 3, 32, 32) -> logits (B, classes)."""

    def __init__(
        self,
        stem: int,
        stages: tuple[int, ...],
        blocks: int,
        shortcut: str,
        zeros: str = "split",
        num_classes: int = NUM_CLASSES,
    ):
        super().__init__()
        self.conv1 = nn.Conv2d(3, stem, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        c_in = stem
        for s, c_out in enumerate(stages, start=1):
            layer = []
            for b in range(blocks):
                stride = 2 if s > 1 and b == 0 else 1
                layer.append(BasicBlock(c_in, c_out, stride, shortcut, zeros))
                c_in = c_out
            setattr(self, f"layer{s}", nn.Sequential(*layer))  # keys layer{s}.{b}.*
        self.num_stages = len(stages)
        self.linear = nn.Linear(c_in, num_classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))  # (B, stem, 32, 32)
        for s in range(1, self.num_stages + 1):
            x = getattr(self, f"layer{s}")(x)  # stage s halves H and W for s > 1
        return self.linear(x.mean(dim=(2, 3)))  # global average pool: (B, C)


def cifar_resnet(
    depth: int, width: float = 1.0, zeros: str = "split", num_classes: int = NUM_CLASSES
) -> ResNet:
    """He et al.'s CIFAR ResNet of `depth` = 6n + 2 (20, 32, 44, 56, 110) with option A.

    Args:
        depth: Weighted layers, 6n + 2 for n >= 1.
        width: Multiplies every channel count (16/32/64), rounded, at least 1.
        zeros: Option A's zero channels: "split" (Idelbayev's) or "end".
        num_classes: Outputs of the linear layer.
    """
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"depth={depth!r} is invalid: expected 6n + 2 (20, 32, 44, 56, 110).")
    return ResNet(
        scaled(CIFAR_STEM, width),
        tuple(scaled(c, width) for c in CIFAR_STAGES),
        (depth - 2) // 6,
        "A",
        zeros,
        num_classes,
    )


def resnet18(width: float = 1.0, num_classes: int = NUM_CLASSES) -> ResNet:
    """ResNet-18 for 32x32 images (11,173,962 parameters at width 1 with 10 classes)."""
    return ResNet(
        scaled(RESNET18_STEM, width),
        tuple(scaled(c, width) for c in RESNET18_STAGES),
        RESNET18_BLOCKS,
        "projection",
        num_classes=num_classes,
    )


def build(name: str, width: float = 1.0, zeros: str = "split") -> ResNet:
    """The network called `name`: "resnet20", "resnet32", ..., "resnet110" or "resnet18"."""
    if name == "resnet18":
        return resnet18(width)
    if not name.startswith("resnet") or not name[len("resnet") :].isdigit():
        raise ValueError(f"name={name!r} is invalid: expected resnet18 or resnet<6n+2>.")
    return cifar_resnet(int(name[len("resnet") :]), width, zeros)


def disable_tf32() -> None:
    """Float32 matmuls and convolutions in full float32 (TF32 rounds inputs to 10 bits)."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
