r"""Checks `reference.torch_airbench` against airbench's own code, run from outside the repository.

    git clone https://github.com/KellerJordan/cifar10-airbench /tmp/airbench-orig
    python -m reference.compare_airbench_original /tmp/airbench-orig \
        --data_dir $CIFAR10_DIR   # the python version's folder (cifar-10-batches-py)

The original is imported from ORIGINAL (never copied here) and run on the CPU in float32:
its `.half()` and `.cuda()` calls become no-ops, its CUDA timers stubs, its loader is fed
the images from --data_dir, and (where torchvision is absent) `torchvision.transforms.
Normalize` is a stand-in. Its hyperparameters are those of the files, except where the
harness narrows a run to fit a CPU (batch size, widths, epochs: `hyp` for the legacy
recipes; airbench94_muon's widths through its `dict(...)` call): the code path is the same.

For each recipe it records what the original computes (its initial weights, the random
draws its loader makes, the whitening filters, the state after every update, the final
test-time-augmented logits) and replays the transcription on the same weights and draws;
it prints the largest differences, which tests/parity/README.md ("airbench") records.
Imports nothing from `tf_resnet9`.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import os
import pickle
import sys
import types

import numpy as np
import torch
from torch import nn

from reference import torch_airbench as ab
from reference import torch_muon

LEGACY = ("airbench94", "airbench95", "airbench96")


# Data.


def load_cifar(folder: str, train: int, test: int):
    """The first `train` and `test` images of the python version, uint8 NHWC, and labels."""

    def read(name):
        with open(os.path.join(folder, name), "rb") as f:
            batch = pickle.load(f, encoding="bytes")
        images = np.asarray(batch[b"data"], np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        return images, np.asarray(batch[b"labels"], np.int64)

    parts = [read(f"data_batch_{i}") for i in range(1, 6)]
    x_train = np.concatenate([p[0] for p in parts])[:train]
    y_train = np.concatenate([p[1] for p in parts])[:train]
    x_test, y_test = read("test_batch")
    return (x_train, y_train), (x_test[:test], y_test[:test])


# Running the original on a CPU.


class _Event:
    def record(self):
        pass

    def elapsed_time(self, other):
        return 0.0


def _normalize_stub():
    """torchvision with transforms.Normalize only, where torchvision is not installed."""

    class Normalize:
        def __init__(self, mean, std):
            self.mean, self.std = torch.as_tensor(mean), torch.as_tensor(std)

        def __call__(self, x):
            return (x - self.mean[:, None, None].to(x)) / self.std[:, None, None].to(x)

    vision = types.ModuleType("torchvision")
    vision.transforms = types.ModuleType("torchvision.transforms")
    vision.transforms.Normalize = Normalize
    vision.datasets = types.ModuleType("torchvision.datasets")
    return {"torchvision": vision, "torchvision.transforms": vision.transforms}


@contextlib.contextmanager
def cpu_float32():
    """The original's GPU-only calls made harmless: .half() and .cuda() return the module
    as it is (float32, CPU), CUDA events time nothing, torch.compile compiles nothing."""
    saved = (nn.Module.half, nn.Module.cuda, torch.cuda.Event, torch.cuda.synchronize)
    saved_compile, saved_float = torch.compile, nn.Module.float
    nn.Module.half = lambda self: self
    if torch.get_default_dtype() == torch.float64:  # BatchNorm's .float() too
        nn.Module.float = lambda self: self
    nn.Module.cuda = lambda self, *args, **kwargs: self
    torch.cuda.Event = lambda **kwargs: _Event()
    torch.cuda.synchronize = lambda *args: None
    torch.compile = lambda fn=None, **kwargs: fn if fn is not None else (lambda f: f)
    try:
        yield
    finally:
        nn.Module.half, nn.Module.cuda, torch.cuda.Event, torch.cuda.synchronize = saved
        torch.compile, nn.Module.float = saved_compile, saved_float


def import_original(path: str, name: str):
    stubs = {} if importlib.util.find_spec("torchvision") else _normalize_stub()
    sys.modules.update(stubs)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    with cpu_float32():
        spec.loader.exec_module(module)
    return module


class RecordingTorch(types.ModuleType):
    """The original module's `torch`, recording what its random functions return."""

    def __init__(self):
        super().__init__("torch")
        self.draws: list[tuple[str, torch.Tensor]] = []

    def __getattr__(self, name):
        if name == "float":  # the lookahead's dtype check, in a float64 comparison
            return torch.get_default_dtype()
        value = getattr(torch, name)
        if name not in ("rand", "randint", "randperm"):
            return value

        def recorded(*args, **kwargs):
            out = value(*args, **kwargs)
            self.draws.append((name, out.clone()))
            return out

        return recorded


