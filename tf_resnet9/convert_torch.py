r"""Converts a PyTorch checkpoint of a CIFAR ResNet or an airbench network into the package's
Keras model.

    python -m tf_resnet9.convert_torch resnet56-4bfd9763.th --model resnet56 --out runs/r56
    python -m tf_resnet9.convert_torch airbench94.pt --model airbench94
    python -m tf_resnet9.predict --model runs/r56 cat.png

CHECKPOINT is a file `torch.save` wrote: the state dict of one of these networks, or a dict
holding it under "state_dict" (as Idelbayev's pytorch_resnet_cifar10 saves its pretrained
weights), "net" (kuangliu's pytorch-cifar) or "model"; keys are the module paths of those
codebases (conv1, bn1, layer1.0.conv1, ..., layer2.0.shortcut.0, linear), plain or with
DataParallel's "module." prefix. --model names the network: resnet20, resnet32, resnet44,
resnet56, resnet110 (He et al.'s, option A shortcuts) or resnet18 (1x1 projection
shortcuts); full width, 10 classes. Every tensor must be used and fit: a key missing, left
over or of another shape is an error naming it.

--model airbench94, airbench95, airbench96 or airbench94_muon reads Keller Jordan's
airbench networks (github.com/KellerJordan/cifar10-airbench), full width, 10 classes,
under their own module names: legacy/airbench9x.py's nn.Sequential ("0.weight",
"2.conv1.weight", "2.norm1.bias", ..., "7.weight"), airbench94_muon.py's CifarNet
("whiten.weight", "layers.1.conv1.weight", ..., "head.weight") or
`reference.torch_airbench`'s ("block1.conv1.weight", ...); fp16 weights are read as they
are. BatchNorm's weights must be 1 (airbench freezes them; the Keras network has none).
airbench94_muon's network is airbench94's with its logits divided by 256 instead of 9:
its module names tell the two apart, and the other --model is an error. Its whitening
kernel converts with the rest; the networks take airbench's normalisation (pixels / 255,
its mean and std: `tf_resnet9.data.airbench_augment.normalize`), which inference.keras
replaces by this package's (within 1e-4 of it).

Option A widens the shortcut with zero channels, and codebases put them in different
places: "split" puts half before and half after the copied channels (Idelbayev's
`F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4, planes // 4))`: the default); "end"
puts them all after (as tf_resnet9 does). The weights are the same network's either way, up
to a permutation of channels, so nothing in a state dict tells them apart, and a wrong
--option_a gives a model that runs and is wrong: check its test accuracy.

Writes to --out (unset: CHECKPOINT's path without its extension, then "_keras"):
<model>.keras (normalised images -> logits, as training saves it), inference.keras (uint8
images -> probabilities) and classes.json (CIFAR-10's class names): what a training run's
workdir holds for `python -m tf_resnet9.predict`. inference.keras normalises the pixels as
this package does (CIFAR-10's mean and standard deviation per channel); a network trained
with another normalisation sees slightly shifted inputs there. Idelbayev's pretrained
ResNet-20 (trained on ImageNet's mean and std) classifies 76.2% of 2,000 test images of a
JPEG copy of CIFAR-10 correctly as <model>.keras fed its own normalisation, as the PyTorch
original does (logits within 1.5e-5 of it), and 74.6% through inference.keras; converted
with --option_a end, 0.7%.

Reading the checkpoint needs torch. Exit status 1, with one `error:` line, if the file
cannot be read or does not fit --model.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping

import numpy as np
from absl import flags

# `commands` and `models` start no Keras; `export` does, so it is imported where the model is
# saved: --help must answer at once.
from tf_resnet9 import commands, models

CIFAR_RESNETS = tuple(
    name for name in models.MODELS if name.startswith("resnet") and name != "resnet9"
)
MODELS = (*CIFAR_RESNETS, "airbench94", "airbench95", "airbench96", "airbench94_muon")
OPTION_A_ZEROS = ("split", "end")
# Where training scripts keep the state dict inside a checkpoint dict, in the order tried.
NESTED_KEYS = ("state_dict", "net", "model")
DATA_PARALLEL_PREFIX = "module."
CLASSES = 10

FLAGS = flags.FlagValues()  # this command's own (`tf_resnet9.commands.run_command`)
flags.DEFINE_enum("model", None, MODELS, "The network the checkpoint holds.", flag_values=FLAGS)
flags.DEFINE_string(
    "out",
    None,
    "The folder to write to. Unset: CHECKPOINT's path without its extension, then _keras.",
    flag_values=FLAGS,
)
flags.DEFINE_enum(
    "option_a",
    "split",
    OPTION_A_ZEROS,
    "Where the checkpoint's option-A shortcuts put their zero channels: split (half before, "
    "half after the copied ones: Idelbayev's pytorch_resnet_cifar10) or end (all after). A "
    "state dict does not record it. Ignored for resnet18.",
    flag_values=FLAGS,
)


AIRBENCH_SOURCES = ("legacy", "muon", "reference")
# Each airbench naming's module prefixes -> the Keras network's (`reference.torch_airbench`'s,
# with "." for "_"): legacy/airbench9x.py's nn.Sequential (0: the whitening convolution,
# 1: GELU, 2-4: the blocks, 5: pool, 6: flatten, 7: linear, 8: the scale) and
# airbench94_muon.py's CifarNet (layers.0: GELU, layers.1-3: the blocks, layers.4: pool).
AIRBENCH_PREFIXES = {
    "legacy": {"0": "whiten", "2": "block1", "3": "block2", "4": "block3", "7": "head"},
    "muon": {
        "whiten": "whiten",
        "layers.1": "block1",
        "layers.2": "block2",
        "layers.3": "block3",
        "head": "head",
    },
    "reference": {name: name for name in ("whiten", "block1", "block2", "block3", "head")},
}
# The networks: full width, 10 classes; airbench94_muon's is airbench94 with the logits
# divided by the last block's width (256) instead of times 1/9.
AIRBENCH_MODELS = {
    "airbench94": ("airbench94", {}),
    "airbench95": ("airbench95", {}),
    "airbench96": ("airbench96", {}),
    "airbench94_muon": ("airbench94", {"logit_scale": None}),
}


class ConversionError(Exception):
    """The checkpoint cannot be read or does not fit the model; the message says why."""


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        given = f"got {len(argv) - 1}: {' '.join(argv[1:])}" if len(argv) > 2 else "got none"
        print(f"error: expected one CHECKPOINT file ({given}).", file=sys.stderr)
        return 1
    if FLAGS.model is None:
        print(f"error: --model is required: one of {', '.join(MODELS)}.", file=sys.stderr)
        return 1
    path = argv[1]
    out = FLAGS.out or f"{os.path.splitext(path)[0]}_keras"
    commands.prepare_environment()
    try:
        arrays = read_checkpoint(path)
        # Keras and its backend start here, after the checkpoint has been read and checked.
        with commands.NativeLogFilter():
            if FLAGS.model in AIRBENCH_MODELS:
                model = convert_airbench(arrays, FLAGS.model)
            else:
                model = convert(arrays, FLAGS.model, FLAGS.option_a)
            written = save(model, out)
    except ConversionError as e:
        print(f"error: {path}: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # writing: --out is a file, or not writable
        print(f"error: --out={out}: {e.strerror or e}.", file=sys.stderr)
        return 1
    option_a = FLAGS.model in CIFAR_RESNETS and FLAGS.model != "resnet18"
    zeros = f", option A zeros {FLAGS.option_a}" if option_a else ""
    print(f"{path}: {len(arrays)} tensors -> {FLAGS.model}{zeros}")
    print(f"wrote {', '.join(written)}")
    return 0


# Reading the checkpoint (torch, imported on use).


def read_checkpoint(path: str) -> dict[str, np.ndarray]:
    """The state dict a checkpoint file holds, as float32 NumPy arrays by torch key.

    Raises:
        ConversionError: no such file, no torch, not a checkpoint torch can read safely, or
            no state dict in it.
    """
    if not os.path.isfile(path):
        raise ConversionError("no such file." if not os.path.exists(path) else "not a file.")
    try:
        import torch
    except ImportError:
        raise ConversionError(
            "reading a PyTorch checkpoint needs torch, which is not installed: "
            "pip install torch (the CPU build is enough)."
        ) from None
    try:
        # weights_only: tensors and plain containers only; unpickling anything else could
        # run code from the file.
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many kinds for a truncated or foreign file
        raise ConversionError(
            f"could not read it as a PyTorch checkpoint: {commands.one_line(e)}"
        ) from None
    state = _state_dict(checkpoint, torch.Tensor)
    state = _without_data_parallel_prefix(state)
    return {key: value.detach().cpu().float().numpy() for key, value in state.items()}


def _state_dict(checkpoint, tensor_type) -> Mapping:
    """The tensors by name in `checkpoint`, itself a state dict or a dict holding one."""
    if isinstance(checkpoint, Mapping):
        if checkpoint and all(isinstance(v, tensor_type) for v in checkpoint.values()):
            return checkpoint
        for key in NESTED_KEYS:
            if isinstance(checkpoint.get(key), Mapping):
                return _state_dict(checkpoint[key], tensor_type)
        found = ", ".join(map(repr, list(checkpoint)[:5])) or "none"
    else:
        found = type(checkpoint).__name__
    raise ConversionError(
        "holds no state dict: expected tensors by name, or a dict with them under "
        f"{' or '.join(map(repr, NESTED_KEYS))} (found {found})."
    )


def _without_data_parallel_prefix(state: Mapping) -> dict:
    """DataParallel's and DistributedDataParallel's "module.x" keys as "x"."""
    if state and all(key.startswith(DATA_PARALLEL_PREFIX) for key in state):
        return {key[len(DATA_PARALLEL_PREFIX) :]: value for key, value in state.items()}
    return dict(state)


# The map: Keras layer names -> the torch codebases' module paths.

_BLOCK_LAYER = re.compile(r"stage(\d+)_block(\d+)_(1|2|shortcut)_(conv|bn)")
_VARIABLE_NAMES = {
    "kernel": "weight",
    "gamma": "weight",
    "beta": "bias",
    "moving_mean": "running_mean",
    "moving_variance": "running_var",
    "bias": "bias",
}


def torch_module(layer: str, stages: int) -> tuple[str, int | None, int | None]:
    """(torch module path, stage of its input channels, stage of its output channels) of the
    Keras layer named `layer`; stage 0 is the stem, None an axis of no stage (the image's
    colours, the classes; a BN layer's only axis is its output's).

    stem_conv -> conv1, stem_bn -> bn1, stage2_block1_1_conv -> layer2.0.conv1,
    stage2_block1_shortcut_bn -> layer2.0.shortcut.1, dense -> linear.
    """
    if layer in ("stem_conv", "stem_bn"):
        return ("conv1", None, 0) if layer == "stem_conv" else ("bn1", None, 0)
    if layer == "dense":
        return "linear", stages, None
    match = _BLOCK_LAYER.fullmatch(layer)
    if match is None:
        raise ValueError(f"layer={layer!r} is not a layer of the CIFAR ResNets.")
    s, b, part, kind = int(match[1]), int(match[2]), match[3], match[4]
    block = f"layer{s}.{b - 1}"
    # A block's first convolution (and its shortcut) reads the previous stage's channels.
    reads_previous = b == 1 and part != "2"
    stage_in = s - 1 if reads_previous and kind == "conv" else s
    if part == "shortcut":
        return f"{block}.shortcut.{0 if kind == 'conv' else 1}", stage_in, s
    return f"{block}.{kind}{part}", stage_in, s


def channel_orders(stage_channels: list[int], option_a: bool, zeros: str) -> list[np.ndarray]:
    """Per stage (0: the stem), the checkpoint's channel behind each Keras channel.

    Where option A widens c_in channels to c_out, the Keras shortcut holds the copies first
    and its zeros after them; "split" holds (c_out - c_in) // 2 zeros, the copies, then the
    rest. So Keras channel k < c_in is the checkpoint's `before + order[s - 1][k]`, and the
    Keras zero channels are the checkpoint's, in their order. Otherwise: the identity.
    """
    orders = [np.arange(stage_channels[0])]
    for c_out in stage_channels[1:]:
        previous = orders[-1]
        c_in = len(previous)
        if not option_a or zeros == "end" or c_in == c_out:
            orders.append(np.concatenate([previous, np.arange(c_in, c_out)]))
            continue
        before = (c_out - c_in) // 2
        zero_channels = np.r_[0:before, before + c_in : c_out]
        orders.append(np.concatenate([before + previous, zero_channels]))
    return orders


def _keras_value(array: np.ndarray, stage_in, stage_out, orders) -> np.ndarray:
    """A torch-layout array in Keras' layout and channel order: conv (out, in, kh, kw) ->
    (kh, kw, in, out), dense (out, in) -> (in, out), vectors as they are."""
    if stage_out is not None:
        array = np.take(array, orders[stage_out], axis=0)
    if stage_in is not None:
        array = np.take(array, orders[stage_in], axis=1)
    if array.ndim == 4:
        array = array.transpose(2, 3, 1, 0)
    elif array.ndim == 2:
        array = array.T
    return np.ascontiguousarray(array)


# What a checkpoint must hold, checked before Keras starts.

# Each network's stem channels, stage channels, blocks per stage and whether its shortcuts
# are option A's (else 1x1 projections with BN); full width, 10 classes.
ARCHITECTURES = {
    **{f"resnet{6 * n + 2}": (16, (16, 32, 64), n, True) for n in (3, 5, 7, 9, 18)},
    "resnet18": (64, (64, 128, 256, 512), 2, False),
}
_BN = ("weight", "bias", "running_mean", "running_var")


def expected_shapes(model: str) -> dict[str, tuple[int, ...]]:
    """torch key -> shape of every tensor `model`'s state dict holds (BN's counters,
    `num_batches_tracked`, aside), in the order of the PyTorch codebases' state dicts."""
    stem, stages, blocks, option_a = ARCHITECTURES[model]

    def conv_bn(conv: str, bn: str, c_in: int, c_out: int, kernel: int) -> dict:
        return {f"{conv}.weight": (c_out, c_in, kernel, kernel)} | {
            f"{bn}.{name}": (c_out,) for name in _BN
        }

    shapes = conv_bn("conv1", "bn1", 3, stem, 3)
    c_in = stem
    for s, c_out in enumerate(stages, start=1):
        for b in range(blocks):
            block = f"layer{s}.{b}"
            shapes |= conv_bn(f"{block}.conv1", f"{block}.bn1", c_in, c_out, 3)
            shapes |= conv_bn(f"{block}.conv2", f"{block}.bn2", c_out, c_out, 3)
            if not option_a and (c_in != c_out or s > 1 and b == 0):
                shortcut = f"{block}.shortcut"
                shapes |= conv_bn(f"{shortcut}.0", f"{shortcut}.1", c_in, c_out, 1)
            c_in = c_out
    return shapes | {"linear.weight": (CLASSES, c_in), "linear.bias": (CLASSES,)}


