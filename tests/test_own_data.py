"""Runs on your own images (README.org, "Your own data"), end to end through the command: a
class-folder copy of CIFAR-10 trains as the pickled files of the same JPEGs do, number for
number; a folder of 64x64 images trains the models at that size; a tensorflow-datasets data
set prepared here trains; `predict` on a model trained from a folder names its classes."""

import json
import os
import sys

import keras
import numpy as np
import pytest

from benchmarks.cifar_jpeg_folder import write_jpeg_folder
from tests.image_folders import pickled_like_the_converter, rgb_file, write_cifar_npz
from tests.test_train_cli import assert_same_numbers, run_in_process
from tests.tfds_fixture import CLASS_NAMES as TFDS_CLASSES
from tests.tfds_fixture import FIXTURE_DIR, NAME
from tf_resnet9 import predict

TINY = ["--width", "0.0625", "--batch_size", "16", "--epochs", "2", "--notensorboard"]


def results_of(workdir) -> dict:
    return json.loads((workdir / "results.json").read_text())


@pytest.fixture(scope="module")
def cifar_copies(tmp_path_factory):
    """The same JPEG images (6 per class for training, 3 for test) as a class folder and
    as the pickled files the shared converter writes."""
    root = tmp_path_factory.mktemp("copies")
    npz = write_cifar_npz(root / "copy.npz", {"train": 6, "test": 3})
    write_jpeg_folder(root / "copy.npz", root / "folder")
    return root / "folder", pickled_like_the_converter(root / "pickled", npz)


def test_a_class_folder_copy_of_cifar10_trains_as_its_pickled_files(capsys, cifar_copies, tmp_path):
    folder, pickled = cifar_copies
    args = [*TINY, "--seed", "3"]
    status, _, err = run_in_process(
        capsys, "--data_dir", pickled, "--workdir", tmp_path / "p", *args
    )
    assert status == 0, err
    # A folder's normalisation is its training images' own unless told: the recipe's here.
    folder_args = ["--dataset", "folder", "--normalize", "cifar10"]
    status, _, err = run_in_process(
        capsys, "--data_dir", folder, "--workdir", tmp_path / "f", *folder_args, *args
    )
    assert status == 0, err
    assert_same_numbers(tmp_path / "f", tmp_path / "p")  # every figure and weight, exactly
    from_folder, from_pickles = results_of(tmp_path / "f"), results_of(tmp_path / "p")
    assert from_folder["class_names"] == from_pickles["class_names"]
    assert from_folder["data"]["normalization"] == from_pickles["data"]["normalization"]
    assert from_folder["data"]["source"] == f"class folder {folder}"


def test_a_folder_normalises_with_its_own_statistics_by_default(capsys, cifar_copies, tmp_path):
    folder, _ = cifar_copies
    status, out, err = run_in_process(
        capsys, "--data_dir", folder, "--dataset", "folder", "--workdir", tmp_path / "f", *TINY
    )
    assert status == 0, err
    assert "\nread: images 32x32 (the most common size of train/'s images)\n" in out
    results = results_of(tmp_path / "f")
    statistics = results["data"]["normalization"]
    assert results["config"]["normalize"] == "data"
    assert results["config"]["normalization"] == [statistics["mean"], statistics["std"]]
    # The model for inference carries them: uint8 images in, its own normalisation inside.
    model = keras.models.load_model(tmp_path / "f" / "inference.keras", compile=False)
    normalize = model.get_layer("normalize")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(normalize.mean).ravel(), statistics["mean"], rtol=1e-6
    )


def write_64(root) -> None:
    """A class folder of 64x64 images: two classes, 12 for training and 4 for test each."""
    for split, count in (("train", 12), ("test", 4)):
        for name in ("boat", "car"):
            for k in range(count):
                seed = hash((split, name, k)) % 2**31
                rgb_file(root / split / name / f"{k}.png", size=(64, 64), seed=seed)


@pytest.fixture(scope="module")
def folder_64(tmp_path_factory):
    root = tmp_path_factory.mktemp("sixty-four")
    write_64(root)
    return root