@dataclasses.dataclass
class Recording:
    """What the original computed in one run."""

    initial: dict = dataclasses.field(default_factory=dict)  # before the whitening
    whitening: torch.Tensor | None = None
    batches: list = dataclasses.field(default_factory=list)  # (images, labels) per update
    states: list = dataclasses.field(default_factory=list)  # state dict after each update
    net: nn.Module | None = None
    draws: list = dataclasses.field(default_factory=list)


def _state(net) -> dict:
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def loader_class(module, data, recording: Recording):
    """The original CifarLoader, its images from `data` (on the CPU, float32) and its
    batches recorded, with the network's state after the update each batch fed."""

    class Loader(module.CifarLoader):
        def __init__(self, path, train=True, batch_size=500, aug=None, **kwargs):
            (x_train, y_train), (x_test, y_test) = data
            images, labels = (x_train, y_train) if train else (x_test, y_test)
            dtype = torch.get_default_dtype()
            self.images = torch.from_numpy(images).to(dtype).div(255).permute(0, 3, 1, 2)
            self.labels = torch.from_numpy(labels)
            self.classes = list(range(10))
            self.normalize = module.T.Normalize(module.CIFAR_MEAN, module.CIFAR_STD)
            self.proc_images, self.epoch = {}, 0
            self.aug = aug or {}
            self.batch_size = batch_size
            self.drop_last = self.shuffle = train
            self.train = train

        def __iter__(self):
            for images, labels in super().__iter__():
                if self.train:
                    if recording.batches:  # the update of the previous batch is done
                        recording.states.append(_state(recording.net))
                    recording.batches.append((images.clone(), labels.clone()))
                yield images, labels

    return Loader


def run_legacy(module, data, hyp: dict, seed: int) -> Recording:
    """The original `main` of a legacy recipe with `hyp`'s overrides, recorded."""
    recording = Recording()
    for part, values in hyp.items():
        module.hyp[part].update(values)
    make_net, init_whitening = module.make_net, module.init_whitening_conv

    def recorded_make_net():
        recording.net = make_net()
        recording.initial = _state(recording.net)
        return recording.net

    def recorded_init_whitening(layer, images, **kwargs):
        init_whitening(layer, images, **kwargs)
        recording.whitening = layer.weight.detach().clone()

    module.make_net, module.init_whitening_conv = recorded_make_net, recorded_init_whitening
    module.CifarLoader = loader_class(module, data, recording)
    recorder = module.torch = RecordingTorch()
    torch.manual_seed(seed)
    with cpu_float32(), contextlib.redirect_stdout(open(os.devnull, "w")):
        module.main(0)
    recording.states.append(_state(recording.net))  # after the last update and lookahead
    recording.draws = recorder.draws
    return recording


