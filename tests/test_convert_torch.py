"""`python -m tf_resnet9.convert_torch`: PyTorch checkpoints of the CIFAR ResNets, written here
with the reference networks (`reference.torch_resnets`) as the codebases that publish them
save theirs, converted to the package's Keras models; their logits against the reference's,
the folder `predict` reads, and the command's answers to bad files and flags."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")  # the converter reads torch's files with torch

from reference import torch_recipe, torch_resnets  # noqa: E402 (needs torch)
from tests.commands import ROOT  # noqa: E402
from tf_resnet9 import convert_torch, predict  # noqa: E402

# Converted and reference logits in inference mode, float32: the same sums in another
# order, ~1e-7 relative per layer. Measured 3.6e-7 (ResNet-20, logits up to 1.2), 2.8e-7
# (ResNet-18), and 1.4e-6 on ResNet-110 (logits up to 4.5; not converted here, to save the
# time). The wrong option-A convention is off by 0.8, a wrong layout more.
LOGITS_ATOL = 1e-5


def reference_network(model: str, zeros: str = "split", seed: int = 0, width: float = 1.0):
    """A reference network with PyTorch's init and random BN parameters and statistics (so
    that the conversion of every one of them shows), in inference mode."""
    torch.manual_seed(seed)
    network = torch_resnets.build(model, width=width, zeros=zeros)
    with torch.no_grad():
        for module in network.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.5, 0.5)
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    return network.eval()


def reference_logits(network, images_uint8: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return network(torch_recipe.normalise(images_uint8)).numpy()


def keras_logits(model, images_uint8: np.ndarray) -> np.ndarray:
    x = torch_recipe.normalise(images_uint8).permute(0, 2, 3, 1).numpy()  # NHWC, same values
    return keras.ops.convert_to_numpy(model(x, training=False))


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)


def save(tmp_path, name: str, network, wrap=lambda state: state) -> str:
    path = str(tmp_path / name)
    torch.save(wrap(network.state_dict()), path)
    return path


def data_parallel(state):
    """As DataParallel's module saves it: every key under "module."."""
    return {f"module.{key}": value for key, value in state.items()}


@pytest.mark.parametrize(
    "model, zeros, wrap",
    [
        ("resnet20", "split", lambda state: state),  # a plain state dict
        ("resnet20", "end", lambda state: state),
        # Idelbayev's pretrained files: {"state_dict": DataParallel's keys, "best_prec1": ...}
        ("resnet20", "split", lambda s: {"state_dict": data_parallel(s), "best_prec1": 91.7}),
        # kuangliu's training script: {"net": DataParallel's keys, "acc": ..., "epoch": ...}
        ("resnet18", "split", lambda s: {"net": data_parallel(s), "acc": 95.0, "epoch": 199}),
    ],
    ids=["plain-split", "plain-end", "state_dict-module", "net-module-resnet18"],
)
def test_converted_logits_equal_the_reference(tmp_path, images, model, zeros, wrap):
    network = reference_network(model, zeros)
    path = save(tmp_path, "checkpoint.pt", network, wrap)
    converted = convert_torch.convert(convert_torch.read_checkpoint(path), model, zeros)
    np.testing.assert_allclose(
        keras_logits(converted, images), reference_logits(network, images), rtol=0, atol=LOGITS_ATOL
    )


def test_the_other_zeros_convention_gives_another_network(tmp_path, images):
    # Nothing in a state dict tells them apart: the flag must be right, and it matters.
    network = reference_network("resnet20", "end")
    arrays = convert_torch.read_checkpoint(save(tmp_path, "end.pt", network))
    wrong = keras_logits(convert_torch.convert(arrays, "resnet20", "split"), images)
    assert np.abs(wrong - reference_logits(network, images)).max() > 100 * LOGITS_ATOL


def run_in_process(capsys, command, *args) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of `command`'s command line with `args`."""
    with pytest.raises(SystemExit) as exit_info:
        command.run(["command", *map(str, args)])
    out, err = capsys.readouterr()
    return exit_info.value.code or 0, out, err


