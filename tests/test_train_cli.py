"""`python -m tf_resnet9.train`: one run end to end in a fresh process, Ctrl-C in another,
and its answers to bad input in-process (`train.run`, as the console script calls it)."""

import json
import math
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

import tf_resnet9
from tests.cifar_files import fake_cifar10, write_folder
from tests.commands import ROOT, run_module
from tf_resnet9 import train
from tf_resnet9.backends import xla_flags
from tf_resnet9.backends.device import current_device
from tf_resnet9.config import TrainConfig
from tf_resnet9.config.settings import default_precision
from tf_resnet9.data.cifar import load_cifar10
from tf_resnet9.data.stats import MEAN, STD
from tf_resnet9.outputs.console import cpu_warning

TINY = ["--width", "0.0625", "--batch_size", "32"]
# The run of `finished_run`, repeated, interrupted and resumed by the tests below.
RUN = ["--epochs", "3", "--deterministic", *TINY]
# The subprocesses inherit KERAS_BACKEND; tf.data (host augmentation) needs TensorFlow.
BACKEND = keras.backend.backend()
# The machine the tests run on: the subprocesses see the same device.
DEVICE = current_device()
# The defaults README.org gives: on a CPU TensorFlow trains fastest without XLA and with the
# device input (benchmarks.throughput); on a GPU it keeps XLA and tf.data; JAX always
# compiles and augments on the device.
DEFAULT_AUGMENT = "host" if BACKEND == "tensorflow" and DEVICE.kind == "gpu" else "device"
DEFAULT_JIT = BACKEND == "jax" or DEVICE.kind == "gpu"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    # 5 x 40 = 200 training images (6 steps of 32), 30 test images.
    return write_folder(tmp_path_factory.mktemp("cifar"), fake_cifar10(train_per_batch=40, test=30))