def run_muon(module, data, widths: dict, seed: int, bf16: bool) -> Recording:
    """The original airbench94_muon `main`, its widths narrowed, recorded; without `bf16`,
    its Newton-Schulz iterations in the working precision (float32 or float64)."""
    recording = Recording()
    builtin_dict = dict

    def narrow_dict(**kwargs):  # CifarNet's widths = dict(block1=64, ...)
        return builtin_dict(kwargs, **widths) if "block1" in kwargs else builtin_dict(kwargs)

    module.dict = narrow_dict
    reset, init_whiten = module.CifarNet.reset, module.CifarNet.init_whiten

    def recorded_reset(self):
        reset(self)
        recording.initial = _state(self)

    def recorded_init_whiten(self, images, **kwargs):
        init_whiten(self, images, **kwargs)
        recording.whitening = self.whiten.weight.detach().clone()

    module.CifarNet.reset, module.CifarNet.init_whiten = recorded_reset, recorded_init_whiten
    module.CifarLoader = loader_class(module, data, recording)
    recorder = module.torch = RecordingTorch()
    torch.manual_seed(seed)
    bfloat16 = torch.Tensor.bfloat16
    if not bf16:  # Newton-Schulz in the working precision: bf16's roundings flip on
        torch.Tensor.bfloat16 = lambda self: self  # differences of one ulp, and grow
    try:
        with cpu_float32(), contextlib.redirect_stdout(open(os.devnull, "w")):
            recording.net = module.CifarNet()
            module.main(0, recording.net)
    finally:
        torch.Tensor.bfloat16 = bfloat16
    recording.states.append(_state(recording.net))
    recording.draws = recorder.draws
    return recording


# The transcription on the same weights and draws.

# airbench's module paths -> the transcription's.
LEGACY_NAMES = {"0": "whiten", "2": "block1", "3": "block2", "4": "block3", "7": "head"}
MUON_NAMES = {"whiten": "whiten", "layers.1": "block1", "layers.2": "block2"}
MUON_NAMES |= {"layers.3": "block3", "head": "head"}


def _prefix(module: str, names: dict) -> str:
    return max((p for p in names if module == p or module.startswith(p + ".")), key=len)


def rename(state: dict, names: dict) -> dict:
    """An airbench state dict under the transcription's module paths."""
    out = {}
    for key, value in state.items():
        prefix = _prefix(key.rpartition(".")[0], names)
        out[names[prefix] + key[len(prefix) :]] = value
    return out


def epoch_draws(draws: list, recipe: ab.Recipe, epochs: int):
    """The original loader's draws as (initial flips, [EpochDraws per epoch])."""
    draws = list(draws)
    _, flip = draws.pop(0)
    flips = flip < 0.5
    per_epoch = []
    for _ in range(epochs):
        _, shifts = draws.pop(0)  # (N, 2): (dy, dx) of the crop window
        if recipe.cutout:
            (_, cy), (_, cx) = draws.pop(0), draws.pop(0)
        else:
            cy = cx = torch.zeros(len(shifts), dtype=torch.long)
        _, order = draws.pop(0)
        # A crop window moved by +s shows the content moved by -s.
        per_epoch.append(ab.EpochDraws(order, -shifts[:, 0], -shifts[:, 1], cy, cx))
    return flips, per_epoch


def max_diff(a: dict, b: dict) -> float:
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


