"""`python -m tf_resnet9.train` end to end on tiny data, and its answers to bad input."""

import json
import math
import os

import keras
import numpy as np
import pytest

from tests.cifar_files import fake_cifar10, write_folder
from tests.commands import run_module
from tf_resnet9 import augment
from tf_resnet9.data import load_cifar10

TINY = ["--width", "0.0625", "--batch_size", "32"]
# The subprocesses inherit KERAS_BACKEND; tf.data (host augmentation) needs TensorFlow.
BACKEND = keras.backend.backend()
AUGMENT_MODES = ["host", "device"] if BACKEND == "tensorflow" else ["device"]


def run_cli(*args):
    return run_module("tf_resnet9.train", *args)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    # 5 x 40 = 200 training images (6 steps of 32), 30 test images.
    return write_folder(tmp_path_factory.mktemp("cifar"), fake_cifar10(train_per_batch=40, test=30))


@pytest.mark.parametrize("augment", AUGMENT_MODES)
def test_trains_and_writes_finite_results(data_dir, tmp_path, augment):
    args = ["--data_dir", data_dir, "--workdir", str(tmp_path), "--augment", augment]
    result = run_cli(*args, "--epochs", "2", *TINY)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("No GPU found") == 1  # this machine has none; said once
    assert "epoch        lr  train loss" in result.stdout and "test accuracy" in result.stdout
    results = json.loads((tmp_path / "results.json").read_text())
    assert [row["epoch"] for row in results["epochs"]] == [1, 2]
    assert results["steps_per_epoch"] == 6
    assert results["config"]["precision"] == "float32"  # the CPU default
    assert results["config"]["augment"] == augment
    assert results["config"]["steps_per_call"] == 1  # on a CPU, XLA loops are slow
    assert results["data"] == {
        "source": f"folder {data_dir}",
        "train_images": 200,
        "test_images": 30,
    }
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
    assert results["versions"]["keras"] and results["device"]["kind"] == "cpu"
    assert sorted(os.listdir(tmp_path)) == ["resnet9.keras", "results.json"]  # no temp left


def test_saved_model_reproduces_the_reported_accuracy(data_dir, tmp_path):
    result = run_cli("--data_dir", data_dir, "--workdir", str(tmp_path), "--epochs", "1", *TINY)
    assert result.returncode == 0, result.stderr
    reported = json.loads((tmp_path / "results.json").read_text())["test_accuracy"]
    model = keras.models.load_model(tmp_path / "resnet9.keras")
    _, (x_test, y_test) = load_cifar10(data_dir)
    logits = model.predict(keras.ops.convert_to_numpy(augment.normalize(x_test)), verbose=0)
    # Same weights, inference mode; XLA and plain kernels may round a near-tie differently,
    # so allow one image of the 30.
    assert abs(np.mean(logits.argmax(-1) == y_test) - reported) <= 1 / 30 + 1e-9


@pytest.mark.parametrize(
    "args, message",
    [
        (["--epochs", "0"], "--epochs"),
        (["--batch_size", "-1"], "--batch_size"),
        (["--width", "0"], "--width must be > 0"),
        (["--precision", "fp8"], "--precision"),
        (["--init", "xavier"], "--init"),
        (["--no_such_flag"], "no_such_flag"),
        (["stray"], "Unexpected arguments: stray"),
    ],
)
def test_bad_flags_are_refused_without_traceback(args, message):
    result = run_cli(*args)
    assert result.returncode != 0
    assert message in result.stderr and "Traceback" not in result.stderr


@pytest.mark.skipif(BACKEND == "tensorflow", reason="about other backends: make test-jax")
def test_host_augmentation_needs_tensorflow(data_dir, tmp_path):
    result = run_cli("--data_dir", data_dir, "--workdir", str(tmp_path), "--augment", "host")
    assert result.returncode == 1
    assert "augment='host' is invalid on Keras' jax backend" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_data_is_a_clear_error(tmp_path):
    result = run_cli("--data_dir", str(tmp_path / "absent"), "--workdir", str(tmp_path / "run"))
    assert result.returncode == 1
    assert "error: CIFAR-10 not found" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run" / "results.json").exists()


def test_batch_larger_than_the_data(data_dir, tmp_path):
    result = run_cli("--data_dir", data_dir, "--workdir", str(tmp_path), "--batch_size", "512")
    assert result.returncode == 1
    assert "batch_size=512 is invalid: larger than the 200 training images" in result.stderr
    assert not (tmp_path / "results.json").exists()


def test_diverging_loss_stops_and_says_where(data_dir, tmp_path):
    # A peak lr of 1e20 overflows the weights within the first steps.
    args = ["--data_dir", data_dir, "--workdir", str(tmp_path), "--peak_lr", "1e20", *TINY]
    result = run_cli(*args)
    assert result.returncode == 1
    assert "error: the training loss became NaN or infinite at epoch 1, step" in result.stderr
    assert not (tmp_path / "results.json").exists()
