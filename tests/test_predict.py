"""The inference model (`tf_resnet9.outputs.export`) and `python -m tf_resnet9.predict`:
uint8 images in, the recipe's normalisation and a softmax inside, saved beside its class
names, and the command's answers to good and bad files (in-process, as the console script
calls it, and once in a fresh process). The command's expected lines are worked out here in
plain NumPy, from images of known pixels and models of known logits."""

import json
import os

import keras
import numpy as np
import pytest
from PIL import Image

import tf_resnet9
from tests.commands import run_module
from tf_resnet9 import predict
from tf_resnet9.data.cifar import class_names
from tf_resnet9.models.resnet9 import resnet9
from tf_resnet9.outputs.export import (
    export_saved_model,
    inference_model,
    read_class_names,
    save_inference_model,
)

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
        ("airplane", "expected a list of class names"),
        ((*CIFAR10_CLASSES[:9], ""), "expected one or more non-empty strings"),
    ],
)
def test_inference_model_refuses_bad_class_names(trained, class_names, message):
    with pytest.raises(ValueError, match=message):
        inference_model(trained[0], class_names)


def test_save_writes_the_model_and_class_names_and_nothing_else(workdir):
    path, written = workdir
    expected = ["inference.keras", "classes.json"]
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
def test_tensorflow_saved_model_gives_the_same_probabilities(trained, tmp_path):
    import tensorflow as tf

    model, images = trained
    assert export_saved_model(model, CIFAR10_CLASSES, tmp_path) == str(tmp_path / "saved_model")
    assert os.listdir(tmp_path) == ["saved_model"]  # no partial or old folder left
    serving = tf.saved_model.load(str(tmp_path / "saved_model"))
    (signature,) = serving.signatures["serving_default"].structured_input_signature[1].values()
    assert signature.dtype == tf.uint8 and tuple(signature.shape) == (None, 32, 32, 3)
    expected = probabilities_of(inference_model(model, CIFAR10_CLASSES), images)
    # A traced graph may order float32 operations differently from eager Keras; 1e-6 is
    # a few float32 steps at 1.0 (measured 0).
    np.testing.assert_allclose(serving.serve(images).numpy(), expected, rtol=0, atol=1e-6)


# Two flat colours, so that a file's pixels, resized or not, are known exactly.
COLOURS = {"a.png": (200, 40, 90), "b.png": (20, 180, 60)}
# A model of known logits: the mean colour picks classes (red: cat, green: dog, blue: ship)
# on top of fixed preferences.
KERNEL = np.zeros((3, 10), np.float32)
KERNEL[0, 3], KERNEL[1, 5], KERNEL[2, 8] = 3.0, 2.0, 1.0
BIAS = np.log(np.linspace(1.0, 2.0, 10)).astype(np.float32)
# The recipe's normalisation, as README.org gives it (per channel, 0..255 scale).
MEAN, STD = np.array([125.31, 122.95, 113.87]), np.array([62.99, 62.09, 66.70])


@pytest.fixture(scope="module")
def image_files(tmp_path_factory):
    """A 32x32 PNG and a 100x60 one, each one flat colour, as a user's files."""
    folder = tmp_path_factory.mktemp("images")
    # Pillow sizes are (width, height): a 100x60 image is an array of 60 rows of 100.
    for (name, colour), shape in zip(COLOURS.items(), [(32, 32, 3), (60, 100, 3)]):
        Image.fromarray(np.full(shape, colour, np.uint8)).save(folder / name)
    return folder


def known_model(takes: str) -> keras.Model:
    """`takes` "uint8": an inference model, raw pixels -> probabilities of the softmax of
    mean(pixels / 255) @ KERNEL + BIAS; "normalised": a training model, normalised images
    -> logits mean(images) @ KERNEL + BIAS."""
    images = keras.Input((32, 32, 3), dtype="uint8" if takes == "uint8" else "float32")
    x = keras.layers.Rescaling(1 / 255)(images) if takes == "uint8" else images
    dense = keras.layers.Dense(10)
    x = dense(keras.layers.GlobalAveragePooling2D()(x))
    dense.set_weights([KERNEL, BIAS])
    return keras.Model(images, keras.layers.Softmax()(x) if takes == "uint8" else x)