def check_state(arrays: Mapping[str, np.ndarray], model: str, expected: dict | None = None) -> None:
    """Every tensor of `model` present with its shape, and every key of the checkpoint used.

    BN's step counters (`num_batches_tracked`) are accepted beside their layer's other
    tensors, and not converted: torch does not read them at a fixed momentum, and Keras has
    none.

    Raises:
        ConversionError: naming the keys missing or left over, or the first tensor of
            another shape.
    """
    expected = expected_shapes(model) if expected is None else expected
    counters = {key.replace(".running_mean", ".num_batches_tracked") for key in expected}
    missing = [key for key in expected if key not in arrays]
    unexpected = [key for key in arrays if key not in expected and key not in counters]
    problems = []
    if missing:
        problems.append(f"missing {_keys(missing)}")
    if unexpected:
        problems.append(f"unexpected {_keys(unexpected)}")
    if problems:
        raise ConversionError(f"does not fit --model={model}: {'; '.join(problems)}.")
    for key, shape in expected.items():
        if tuple(arrays[key].shape) != shape:
            raise ConversionError(
                f"{key} has shape {tuple(arrays[key].shape)}, expected {shape}: "
                f"--model={model} is full width with {CLASSES} classes; other widths and "
                "class counts are not supported."
            )


def convert(arrays: Mapping[str, np.ndarray], model: str, zeros: str = "split"):
    """The package's `model` holding a checkpoint's weights.

    Args:
        arrays: The state dict, float32 NumPy arrays by torch key (`read_checkpoint`).
        model: One of `MODELS`.
        zeros: Where the checkpoint's option A put its zero channels: "split" or "end".

    Returns:
        The Keras model (`tf_resnet9.cifar_resnet`, `tf_resnet9.resnet18_cifar`), every
        variable assigned.

    Raises:
        ConversionError: as `check_state`, before Keras starts.
    """
    if model not in CIFAR_RESNETS:
        raise ValueError(f"model={model!r} is invalid: expected one of {', '.join(CIFAR_RESNETS)}.")
    if zeros not in OPTION_A_ZEROS:
        raise ValueError(f"zeros={zeros!r} is invalid: expected one of {OPTION_A_ZEROS}.")
    check_state(arrays, model)
    stem, stages, _, option_a = ARCHITECTURES[model]
    orders = channel_orders([stem, *stages], option_a, zeros)
    network = models.build(model)  # full width, 10 classes, its weights still initial
    assigned = set()
    for variable in network.variables:
        layer, name = variable.path.split("/")
        module, stage_in, stage_out = torch_module(layer, len(stages))
        if len(variable.shape) < 2:  # BN's vectors and the dense bias: the output axis only
            stage_in = None
        key = f"{module}.{_VARIABLE_NAMES[name]}"
        value = _keras_value(arrays[key], stage_in, stage_out, orders)
        if value.shape != tuple(variable.shape):  # the package's model and this map disagree
            raise RuntimeError(f"{key} -> {variable.path}: {value.shape} vs {variable.shape}.")
        variable.assign(value)
        assigned.add(key)
    if assigned != set(expected_shapes(model)):
        raise RuntimeError(f"{model}: unassigned {sorted(set(expected_shapes(model)) - assigned)}")
    return network