def compare(
    recipe: ab.Recipe, recording: Recording, data, names: dict, module, ns_dtype=torch.bfloat16
) -> dict:
    """The transcription replayed on the recording; the largest differences."""
    (x_train, y_train), (x_test, y_test) = data
    net = ab.AirbenchNet(
        recipe.widths, recipe.residual, recipe.bn_momentum, 1 / 9 if recipe.legacy else None
    )
    net.load_state_dict(rename(recording.initial, names))
    lookahead = ab.Lookahead(net) if recipe.lookahead else None
    normalised = ab.normalise(x_train, torch.get_default_dtype())
    filters = ab.whitening_filters(normalised[: ab.WHITEN_IMAGES], descending=recipe.legacy)
    filters = filters.to(recording.whitening)
    signs = torch.sign((filters * recording.whitening).sum(dim=(1, 2, 3)))[:, None, None, None]
    results = {
        "whitening filters (float64 here, float32 there)": float(
            (filters * signs - recording.whitening).abs().max()
        ),
        "whitening filters, largest": float(recording.whitening.abs().max()),
    }
    if recipe.legacy:  # the original's own formula on float64 patches
        k = ab.WHITEN_KERNEL
        images = normalised[: ab.WHITEN_IMAGES].double()
        patches = images.unfold(2, k, 1).unfold(3, k, 1).transpose(1, 3).reshape(-1, 3, k, k)
        values, vectors = module.get_whitening_parameters(patches)
        theirs = vectors / torch.sqrt(values + ab.WHITEN_EPS)
        theirs = torch.cat([theirs, -theirs])
        ours = filters.double()
        signs = torch.sign((ours * theirs).sum(dim=(1, 2, 3)))[:, None, None, None]
        key = "whitening filters, the original's formula on float64 patches"
        results[key] = float((ours * signs - theirs).abs().max())
    with torch.no_grad():
        net.whiten.weight.copy_(recording.whitening)
    steps = len(x_train) // recipe.batch_size
    total = len(recording.batches)
    # The loader: the same draws give the same batches.
    flips, per_epoch = epoch_draws(recording.draws, recipe, -(-total // steps))
    flipped = ab.mirror(normalised, flips)
    worst_batch = 0.0
    for epoch, draws in enumerate(per_epoch):
        images = ab.epoch_images(flipped, draws, epoch, recipe)
        batches = list(
            ab.epoch_batches(images, torch.from_numpy(y_train), draws.order, recipe.batch_size)
        )
        for s, (x, y) in enumerate(batches):
            k = epoch * steps + s
            if k < total:
                got_x, got_y = recording.batches[k]
                worst_batch = max(worst_batch, float((x - got_x).abs().max()))
                assert torch.equal(y, got_y), f"labels of update {k + 1}"
    results["loader batches (same draws)"] = worst_batch
    trainer = ab.Trainer(net, recipe, steps, total, lookahead, ns_dtype)
    for k, (x, y) in enumerate(recording.batches):
        trainer.step(x, y)
        ours = {n: v for n, v in net.state_dict().items() if v.is_floating_point()}
        theirs = {n: v for n, v in rename(recording.states[k], names).items() if n in ours}
        results[f"state after update {k + 1}"] = max_diff(ours, theirs)
    scale = max(float(v.abs().max()) for v in net.state_dict().values() if v.is_floating_point())
    results["state, largest value"] = scale
    x_test_t = ab.normalise(x_test, torch.get_default_dtype())
    net.eval()
    with torch.no_grad():
        for level in (0, 1, 2):
            mine = ab.tta_logits(net, x_test_t, level)
            loader = module.CifarLoader("", train=False)
            with cpu_float32():
                theirs = module.infer(recording.net, loader, level)
            results[f"TTA level {level} logits (the same final weights, each run's own)"] = float(
                (mine - theirs).abs().max()
            )
            # The original's final network run through the transcription's TTA.
            recording.net.eval()
            results[f"TTA level {level}: transcription's TTA of the original's network"] = float(
                (ab.tta_logits(recording.net, x_test_t, level) - theirs).abs().max()
            )
    return results


def forward_check(module, recipe: ab.Recipe, names: dict, images: np.ndarray) -> dict:
    """Full-width logits of the original's network and the transcription's, the same
    weights (random BN statistics and biases), training and inference mode."""
    torch.manual_seed(1)
    with cpu_float32():
        theirs = module.make_net() if recipe.legacy else module.CifarNet()
    if not recipe.legacy:
        theirs.reset()
    with torch.no_grad():
        for m in theirs.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.bias.uniform_(-0.5, 0.5)
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    ours = ab.make_net(recipe)
    ours.load_state_dict(rename(theirs.state_dict(), names))
    x = ab.normalise(images, torch.get_default_dtype())
    results = {}
    for mode in ("train", "eval"):
        theirs.train(mode == "train")
        ours.train(mode == "train")
        with torch.no_grad():
            a, b = theirs(x), ours(x)
        results[f"full-width logits ({mode})"] = float((a - b).abs().max())
        results[f"full-width logits ({mode}), largest"] = float(b.abs().max())
    return results


def muon_check(module) -> dict:
    """The Newton-Schulz iteration on random matrices of the filters' shapes, bf16."""
    fn = module.zeropower_via_newtonschulz5
    results = {}
    for shape in ((64, 24 * 9), (256, 64 * 9), (256, 256 * 9)):
        g = torch.randn(shape, generator=torch.Generator().manual_seed(0))
        results[f"Newton-Schulz {shape} bf16"] = float(
            (fn(g).float() - torch_muon.newton_schulz(g).float()).abs().max()
        )
        results[f"Newton-Schulz {shape} bf16 vs float32"] = float(
            (fn(g).float() - torch_muon.newton_schulz(g, dtype=torch.float32)).abs().max()
        )
    return results


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("original", help="a checkout of KellerJordan/cifar10-airbench")
    parser.add_argument("--data_dir", required=True, help="CIFAR-10's cifar-10-batches-py")
    parser.add_argument("--recipes", default=",".join((*LEGACY, "airbench94_muon")))
    parser.add_argument("--float64", action="store_true", help="both sides in float64")
    parser.add_argument(
        "--muon_bf16",
        action="store_true",
        help="airbench94_muon's training with Newton-Schulz in bf16 on both sides (as the "
        "recipe runs it); unset, in the working precision, which shows the logic exactly",
    )
    args = parser.parse_args(argv)
    if args.float64:
        torch.set_default_dtype(torch.float64)
    torch.set_num_threads(2)
    ab.disable_tf32()
    for name in args.recipes.split(","):
        recipe = ab.RECIPES[name]
        path = f"legacy/{name}.py" if recipe.legacy else "airbench94_muon.py"
        module = import_original(os.path.join(args.original, path), f"original_{name}")
        probe = load_cifar(args.data_dir, 0, 16)[1][0]
        results = forward_check(
            module, recipe, LEGACY_NAMES if recipe.legacy else MUON_NAMES, probe
        )
        if recipe.legacy:
            # 1,024 images in batches of 128 for 4.3 epochs: 35 updates, the whitening bias
            # frozen after 24, the lookahead at 5, 10, ..., 35 and the final one.
            widths = {"block1": 16, "block2": 32, "block3": 32}
            data = load_cifar(args.data_dir, 1024, 512)
            hyp = {"opt": {"batch_size": 128, "train_epochs": 4.3}, "net": {"widths": widths}}
            recording = run_legacy(module, data, hyp, seed=0)
            narrowed = dataclasses.replace(
                recipe, widths=tuple(widths.values()), batch_size=128, epochs=4.3
            )
            names = LEGACY_NAMES
        else:
            # 2,000 images in one batch of 2,000 (the file's): 8 updates, the whitening
            # bias trained for the first 3.
            widths = {"block1": 16, "block2": 32, "block3": 32}
            data = load_cifar(args.data_dir, 2000, 512)
            recording = run_muon(module, data, widths, seed=0, bf16=args.muon_bf16)
            narrowed = dataclasses.replace(recipe, widths=tuple(widths.values()))
            names = MUON_NAMES
            results |= muon_check(module)
        ns_dtype = torch.bfloat16 if args.muon_bf16 else torch.get_default_dtype()
        results |= compare(narrowed, recording, data, names, module, ns_dtype)
        print(f"== {name} (original: {path})")
        for key, value in results.items():
            print(f"  {key}: {value:.3g}")


if __name__ == "__main__":
    main()