def test_the_command_writes_a_folder_predict_reads(tmp_path, capsys, images):
    network = reference_network("resnet20", seed=1)
    path = save(tmp_path, "resnet20-idelbayev.th", network, lambda s: {"state_dict": s})
    status, out, err = run_in_process(capsys, convert_torch, path, "--model", "resnet20")
    assert status == 0, err
    folder = tmp_path / "resnet20-idelbayev_keras"  # the default --out
    files = [folder / name for name in ("resnet20.keras", "inference.keras", "classes.json")]
    assert out.splitlines() == [
        f"{path}: 116 tensors -> resnet20, option A zeros split",  # 19 x 5 BN + 19 + 2
        "wrote " + ", ".join(map(str, files)),
    ]
    assert sorted(os.listdir(folder)) == sorted(f.name for f in files)  # nothing half-written
    Image.fromarray(images[0]).save(tmp_path / "a.png")
    status, out, err = run_in_process(capsys, predict, "--model", folder, tmp_path / "a.png")
    assert status == 0, err
    assert out.startswith(f"{tmp_path / 'a.png'}: ") and len(out.splitlines()) == 1
    # The inference model predict loaded: uint8 in, the reference's softmax out. Its
    # normalisation divides by sqrt(STD**2) (one float32 rounding); probabilities <= 1:
    # 1e-6 is a few float32 steps at 1.
    inference = keras.models.load_model(folder / "inference.keras")
    expected = torch.softmax(torch.from_numpy(reference_logits(network, images)), -1).numpy()
    got = keras.ops.convert_to_numpy(inference(images))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


def checkpoint_variants(tmp_path):
    """`tmp_path`, holding a good ResNet-20 checkpoint and bad ones."""
    state = reference_network("resnet20").state_dict()
    torch.save(state, tmp_path / "good.pt")
    without_one = {k: v for k, v in state.items() if k != "layer2.1.bn1.running_var"}
    torch.save(without_one, tmp_path / "missing_key.pt")
    data = (tmp_path / "good.pt").read_bytes()
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 2])
    torch.save(reference_network("resnet20", width=0.5).state_dict(), tmp_path / "narrow.pt")
    torch.save({"epoch": 3, "optimizer": {}}, tmp_path / "no_state.pt")
    return tmp_path


@pytest.mark.parametrize(
    "args, message",
    [
        (["absent.pt", "--model", "resnet20"], "error: {d}/absent.pt: no such file."),
        (
            ["good.pt", "--model", "resnet32"],
            "error: {d}/good.pt: does not fit --model=resnet32: missing 60 keys "
            "(layer1.3.conv1.weight, layer1.3.bn1.weight, layer1.3.bn1.bias, ...).",
        ),
        (
            ["good.pt", "--model", "resnet18"],
            "error: {d}/good.pt: does not fit --model=resnet18: missing",
        ),
        (
            ["missing_key.pt", "--model", "resnet20"],
            "error: {d}/missing_key.pt: does not fit --model=resnet20: missing 1 key "
            "(layer2.1.bn1.running_var).",
        ),
        (
            ["truncated.pt", "--model", "resnet20"],
            "error: {d}/truncated.pt: could not read it as a PyTorch checkpoint: ",
        ),
        (
            ["narrow.pt", "--model", "resnet20"],
            "error: {d}/narrow.pt: conv1.weight has shape (8, 3, 3, 3), expected (16, 3, 3, 3): "
            "--model=resnet20 is full width with 10 classes",
        ),
        (["no_state.pt", "--model", "resnet20"], "error: {d}/no_state.pt: holds no state dict"),
        (["good.pt"], "error: --model is required: one of resnet20, "),
        (["good.pt", "--model", "resnet9"], "error: flag --model=resnet9: value should be"),
        (["good.pt", "--model", "resnet20", "--option_a", "middle"], "error: flag --option_a"),
        (["--model", "resnet20"], "error: expected one CHECKPOINT file (got none)."),
    ],
    ids=[
        "missing-file",
        "wrong-depth",
        "wrong-architecture",
        "missing-key",
        "truncated",
        "narrow",
        "no-state-dict",
        "no-model",
        "bad-model",
        "bad-option",
        "no-checkpoint",
    ],
)
def test_bad_input_gets_one_error_line(tmp_path, capsys, args, message):
    folder = checkpoint_variants(tmp_path)
    args = [str(folder / a) if a.endswith(".pt") else a for a in args]
    status, out, err = run_in_process(capsys, convert_torch, *args, "--out", folder / "out")
    assert status == 1
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(message.format(d=folder)), err
    assert out == "" and "Traceback" not in err
    assert not (folder / "out").exists()