# airbench's networks.


def airbench_source(keys) -> str:
    """Which naming a state dict's keys follow: "legacy" (nn.Sequential indices, "0.weight",
    "2.conv1.weight", ...), "muon" ("layers.1.conv1.weight", ...) or "reference"
    ("block1.conv1.weight", ...)."""
    keys = set(keys)
    if any(key.startswith("layers.") for key in keys):
        return "muon"
    if "0.weight" in keys:
        return "legacy"
    return "reference"


def airbench_expected_shapes(model: str) -> dict[str, tuple[int, ...]]:
    """Reference-named key -> shape of every tensor `model`'s state dict holds (BN's
    counters aside), full width, 10 classes."""
    from tf_resnet9.models.airbench import WIDTHS  # no Keras: a module-level dict

    name = AIRBENCH_MODELS[model][0]
    convs = 3 if name == "airbench96" else 2
    shapes = {"whiten.weight": (24, 3, 2, 2), "whiten.bias": (24,)}
    c_in = 24
    for b, c_out in enumerate(WIDTHS[name], start=1):
        for i in range(1, convs + 1):
            shapes[f"block{b}.conv{i}.weight"] = (c_out, c_in if i == 1 else c_out, 3, 3)
            shapes |= {f"block{b}.norm{i}.{part}": (c_out,) for part in _BN}
        c_in = c_out
    return shapes | {"head.weight": (CLASSES, c_in)}


