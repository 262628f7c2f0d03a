"""The map between the reference CIFAR ResNets' parameters and the package's Keras variables.

The reference (`reference.torch_resnets`) names its modules as the PyTorch codebases do
(`conv1`, `bn1`, `layer2.0.conv1`, `layer2.0.shortcut.0`, `linear`); the package's layers
are `stem_conv`, `stem_bn`, `stage2_block1_1_conv`, `stage2_block1_shortcut_conv`, `dense`.
Arrays cross as NumPy, keyed by torch's `state_dict` names, in torch's layout:

    conv   torch (out, in, kh, kw)   <->  Keras (kh, kw, in, out)
    dense  torch (out, in)           <->  Keras (in, out); the bias (classes,) as it is
    BN     (c,) on both sides: weight/gamma, bias/beta, running_mean/moving_mean,
           running_var/moving_variance

and one more thing: the channel order. The package's option A shortcut appends its zero
channels after the copied ones; Idelbayev's ("split", the reference's default) puts half
before them. The two networks are then the same function with the channels of every stage
after the first permuted: channel k of a Keras tensor in stage s is channel `order[s][k]` of
the reference's (`channel_orders`). Every tensor of a stage follows its stage's order, the
inside of its blocks too, so a weight's input axis follows the stage it reads from and its
output axis the stage it writes to. With "end" zeros, or projection shortcuts, every order is
the identity. NumPy only: the fixtures' runs without torch use it too.
"""

from __future__ import annotations

import dataclasses

import numpy as np

CIFAR_DEPTHS = (20, 32, 44, 56, 110)
MODELS = (*(f"resnet{depth}" for depth in CIFAR_DEPTHS), "resnet18")
CONV, DENSE, VECTOR = "conv", "dense", "vector"
BN_NAMES = {
    "weight": "gamma",
    "bias": "beta",
    "running_mean": "moving_mean",
    "running_var": "moving_variance",
}
TO_KERAS_AXES = {CONV: (2, 3, 1, 0), DENSE: (1, 0)}
NUM_CLASSES = 10


@dataclasses.dataclass(frozen=True)
class Architecture:
    """The numbers that make one of the six networks (full width)."""

    stem: int
    stages: tuple[int, ...]
    blocks: int
    option_a: bool  # option A shortcuts; else 1x1 projections with BN