@pytest.mark.parametrize(
    "model",
    ["resnet9", pytest.param("resnet20", marks=pytest.mark.slow),
     pytest.param("resnet18", marks=pytest.mark.slow),
     pytest.param("resnet18 imagenet", marks=pytest.mark.slow),
     "airbench94", pytest.param("airbench96", marks=pytest.mark.slow)],
)  # fmt: skip
def test_a_64x64_folder_trains_the_models_at_that_size(capsys, folder_64, tmp_path, model):
    name, *stem = model.split()
    # An airbench network by its recipe: the whitening, lookahead and TTA at 64x64 too.
    chosen = ["--recipe", name] if name.startswith("airbench") else ["--model", name]
    args = [*chosen, *(["--stem", stem[0]] if stem else []), *TINY, "--batch_size", "8"]
    if model == "resnet18":
        # TensorFlow 2.21's oneDNN kernels (its CPU default, without XLA) crash the process
        # on this ResNet-18 at 64x64 at widths 0.0625 and 0.125 (4 to 64 channels), not at
        # 0.25 or 1.0, nor with XLA or TF_ENABLE_ONEDNN_OPTS=0 (measured here).
        args += ["--width", "0.25"]
    workdir = tmp_path / "run"
    status, out, err = run_in_process(
        capsys, "--data_dir", folder_64, "--dataset", "folder", "--workdir", workdir, *args
    )
    assert status == 0, err
    results = results_of(workdir)
    assert results["config"]["image_size"] == 64 and results["data"]["image_size"] == 64
    assert results["class_names"] == ["boat", "car"]
    trained = keras.models.load_model(workdir / f"{name}.keras", compile=False)
    assert tuple(trained.input_shape) == (None, 64, 64, 3)
    # predict names the folder's classes and reads images at the model's size.
    image = tmp_path / "photo.png"
    rgb_file(image, size=(100, 80), seed=5)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        predict.run(["predict", "--model", str(workdir), str(image)])
    out = capsys.readouterr().out
    assert (exit_info.value.code or 0) == 0
    assert f"{image}: resized 100x80 -> 64x64" in out
    (line,) = [x for x in out.splitlines() if x.startswith(f"{image}: ") and "resized" not in x]
    assert all(f" {label} " in f" {line} " for label in ("boat", "car"))


def test_a_tfds_data_set_prepared_here_trains(capsys, tmp_path):
    # The tiny data set of tests/tfds_fixture, prepared as array_record: no TensorFlow
    # needed to read it (the JAX suite runs this too); 8x8 images of three classes. The GPU
    # machine's stack has no tensorflow-datasets: the error saying so is tested below.
    pytest.importorskip("tensorflow_datasets")
    args = ["--dataset", f"tfds:{NAME}/rgb", "--data_dir", FIXTURE_DIR, "--workdir", tmp_path]
    status, out, err = run_in_process(capsys, *args, *TINY, "--batch_size", "4")
    assert status == 0, err
    results = results_of(tmp_path)
    assert results["class_names"] == list(TFDS_CLASSES)
    assert results["data"]["train_images"] == 12 and results["data"]["test_images"] == 6
    assert results["config"]["image_size"] == 8 and results["config"]["normalize"] == "data"
    assert np.isfinite(results["test_accuracy"])


def test_a_tfds_name_without_tensorflow_datasets_is_one_line(capsys, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # its import fails
    args = ["--dataset", f"tfds:{NAME}/rgb", "--data_dir", FIXTURE_DIR, "--workdir", tmp_path]
    status, _, err = run_in_process(capsys, *args, *TINY)
    assert status == 1
    assert err == (
        f"error: tfds:{NAME}/rgb in {FIXTURE_DIR}: needs tensorflow-datasets, which is not "
        "installed (pip install tensorflow-datasets; tensorflow_datasets is missing).\n"
    )


def test_a_training_set_over_the_memory_budget_streams(capsys, cifar_copies, tmp_path):
    folder, _ = cifar_copies
    args = ["--data_dir", folder, "--dataset", "folder", "--max_device_memory", "100KB"]
    status, out, err = run_in_process(capsys, *args, "--workdir", tmp_path, *TINY)
    assert status == 0, err
    results = results_of(tmp_path)
    assert results["config"]["stream"] is True
    assert results["config"]["placement"].endswith("over the budget (0.1 MiB): streamed")
    assert "training set: streamed" in out
    assert os.path.isfile(tmp_path / "resnet9.keras")