def airbench_state(arrays: Mapping[str, np.ndarray], model: str) -> dict[str, np.ndarray]:
    """The state dict under the reference's names, checked against `model`.

    Raises:
        ConversionError: naming the keys missing or left over, the first tensor of another
            shape, a BatchNorm weight other than 1 (airbench freezes them at 1; the Keras
            network has none), or airbench94_muon's naming with another --model (its logits
            are scaled differently) and the reverse.
    """
    source = airbench_source(arrays)
    if (source == "muon") != (model == "airbench94_muon") and source != "reference":
        expected = "airbench94_muon" if source == "muon" else "airbench94, airbench95 or airbench96"
        raise ConversionError(
            f"does not fit --model={model}: its keys are {source} airbench's "
            f"({'airbench94_muon.py' if source == 'muon' else 'legacy/airbench9x.py'}): "
            f"expected --model {expected}."
        )
    prefixes = AIRBENCH_PREFIXES[source]
    # Checked in the checkpoint's own names, so that an error names its keys.
    own = {value: key for key, value in prefixes.items()}
    expected = {
        _replace_prefix(key, own): shape for key, shape in airbench_expected_shapes(model).items()
    }
    check_state(arrays, model, expected)
    renamed = {}
    for key, value in arrays.items():
        name = _replace_prefix(key, prefixes)
        if name.endswith(".weight") and ".norm" in name and not np.all(value == 1.0):
            raise ConversionError(
                f"{key} is not all 1: airbench freezes BatchNorm's weight at 1, and the "
                "Keras network has none."
            )
        renamed[name] = value
    return renamed


