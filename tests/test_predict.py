"""The inference model (`tf_resnet9.export`) and `python -m tf_resnet9.predict`: uint8 images
in, the recipe's normalisation and a softmax inside, saved beside its class names, and the
command's answers to good and bad files (in-process, as the console script calls it, and once
in a fresh process)."""

import json
import os

import keras
import numpy as np
import pytest
from PIL import Image

import tf_resnet9
from tests.commands import run_module
from tf_resnet9 import predict
from tf_resnet9.data import class_names
from tf_resnet9.export import inference_model, read_class_names, save_inference_model
from tf_resnet9.model import resnet9

BACKEND = keras.backend.backend()
CIFAR10_CLASSES = class_names("cifar10")


@pytest.fixture(scope="module")
def trained():
    """A tiny ResNet9 (untrained weights stand in for trained ones) and uint8 test images."""
    keras.utils.set_random_seed(0)
    model = resnet9(width=0.0625)
    images = np.random.default_rng(0).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    images[0], images[1] = 0, 255  # the ends of the pixel range
    return model, images


@pytest.fixture(scope="module")
def workdir(trained, tmp_path_factory):
    """A workdir with the inference model saved as a training run would; the paths written."""
    path = tmp_path_factory.mktemp("run")
    return path, save_inference_model(trained[0], CIFAR10_CLASSES, path)


def probabilities_of(model, images) -> np.ndarray:
    return keras.ops.convert_to_numpy(model(images, training=False))


def test_inference_model_is_preprocess_then_softmax(trained):
    model, images = trained
    probabilities = probabilities_of(inference_model(model, CIFAR10_CLASSES), images)
    logits = model(tf_resnet9.preprocess(images), training=False)
    expected = keras.ops.convert_to_numpy(keras.ops.softmax(logits))
    assert probabilities.dtype == np.float32 and probabilities.shape == (6, 10)
    # Both are float32 throughout; they differ only in that the Normalization layer divides
    # by sqrt(float32(STD**2)), STD to within one rounding (6e-8 relative). Measured 7e-9;
    # 1e-6 is a few float32 steps at 1.0, while a missing or doubled normalisation, or
    # logits in place of probabilities, is off by 1e-3 or more.
    np.testing.assert_allclose(probabilities, expected, rtol=0, atol=1e-6)
    # Ten float32 terms near 0.1, each rounded by at most 2**-28: the sum is 1 to 1e-6.
    np.testing.assert_allclose(probabilities.sum(axis=-1), 1.0, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    "class_names, message",
    [
        (CIFAR10_CLASSES[:9], "class_names has 9 names but model 'resnet9' has 10 logits"),
        (("cat",) * 10, "a name appears twice"),
        ("airplane", "expected a list of names"),
        ((*CIFAR10_CLASSES[:9], ""), "expected one or more non-empty strings"),
    ],
)
def test_inference_model_refuses_bad_class_names(trained, class_names, message):
    with pytest.raises(ValueError, match=message):
        inference_model(trained[0], class_names)


def test_save_writes_the_model_and_class_names_and_nothing_else(workdir):
    path, written = workdir
    expected = ["inference.keras", "classes.json"]
    if BACKEND == "tensorflow":
        expected.append("saved_model")  # no SavedModel from JAX: that needs TensorFlow
    assert written == [str(path / name) for name in expected]
    assert sorted(os.listdir(path)) == sorted(expected)  # no partial file left behind
    assert json.loads((path / "classes.json").read_text()) == {"classes": list(CIFAR10_CLASSES)}
    assert read_class_names(path / "classes.json") == list(CIFAR10_CLASSES)


def test_saved_model_loads_without_custom_objects_and_gives_the_same_output(trained, workdir):
    model, images = trained
    loaded = keras.models.load_model(workdir[0] / "inference.keras")
    assert keras.backend.standardize_dtype(loaded.inputs[0].dtype) == "uint8"
    expected = probabilities_of(inference_model(model, CIFAR10_CLASSES), images)
    # Same weights, same layers, same kernels: equal up to float32 round-off (measured 0).
    np.testing.assert_allclose(probabilities_of(loaded, images), expected, rtol=0, atol=1e-7)


def test_invalid_classes_json_names_the_file(tmp_path):
    path = tmp_path / "classes.json"
    path.write_text('["cat", "dog"]')
    with pytest.raises(ValueError, match=f"{path} is invalid"):
        read_class_names(path)