def test_without_torch_one_line_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    torch.save({}, tmp_path / "x.pt")
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` fail
    status, _, err = run_in_process(capsys, convert_torch, tmp_path / "x.pt", "--model", "resnet20")
    assert status == 1
    assert err == (
        f"error: {tmp_path / 'x.pt'}: reading a PyTorch checkpoint needs torch, which is not "
        "installed: pip install torch (the CPU build is enough).\n"
    )


def test_help_answers_without_starting_keras_or_torch():
    # A process of its own: this one has both loaded.
    code = (
        "import sys\n"
        "from tf_resnet9 import convert_torch\n"
        "try:\n"
        "    convert_torch.run(['convert_torch', '--help'])\n"
        "except SystemExit as e:\n"
        "    print('exit', e.code, 'keras' in sys.modules, 'torch' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "--option_a" in result.stdout and "--model" in result.stdout
    assert result.stdout.splitlines()[-1] == "exit 0 False False"


# airbench's networks: their state dicts under airbench's own module names.

# airbench's module paths for the transcription's (`reference.torch_airbench`).
AIRBENCH_NAMES = {
    "legacy": {"whiten": "0", "block1": "2", "block2": "3", "block3": "4", "head": "7"},
    "muon": {"whiten": "whiten", "block1": "layers.1", "block2": "layers.2"}
    | {"block3": "layers.3", "head": "head"},
    "reference": {},
}


def airbench_network(recipe: str, seed: int = 0):
    """The transcription's network at full width, random BN biases and statistics and
    whitening filters (each conversion shows), in inference mode."""
    from reference import torch_airbench

    torch.manual_seed(seed)
    network = torch_airbench.make_net(torch_airbench.RECIPES[recipe])
    with torch.no_grad():
        network.whiten.weight.normal_(0, 2)
        network.whiten.bias.uniform_(-0.5, 0.5)
        for module in network.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.bias.uniform_(-0.5, 0.5)
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    return network.eval()


def airbench_state(network, naming: str) -> dict:
    """`network`'s state dict under `naming`'s module paths, in fp16 as airbench keeps its
    weights (BN in float32)."""
    state = {}
    for key, value in network.state_dict().items():
        top, _, rest = key.partition(".")
        prefix = AIRBENCH_NAMES[naming].get(top, top)
        half = value.is_floating_point() and ".norm" not in key and naming != "reference"
        state[f"{prefix}.{rest}"] = value.half() if half else value
    return state


@pytest.mark.parametrize(
    "model, recipe, naming",
    [
        ("airbench94", "airbench94", "legacy"),
        ("airbench96", "airbench96", "legacy"),
        ("airbench94_muon", "airbench94_muon", "muon"),
        ("airbench95", "airbench95", "reference"),
    ],
)
def test_airbench_state_dicts_convert_to_the_same_logits(tmp_path, images, model, recipe, naming):
    from reference import torch_airbench

    network = airbench_network(recipe)
    state = airbench_state(network, naming)
    torch.save(state, tmp_path / "airbench.pt")
    # The reference computes with what the checkpoint holds: fp16-rounded weights (the same
    # keys in the same order, renamed).
    held = zip(network.state_dict(), state.values())
    network.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in held})
    converted = convert_torch.convert_airbench(
        convert_torch.read_checkpoint(str(tmp_path / "airbench.pt")), model
    )
    x = torch_airbench.normalise(images)
    with torch.no_grad():
        expected = network(x).numpy()
    got = keras.ops.convert_to_numpy(converted(x.permute(0, 2, 3, 1).numpy(), training=False))
    # float32, the same sums in another order: logits up to ~0.5, ~1e-7 relative per layer.
    np.testing.assert_allclose(got, expected, rtol=0, atol=LOGITS_ATOL)


def test_the_command_converts_airbench94(tmp_path, capsys):
    path = tmp_path / "airbench94.pt"
    torch.save(airbench_state(airbench_network("airbench94"), "legacy"), path)
    status, out, err = run_in_process(capsys, convert_torch, path, "--model", "airbench94")
    assert status == 0, err
    # The whitening's 2, 6 convolutions, 6 BN layers' 5 (their counters too), the head.
    assert out.splitlines()[0] == f"{path}: 39 tensors -> airbench94"


@pytest.mark.parametrize(
    "naming, model, change, message",
    [
        (
            "muon",
            "airbench94",
            None,
            "its keys are muon airbench's (airbench94_muon.py): expected --model airbench94_muon.",
        ),
        ("legacy", "airbench94_muon", None, "its keys are legacy airbench's"),
        ("legacy", "airbench94", "drop", "missing 1 key (3.conv2.weight)."),
        ("legacy", "airbench94", "scale", "2.norm1.weight is not all 1: airbench freezes"),
        ("legacy", "airbench96", None, "missing 15 keys (2.conv3.weight, 2.norm3.weight"),
    ],
)
def test_airbench_checkpoints_that_do_not_fit(tmp_path, naming, model, change, message):
    state = airbench_state(airbench_network("airbench94"), naming)
    if change == "drop":
        del state["3.conv2.weight"]
    elif change == "scale":
        state["2.norm1.weight"] = state["2.norm1.weight"] * 2
    arrays = {k: v.float().numpy() for k, v in state.items()}
    with pytest.raises(convert_torch.ConversionError) as error:
        convert_torch.convert_airbench(arrays, model)
    assert message in str(error.value)