def run_in_process(capsys, *args) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of the command line with `args`, in this process (its
    XLA_FLAGS as they were before: --deterministic adds to them)."""
    before = os.environ.get("XLA_FLAGS")
    try:
        with pytest.raises(SystemExit) as exit_info:
            train.run(["train", *map(str, args)])
    finally:
        if before is None:
            os.environ.pop("XLA_FLAGS", None)
        else:
            os.environ["XLA_FLAGS"] = before
    out, err = capsys.readouterr()
    return exit_info.value.code or 0, out, err


@pytest.fixture(scope="module")
def finished_run(data_dir, tmp_path_factory):
    """A whole run of the command, as a user starts it, and its workdir."""
    workdir = tmp_path_factory.mktemp("run") / "first"
    result = run_module("tf_resnet9.train", "--data_dir", data_dir, "--workdir", workdir, *RUN)
    assert result.returncode == 0, result.stderr
    return result, workdir


def test_run_prints_progress_and_writes_finite_results(finished_run, data_dir):
    result, workdir = finished_run
    # Said once where there is no GPU, never where there is one.
    assert result.stdout.count("No GPU found") == (DEVICE.kind == "cpu")
    assert "For a quick check" not in result.stdout  # --width and --epochs are given
    assert "compiling the training and evaluation steps" in result.stdout
    assert "epoch        lr  train loss" in result.stdout and "test accuracy" in result.stdout
    assert "airbench's clock" not in result.stdout  # an airbench recipe's alone
    assert "; data: cifar10 from folder " in result.stdout  # the path, or the folder in it
    # No C++ log lines of TensorFlow or XLA (absl's "I0000 00:00:..." format) by default.
    assert not any(line[:1] in "IWE" and line[1:5].isdigit() for line in result.stderr.split("\n"))
    results = json.loads((workdir / "results.json").read_text())
    assert [row["epoch"] for row in results["epochs"]] == [1, 2, 3]
    assert results["steps_per_epoch"] == 6
    assert results["config"]["precision"] == default_precision(DEVICE)
    assert results["config"]["augment"] == DEFAULT_AUGMENT
    assert results["config"]["jit"] is DEFAULT_JIT
    # On a CPU one step per call (XLA's loops are slow there); a GPU, with device
    # augmentation, an epoch.
    whole_epoch = DEVICE.kind == "gpu" and DEFAULT_AUGMENT == "device"
    assert results["config"]["steps_per_call"] == (6 if whole_epoch else 1)
    data = dict(results["data"])
    statistics = data.pop("normalization")  # of the random images, worked out below
    assert data == {
        "source": f"folder {data_dir}",
        "train_images": 200,
        "validation_images": 0,
        "test_images": 30,
        "train_subset": None,
        "test_subset": None,
        "image_size": 32,
        "read": {"format": "official CIFAR-10 files (folder)"},
    }
    (x_train, _), _ = load_cifar10(data_dir)
    pixels = x_train.reshape(-1, 3).astype(np.float64)
    # Exact counts, then float64, rounded to 4 decimals (tf_resnet9.data.stats).
    np.testing.assert_allclose(statistics["mean"], pixels.mean(axis=0), atol=1e-4)
    np.testing.assert_allclose(statistics["std"], pixels.std(axis=0), atol=1e-4)
    # CIFAR-10 normalises with the recipe's constants, not the data's own.
    assert results["config"]["normalize"] == "cifar10"
    assert results["config"]["normalization"] == [list(MEAN), list(STD)]
    numbers = [
        results[key]
        for key in (
            "test_accuracy",
            "compile_time_s",
            "training_time_s",
            "eval_time_s",
            "wall_time_s",
            "images_per_s",
        )
    ]
    numbers += [value for row in results["epochs"] for value in row.values()]
    assert all(math.isfinite(value) for value in numbers)
    assert 0 <= results["test_accuracy"] <= 1
    assert results["training_time_s"] > 0 and results["compile_time_s"] > 0
    assert results["wall_time_s"] > results["training_time_s"] + results["compile_time_s"]
    assert results["epochs"][-1]["lr"] == 0.0  # the schedule ends at 0
    assert results["versions"]["keras"] and results["device"]["kind"] == DEVICE.kind
    # --deterministic put XLA's flag into XLA_FLAGS of the process that ran the backend.
    assert xla_flags.DETERMINISTIC in results["environment"]["XLA_FLAGS"].split()
    written = ["checkpoints", "classes.json", "inference.keras", "report.png", "resnet9.keras"]
    written += ["results.json", "tensorboard"]
    written += ["saved_model"] if BACKEND == "tensorflow" else []  # a SavedModel needs TF
    assert sorted(os.listdir(workdir)) == sorted(written)
    # One checkpoint after every epoch, the last two kept (--keep_checkpoints), no temp file.
    assert sorted(os.listdir(workdir / "checkpoints")) == ["epoch-0002.npz", "epoch-0003.npz"]
    assert "airplane" in result.stdout  # the per-class accuracy table
    assert set(results["per_class_accuracy"]) >= {"airplane", "truck"}


def test_saved_model_with_preprocess_reproduces_the_reported_accuracy(finished_run, data_dir):
    _, workdir = finished_run
    reported = json.loads((workdir / "results.json").read_text())["test_accuracy"]
    model = keras.models.load_model(workdir / "resnet9.keras")
    _, (x_test, y_test) = load_cifar10(data_dir)
    logits = model.predict(keras.ops.convert_to_numpy(tf_resnet9.preprocess(x_test)), verbose=0)
    # Same weights, inference mode; XLA and plain kernels may round a near-tie differently,
    # so allow one image of the 30.
    assert abs(np.mean(logits.argmax(-1) == y_test) - reported) <= 1 / 30 + 1e-9


def numbers_of(workdir) -> tuple[list, list, list]:
    """Everything a run computed (per-epoch metrics, confusion matrix, final weights), no
    times."""
    results = json.loads((workdir / "results.json").read_text())
    epochs = [
        {k: v for k, v in row.items() if not k.endswith("_time_s")} for row in results["epochs"]
    ]
    model = keras.models.load_model(workdir / "resnet9.keras")
    return epochs, results["confusion_matrix"], [v.numpy() for v in model.variables]


def assert_same_numbers(workdir, other) -> None:
    (epochs, confusion, weights), (epochs2, confusion2, weights2) = map(
        numbers_of, (workdir, other)
    )
    assert epochs == epochs2 and confusion == confusion2
    for a, b in zip(weights, weights2):
        np.testing.assert_array_equal(a, b)  # bit for bit


@pytest.mark.slow
def test_runs_with_the_same_seed_are_identical(capsys, data_dir, tmp_path, finished_run):
    # Bit for bit: on a CPU XLA's programs are deterministic as they are; on a GPU only
    # because RUN has --deterministic (XLA's deterministic kernels; see the next test).
    status, _, err = run_in_process(
        capsys, "--data_dir", data_dir, "--workdir", tmp_path / "again", *RUN
    )
    assert status == 0, err
    assert_same_numbers(tmp_path / "again", finished_run[1])


@pytest.mark.slow
def test_sigterm_then_resume_ends_where_an_uninterrupted_run_ends(
    capsys, data_dir, tmp_path, finished_run
):
    workdir = tmp_path / "interrupted"
    process = subprocess.Popen(
        [sys.executable, "-m", "tf_resnet9.train", "--data_dir", data_dir, "--workdir", workdir]
        + RUN,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    for line in process.stdout:
        if line.strip().startswith("1 "):  # epoch 1's row: its checkpoint is on disk
            break
    process.send_signal(signal.SIGTERM)  # in epoch 2 (each takes ~0.3 s here)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 143, err
    assert "interrupted (SIGTERM): stopped; " in err and "--resume" in err
    assert "Traceback" not in err
    assert not (workdir / "results.json").exists()
    saved = sorted(path.name for path in (workdir / "checkpoints").iterdir())
    assert saved[0] == "epoch-0001.npz" and not any(n.startswith(".tmp") for n in saved)

    status, out, err = run_in_process(
        capsys, "--data_dir", data_dir, "--workdir", workdir, *RUN, "--resume"
    )
    assert status == 0, err
    assert "resuming from" in out
    assert_same_numbers(workdir, finished_run[1])


def test_deterministic_sets_xla_s_flag_before_the_backend_starts(tmp_path):
    # XLA reads XLA_FLAGS once, when the backend starts: importing the command starts
    # none, so main() can still set the flag, which the run then records (the end-to-end
    # run above checks that).
    program = (
        "import sys, tf_resnet9.train; "
        "print(sorted({'keras', 'jax', 'tensorflow'} & set(sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stderr
    assert (
        xla_flags.with_flag(xla_flags.DETERMINISTIC, "--a=1") == f"--a=1 {xla_flags.DETERMINISTIC}"
    )
    assert (
        xla_flags.with_flag(xla_flags.DETERMINISTIC, xla_flags.DETERMINISTIC)
        == xla_flags.DETERMINISTIC
    )


def test_resume_without_a_checkpoint_is_a_clear_error(capsys, data_dir, tmp_path):
    args = ["--data_dir", data_dir, "--workdir", tmp_path, "--resume", *TINY]
    status, _, err = run_in_process(capsys, *args)
    assert status == 1
    assert "no checkpoint to resume from" in err and "Traceback" not in err


def test_ctrl_c_while_compiling_stops_at_once_and_leaves_nothing(data_dir, tmp_path):
    # Full width: compiling takes long enough (seconds) to be interrupted in the middle.
    workdir = tmp_path / "runs" / "interrupted"
    process = subprocess.Popen(
        [sys.executable, "-m", "tf_resnet9.train", "--data_dir", data_dir, "--workdir", workdir]
        + ["--batch_size", "32", "--epochs", "1", "--jit"],  # XLA's compiler: a minute in C++
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    for line in process.stdout:
        if line.startswith("compiling"):
            break
    time.sleep(1.0)  # inside XLA's compiler, where Python's own handler would wait
    start = time.perf_counter()
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    stopped_after = time.perf_counter() - start
    assert process.returncode == 130, err
    assert err == "interrupted (SIGINT): stopped; no results written.\n"
    # Measured 0.06 s; a handler that waited for the compiler would take many seconds.
    assert stopped_after < 5.0
    assert not (tmp_path / "runs").exists()  # the folders it created are gone


def test_help_exits_zero_and_lists_the_config_flags():
    # A process of its own: absl lists the flags of the program it runs as (cheap: --help
    # answers without starting TensorFlow or JAX).
    result = run_module("tf_resnet9.train", "--help")
    assert result.returncode == 0, result.stderr
    for flag in ("--epochs", "--peak_lr", "--train_limit", "--subset_seed", "--data_dir"):
        assert flag in result.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--epochs", "0"], "error: --epochs=0.0 is invalid: expected a number > 0."),
        (["--batch_size", "-1"], "error: --batch_size=-1 is invalid"),
        (["--width", "0"], "error: --width=0.0 is invalid: expected a number > 0."),
        (["--precision", "fp8"], "--precision"),
        (["--init", "xavier"], "--init"),
        (["--no_such_flag"], "no_such_flag"),
        (["stray"], "Unexpected arguments: stray"),
    ],
)
def test_bad_flags_are_refused_without_traceback(capsys, tmp_path, args, message):
    status, _, err = run_in_process(capsys, "--workdir", tmp_path / "run", *args)
    assert status != 0
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(BACKEND == "tensorflow", reason="about other backends: make test-jax")
def test_host_augmentation_needs_tensorflow(capsys, data_dir, tmp_path):
    status, _, err = run_in_process(
        capsys, "--data_dir", data_dir, "--workdir", tmp_path / "run", "--augment", "host"
    )
    assert status == 1
    assert "error: --augment='host' is invalid: the host pipeline is tf.data" in err
    assert not (tmp_path / "run").exists()


def test_missing_data_is_a_clear_error_and_leaves_no_folder(capsys, tmp_path):
    workdir = tmp_path / "runs" / "run"
    status, _, err = run_in_process(capsys, "--data_dir", tmp_path / "absent", "--workdir", workdir)
    assert status == 1
    assert "error: CIFAR-10 not found" in err and str(tmp_path / "absent") in err
    assert not (tmp_path / "runs").exists()


def test_batch_larger_than_the_data(capsys, data_dir, tmp_path):
    args = ["--data_dir", data_dir, "--workdir", tmp_path / "run", "--batch_size", "512"]
    status, _, err = run_in_process(capsys, *args)
    assert status == 1
    assert "--batch_size=512 is invalid: larger than the 200 training images" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "changes, hint", [({}, True), ({"width": 0.5}, False), ({"train_limit": 4096}, False)]
)
def test_quick_check_hint_only_for_a_full_size_run(changes, hint):
    warning = cpu_warning(TrainConfig(**changes), "a CPU")
    assert warning.startswith("No GPU found: training on the CPU (a CPU), which is slow.")
    assert ("For a quick check: --width 0.25 --epochs 2 --train_limit 4096." in warning) == hint


def test_diverging_loss_stops_and_says_where(capsys, data_dir, tmp_path):
    # A peak lr of 1e20 overflows the weights within the first steps; device augmentation,
    # the other input path than the end-to-end run's on TensorFlow.
    args = ["--data_dir", data_dir, "--workdir", tmp_path / "run", "--peak_lr", "1e20"]
    status, _, err = run_in_process(capsys, *args, "--augment", "device", *TINY)
    assert status == 1
    assert "error: the training loss became NaN or infinite at epoch 1, step" in err
    assert not (tmp_path / "run").exists()