@pytest.mark.tensorflow
@pytest.mark.skipif(BACKEND != "tensorflow", reason="the SavedModel is written on TensorFlow")
def test_tensorflow_saved_model_gives_the_same_probabilities(trained, workdir):
    import tensorflow as tf

    model, images = trained
    serving = tf.saved_model.load(str(workdir[0] / "saved_model"))
    (signature,) = serving.signatures["serving_default"].structured_input_signature[1].values()
    assert signature.dtype == tf.uint8 and tuple(signature.shape) == (None, 32, 32, 3)
    expected = probabilities_of(inference_model(model, CIFAR10_CLASSES), images)
    # A traced graph may order float32 operations differently from eager Keras; 1e-6 is
    # a few float32 steps at 1.0 (measured 0).
    np.testing.assert_allclose(serving.serve(images).numpy(), expected, rtol=0, atol=1e-6)


@pytest.fixture(scope="module")
def image_files(tmp_path_factory):
    """A 32x32 PNG and a 100x60 JPEG, as a user's files."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / "a.png")
    # Pillow sizes are (width, height): a 100x60 image is an array of 60 rows of 100.
    Image.fromarray(rng.integers(0, 256, (60, 100, 3), dtype=np.uint8)).save(folder / "b.jpg")
    return folder


def run_in_process(capsys, *args) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of the command line with `args`, in this process."""
    with pytest.raises(SystemExit) as exit_info:
        predict.run(["predict", *map(str, args)])
    out, err = capsys.readouterr()
    return exit_info.value.code or 0, out, err


def expected_lines(model, paths) -> list[str]:
    """The prediction lines for `paths`, from `model` (uint8 images -> probabilities)."""
    images = np.stack([predict.read_image(str(path))[0] for path in paths])
    probabilities = probabilities_of(model, images)
    return [
        f"{path}: {predict.format_top(row, list(CIFAR10_CLASSES), 3)}"
        for path, row in zip(paths, probabilities)
    ]


def test_predict_classifies_good_files_and_names_the_bad_ones(capsys, workdir, image_files):
    good = [image_files / "a.png", image_files / "b.jpg"]
    missing, text = image_files / "missing.png", image_files / "x.png"
    text.write_text("not an image\n")
    status, out, err = run_in_process(
        capsys, "--model", workdir[0], good[0], missing, good[1], text
    )
    assert status == 1
    loaded = keras.models.load_model(workdir[0] / "inference.keras")
    assert out.splitlines() == [
        f"{good[1]}: resized 100x60 -> 32x32",
        *expected_lines(loaded, good),
    ]
    assert all(len(line.split("%, ")) == 3 for line in out.splitlines()[1:])  # --top 3
    assert err.splitlines() == [
        f"error: {missing}: no such file.",
        f"error: {text}: not an image file Pillow can read (e.g. PNG or JPEG).",
    ]
    assert "Traceback" not in out + err


def test_predict_with_a_training_model_normalises_and_applies_softmax(
    capsys, trained, workdir, image_files
):
    # A resnet9.keras as training saves it, with no classes.json beside it: CIFAR-10's names.
    path = image_files / "training" / "resnet9.keras"
    path.parent.mkdir()
    trained[0].save(path)
    good = [image_files / "a.png", image_files / "b.jpg"]
    status, out, err = run_in_process(capsys, "--model", path, "--top", "3", *good)
    assert status == 0, err
    # The same weights as the inference model: the same lines, to the printed 0.1%.
    loaded = keras.models.load_model(workdir[0] / "inference.keras")
    assert out.splitlines()[1:] == expected_lines(loaded, good)


@pytest.mark.parametrize(
    "model, message",
    [
        (None, "error: --model is required"),
        ("absent", "error: --model={}: no such file or folder."),
        (
            "empty",
            "error: --model={}: the folder holds no inference.keras nor a trained model "
            "(resnet9.keras, resnet20.keras, ...).",
        ),
        ("junk.keras", "error: --model={}: not a .keras file"),
    ],
)
def test_predict_refuses_a_bad_model_in_one_line(capsys, tmp_path, image_files, model, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "junk.keras").write_text("not a zip archive")
    args = [] if model is None else ["--model", tmp_path / model]
    status, out, err = run_in_process(capsys, *args, image_files / "a.png")
    assert status == 1
    assert err.splitlines() == [err.strip()]  # one line
    assert err.startswith(message.format(tmp_path / (model or "")))
    assert out == "" and "Traceback" not in err


def test_predict_command_in_a_fresh_process(workdir, image_files):
    result = run_module("tf_resnet9.predict", "--model", workdir[0], image_files / "a.png")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{image_files / 'a.png'}: ")
    assert len(result.stdout.splitlines()) == 1
    # No C++ log lines of TensorFlow or XLA (absl's "I0000 00:00:..." format).
    assert not any(line[:1] in "IWE" and line[1:5].isdigit() for line in result.stderr.split("\n"))