def architecture(model: str) -> Architecture:
    """`model` ("resnet20" ... "resnet110", "resnet18") as stem, stages and blocks."""
    if model == "resnet18":
        return Architecture(64, (64, 128, 256, 512), 2, option_a=False)
    depth = int(model.removeprefix("resnet"))
    return Architecture(16, (16, 32, 64), (depth - 2) // 6, option_a=True)


@dataclasses.dataclass(frozen=True)
class Entry:
    """One torch parameter or BN statistic and the Keras variable it maps to.

    `stage_in` and `stage_out` name the channel orders (`channel_orders`) of the input axis
    (conv, dense) and of the output or only axis; None: an axis without one (the image's
    RGB, the classes).
    """

    keras_path: str
    layout: str
    shape: tuple[int, ...]  # torch layout
    stage_in: int | None
    stage_out: int | None


def _conv_bn(torch_path, keras_name, c_in, c_out, kernel, stage_in, stage_out) -> dict:
    entries = {
        f"{torch_path[0]}.weight": Entry(
            f"{keras_name}_conv/kernel", CONV, (c_out, c_in, kernel, kernel), stage_in, stage_out
        )
    }
    for torch_name, keras_var in BN_NAMES.items():
        entries[f"{torch_path[1]}.{torch_name}"] = Entry(
            f"{keras_name}_bn/{keras_var}", VECTOR, (c_out,), None, stage_out
        )
    return entries


def entries(model: str) -> dict[str, Entry]:
    """Every mapped entry of `model` at full width, in the reference's state_dict order.

    Stage 0 is the stem; `num_batches_tracked` (no Keras counterpart, unread by torch at a
    fixed momentum) is not mapped.
    """
    arch = architecture(model)
    result = _conv_bn(("conv1", "bn1"), "stem", 3, arch.stem, 3, None, 0)
    c_in, stage_in = arch.stem, 0
    for s, c_out in enumerate(arch.stages, start=1):
        for b in range(1, arch.blocks + 1):
            torch_block, keras_block = f"layer{s}.{b - 1}", f"stage{s}_block{b}"
            for i in (1, 2):
                result |= _conv_bn(
                    (f"{torch_block}.conv{i}", f"{torch_block}.bn{i}"),
                    f"{keras_block}_{i}",
                    c_in if i == 1 else c_out,
                    c_out,
                    3,
                    stage_in if i == 1 else s,
                    s,
                )
            stride = 2 if s > 1 and b == 1 else 1
            if not arch.option_a and (stride != 1 or c_in != c_out):
                result |= _conv_bn(
                    (f"{torch_block}.shortcut.0", f"{torch_block}.shortcut.1"),
                    f"{keras_block}_shortcut",
                    c_in,
                    c_out,
                    1,
                    stage_in,
                    s,
                )
            c_in, stage_in = c_out, s
    result["linear.weight"] = Entry("dense/kernel", DENSE, (NUM_CLASSES, c_in), stage_in, None)
    result["linear.bias"] = Entry("dense/bias", VECTOR, (NUM_CLASSES,), None, None)
    return result


def channel_orders(model: str, zeros: str = "split") -> dict[int, np.ndarray]:
    """Per stage (0: the stem), the reference's channel behind each Keras channel.

    Where option A widens stage s - 1's c_in channels to c_out, the Keras shortcut holds the
    c_in copied channels first, then the zeros; the "split" reference holds `before` =
    (c_out - c_in) // 2 zeros, the copies, then the rest. So Keras channel k < c_in is the
    reference's `before + order[s - 1][k]`, and the Keras zero channels are the reference's
    zero channels in their order.
    """
    arch = architecture(model)
    orders = {0: np.arange(arch.stem)}
    for s, c_out in enumerate(arch.stages, start=1):
        previous = orders[s - 1]
        c_in = len(previous)
        if not arch.option_a or zeros == "end" or c_in == c_out:
            orders[s] = np.concatenate([previous, np.arange(c_in, c_out)])
            continue
        before = (c_out - c_in) // 2
        zero_channels = np.r_[0:before, before + c_in : c_out]
        orders[s] = np.concatenate([before + previous, zero_channels])
    return orders


def _axis_orders(entry: Entry, orders: dict[int, np.ndarray]) -> list:
    """Index per torch axis (None: as it is) that puts the entry's channels in Keras order."""
    pick = [None] * len(entry.shape)
    if entry.stage_out is not None:
        pick[0] = orders[entry.stage_out]
    if entry.stage_in is not None:
        pick[1] = orders[entry.stage_in]
    return pick


def to_keras(array: np.ndarray, entry: Entry, orders: dict[int, np.ndarray]) -> np.ndarray:
    """A torch-layout array in Keras layout and Keras channel order."""
    for axis, order in enumerate(_axis_orders(entry, orders)):
        if order is not None:
            array = np.take(array, order, axis=axis)
    axes = TO_KERAS_AXES.get(entry.layout)
    return np.ascontiguousarray(array if axes is None else array.transpose(axes))


def to_torch(array: np.ndarray, entry: Entry, orders: dict[int, np.ndarray]) -> np.ndarray:
    """The inverse of `to_keras`."""
    axes = TO_KERAS_AXES.get(entry.layout)
    array = np.asarray(array) if axes is None else np.asarray(array).transpose(np.argsort(axes))
    for axis, order in enumerate(_axis_orders(entry, orders)):
        if order is not None:
            array = np.take(array, np.argsort(order), axis=axis)
    return np.ascontiguousarray(array)


def activations(model: str) -> dict[str, tuple[str, int | None]]:
    """Reference module path -> (Keras layer name, stage of its channel order) of every
    compared output, in network order: the stem's BN, every block, the logits."""
    arch = architecture(model)
    result = {"bn1": ("stem_bn", 0)}
    for s in range(1, len(arch.stages) + 1):
        for b in range(1, arch.blocks + 1):
            result[f"layer{s}.{b - 1}"] = (f"stage{s}_block{b}_relu", s)
    result["linear"] = ("dense", None)
    return result


def activation_to_torch(array: np.ndarray, stage: int | None, orders: dict) -> np.ndarray:
    """A Keras NHWC (or (B, classes)) output as the reference's NCHW, in its channel order."""
    array = np.asarray(array)
    if array.ndim == 4:
        array = array.transpose(0, 3, 1, 2)
    if stage is not None:
        array = np.take(array, np.argsort(orders[stage]), axis=1)
    return np.ascontiguousarray(array)