def _replace_prefix(key: str, prefixes: dict[str, str]) -> str:
    """`key` with its longest module prefix in `prefixes` replaced ("2.conv1.weight" ->
    "block1.conv1.weight"); as it is if none fits."""
    module = key.rpartition(".")[0]
    fits = [p for p in prefixes if module == p or module.startswith(p + ".")]
    if not fits:
        return key
    prefix = max(fits, key=len)
    return prefixes[prefix] + key[len(prefix) :]


def convert_airbench(arrays: Mapping[str, np.ndarray], model: str):
    """The package's airbench `model` holding a checkpoint's weights (airbench's own module
    names or the reference's, `reference.torch_airbench`).

    Raises:
        ConversionError: as `airbench_state`, before Keras starts.
    """
    if model not in AIRBENCH_MODELS:
        raise ValueError(
            f"model={model!r} is invalid: expected one of {', '.join(AIRBENCH_MODELS)}."
        )
    state = airbench_state(arrays, model)
    name, options = AIRBENCH_MODELS[model]
    network = models.build(name, **options)
    for variable in network.variables:
        layer, leaf = variable.path.split("/")
        key = f"{layer.replace('_', '.')}.{_VARIABLE_NAMES[leaf]}"
        value = _keras_value(state[key], None, None, None)
        if value.shape != tuple(variable.shape):
            raise RuntimeError(f"{key} -> {variable.path}: {value.shape} vs {variable.shape}.")
        variable.assign(value)
    return network


def _keys(keys: list[str], shown: int = 3) -> str:
    """'2 keys (a, b)', or '12 keys (a, b, c, ...)'."""
    names = ", ".join(keys[:shown]) + (", ..." if len(keys) > shown else "")
    return f"{len(keys)} key{'s' if len(keys) > 1 else ''} ({names})"


# Writing the model.


def save(network, out: str) -> list[str]:
    """Writes `<out>/<model>.keras`, the inference model (uint8 images -> probabilities) and
    CIFAR-10's class names beside it, each file whole or not at all.

    Returns:
        The paths written.
    """
    from tf_resnet9.data.cifar import class_names
    from tf_resnet9.outputs import export

    os.makedirs(out, exist_ok=True)
    trained = export.save_model(network, os.path.join(out, f"{network.name}.keras"))
    return [trained, *export.save_inference_model(network, class_names("cifar10"), out)]


def run(argv: list[str] | None = None) -> None:
    """Console-script entry point; exits with main's status."""
    commands.run_command(main, FLAGS, __doc__, argv)


if __name__ == "__main__":
    run()