def expected_line(path, features: np.ndarray, top: int = 3) -> str:
    """The line predict prints for an image whose mean features are `features`, worked out
    in float64 and printed as README.org describes: the top classes with their percentage."""
    logits = features @ KERNEL.astype(np.float64) + BIAS
    probabilities = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    best = np.argsort(-probabilities)[:top]
    percents = 100 * probabilities[best]
    # The package computes in float32 (relative 1e-7): no percentage may sit near the 0.05
    # boundary where a rounding to 0.1 could go either way.
    assert np.all(np.abs((percents * 10) % 1 - 0.5) > 1e-3)
    classes = ", ".join(f"{CIFAR10_CLASSES[i]} {p:.1f}%" for i, p in zip(best, percents))
    return f"{path}: {classes}"


def run_in_process(capsys, *args) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of the command line with `args`, in this process."""
    with pytest.raises(SystemExit) as exit_info:
        predict.run(["predict", *map(str, args)])
    out, err = capsys.readouterr()
    return exit_info.value.code or 0, out, err


def test_predict_classifies_good_files_and_names_the_bad_ones(capsys, tmp_path, image_files):
    known_model("uint8").save(tmp_path / "inference.keras")
    (tmp_path / "classes.json").write_text(json.dumps({"classes": list(CIFAR10_CLASSES)}))
    good = [image_files / "a.png", image_files / "b.png"]
    missing, text = image_files / "missing.png", image_files / "x.png"
    text.write_text("not an image\n")
    status, out, err = run_in_process(capsys, "--model", tmp_path, good[0], missing, good[1], text)
    assert status == 1
    # Flat colours stay themselves when resized; the inference model sees pixels / 255.
    assert out.splitlines() == [
        f"{good[1]}: resized 100x60 -> 32x32",
        *(expected_line(path, np.array(COLOURS[path.name]) / 255) for path in good),
    ]
    assert err.splitlines() == [
        f"error: {missing}: no such file.",
        f"error: {text}: not an image file Pillow can read (e.g. PNG or JPEG).",
    ]
    assert "Traceback" not in out + err


def test_predict_with_a_training_model_normalises_and_applies_softmax(
    capsys, tmp_path, image_files
):
    # A training model (normalised images -> logits), no classes.json: CIFAR-10's names.
    path = tmp_path / "resnet20.keras"
    known_model("normalised").save(path)
    good = [image_files / "a.png", image_files / "b.png"]
    status, out, err = run_in_process(capsys, "--model", path, "--top", "2", *good)
    assert status == 0, err
    normalised = {name: (np.array(colour) - MEAN) / STD for name, colour in COLOURS.items()}
    expected = [expected_line(p, normalised[p.name], top=2) for p in good]
    assert out.splitlines()[1:] == expected


def test_a_jpeg_is_read_and_resized(tmp_path):
    # JPEG is lossy: a flat colour comes back within a few levels (quality 75 by default).
    Image.fromarray(np.full((50, 70, 3), (30, 120, 210), np.uint8)).save(tmp_path / "c.jpg")
    image, size = predict.read_image(str(tmp_path / "c.jpg"), 32)
    assert size == (70, 50) and image.shape == (32, 32, 3) and image.dtype == np.uint8
    assert np.abs(image.astype(int) - (30, 120, 210)).max() <= 4


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


def test_predict_without_images_is_one_line(capsys, tmp_path):
    known_model("uint8").save(tmp_path / "inference.keras")
    status, out, err = run_in_process(capsys, "--model", tmp_path)
    assert (status, out) == (1, "")
    assert err.splitlines() == ["error: no images given: name one or more image files."]


def test_predict_command_in_a_fresh_process(workdir, image_files):
    result = run_module("tf_resnet9.predict", "--model", workdir[0], image_files / "a.png")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{image_files / 'a.png'}: ")
    assert len(result.stdout.splitlines()) == 1
    # No C++ log lines of TensorFlow or XLA (absl's "I0000 00:00:..." format).
    assert not any(line[:1] in "IWE" and line[1:5].isdigit() for line in result.stderr.split("\n"))
