r"""Classifies image files with a trained ResNet9.

    python -m tf_resnet9.predict --model runs/first cat.png dog.jpg

--model is a training run's workdir (its inference.keras, else its trained model, e.g.
resnet9.keras) or one of
those files. Prints the most likely classes of each image, e.g.
`cat.png: cat 81.2%, dog 9.4%, frog 3.1%`, the class names those the model was trained on
(its run's classes.json). Images (PNG, JPEG, anything Pillow reads) of another size than the
model's (32x32 for CIFAR) are resized to it, aspect ratio not kept, as CIFAR-10's were.
Exit status 1 if any file could not be read or classified, else 0.
"""

from __future__ import annotations

import json
import os
import sys
import zipfile

import numpy as np
from absl import flags

from tf_resnet9 import commands
from tf_resnet9.models import MODELS

FLAGS = flags.FlagValues()  # this command's own (`tf_resnet9.commands.run_command`)
flags.DEFINE_string(
    "model",
    None,
    "A training run's workdir, or the inference.keras or trained model (resnet9.keras, "
    "resnet20.keras, ...) in it.",
    flag_values=FLAGS,
)
flags.DEFINE_integer(
    "top", 3, "How many classes to print per image.", lower_bound=1, flag_values=FLAGS
)
# What a workdir holds (tf_resnet9.outputs.export, .run_folder), best first.
MODEL_FILES = ("inference.keras", *(f"{model}.keras" for model in MODELS))
# Images per call of the model: one batch for any usual number of files, while the
# activations of a full-width ResNet9 (two layers' worth live at once, under 1 MB per
# image in float32) stay under 256 MB.
MAX_BATCH = 256


class ModelError(Exception):
    """--model names no model this command can use; the message says why."""


def main(argv: list[str]) -> int:
    paths = argv[1:]
    if not paths:
        return commands.report_error("no images given: name one or more image files.", FLAGS)
    commands.prepare_environment()
    with commands.NativeLogFilter():
        return _classify_files(paths)


def _classify_files(paths: list[str]) -> int:
    if FLAGS.model is None:
        print(
            "error: --model is required: a training run's workdir or a .keras file in it.",
            file=sys.stderr,
        )
        return 1
    try:
        model_path = find_model(FLAGS.model)
        # Keras and its backend start here, not at the top, so that --help and flag errors
        # answer at once.
        classify, class_names, size = load_classifier(model_path)
    except ModelError as e:
        print(f"error: --model={FLAGS.model}: {e}", file=sys.stderr)
        return 1

    images, names, failed = [], [], 0
    for path in paths:
        try:
            image, original_size = read_image(path, size)
        except ImageError as e:
            print(f"error: {path}: {e}", file=sys.stderr)
            failed += 1
            continue
        if original_size != (size, size):
            width, height = original_size
            print(f"{path}: resized {width}x{height} -> {size}x{size}")
        images.append(image)
        names.append(path)
    if images:
        probabilities = np.concatenate(
            [
                classify(np.stack(images[start : start + MAX_BATCH]))
                for start in range(0, len(images), MAX_BATCH)
            ]
        )
        for path, row in zip(names, probabilities):
            print(f"{path}: {format_top(row, class_names, FLAGS.top)}")
    return 1 if failed else 0


def find_model(path: str) -> str:
    """The model file --model names: the file itself, or the best one in a workdir.

    Raises:
        ModelError: `path` is missing, not a .keras file, or a folder without one.
    """
    if os.path.isdir(path):
        for name in MODEL_FILES:
            if os.path.isfile(os.path.join(path, name)):
                return os.path.join(path, name)
        raise ModelError(
            f"the folder holds no {MODEL_FILES[0]} nor a trained model ({MODEL_FILES[1]}, "
            f"{MODEL_FILES[2]}, ...)."
        )
    if not os.path.exists(path):
        raise ModelError("no such file or folder.")
    if not path.endswith(".keras") or not zipfile.is_zipfile(path):
        # Checked here: Keras reports any file that is not a zip archive as "not found".
        raise ModelError("not a .keras file (the zip archive Keras saves) nor a workdir.")
    return path


def load_classifier(path: str):
    """Loads a saved model as a function uint8 images (B, S, S, 3) -> probabilities.

    Args:
        path: An `inference.keras` (uint8 images -> probabilities, its normalisation
            inside: `tf_resnet9.outputs.export`) or a training model such as
            `resnet9.keras` (normalised images -> logits), told apart by their input dtype.
            For the latter, this applies `tf_resnet9.preprocess` with the normalisation its
            run's results.json records (else the recipe's) and a softmax.

    Returns:
        (classify, class_names, size): `classify` maps a NumPy batch to a float32 NumPy
        array (B, num_classes); the class names are those of `classes.json` beside the
        model, else CIFAR-10's; `size` is the side of the images the model takes.

    Raises:
        ModelError: the file is not a Keras model of that shape, or `classes.json` is
            invalid or does not match it.
    """
    import keras

    from tf_resnet9.data.augment import preprocess
    from tf_resnet9.outputs import export

    try:
        # compile=False: the training model's optimizer and schedule are not needed.
        model = export.load_model(path)
    except Exception as e:  # Keras raises many kinds for a file that is not its format
        raise ModelError(f"could not load it as a Keras model: {commands.one_line(e)}") from None
    shape = tuple(model.input_shape[1:]) if len(model.inputs) == 1 else ()
    if len(shape) != 3 or shape[0] != shape[1] or shape[2] != 3 or len(model.output_shape) != 2:
        raise ModelError(
            f"the model maps {model.input_shape} to {model.output_shape}: expected square RGB "
            "images (B, S, S, 3) to (B, num_classes)."
        )
    size = shape[0]
    class_names = _class_names_beside(path, model.output_shape[-1])
    if keras.backend.standardize_dtype(model.inputs[0].dtype) == "uint8":

        def classify(images):
            return keras.ops.convert_to_numpy(model(images, training=False))

    else:
        normalization = _normalization_beside(path)

        def classify(images):
            logits = model(preprocess(images, normalization, size), training=False)
            return keras.ops.convert_to_numpy(keras.ops.softmax(logits))

    return classify, class_names, size


def _normalization_beside(path: str):
    """The (mean, std) the run beside the model normalised with (its results.json), else
    None: the recipe's."""
    results = os.path.join(os.path.dirname(path), "results.json")
    try:
        with open(results) as f:
            mean, std = json.load(f)["config"]["normalization"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return tuple(mean), tuple(std)


def _class_names_beside(path: str, num_classes: int) -> list[str]:
    """The names in the `classes.json` beside the model, else CIFAR-10's, one per output."""
    from tf_resnet9.data import cifar
    from tf_resnet9.outputs import export

    classes_path = os.path.join(os.path.dirname(path), export.CLASSES_FILE)
    if os.path.exists(classes_path):
        try:
            class_names = export.read_class_names(classes_path)
        except ValueError as e:
            raise ModelError(str(e)) from None
        source = classes_path
    else:
        class_names, source = list(cifar.class_names("cifar10")), "CIFAR-10's class names"
    if len(class_names) != num_classes:
        raise ModelError(
            f"the model has {num_classes} outputs but {source} names {len(class_names)} classes."
        )
    return class_names


class ImageError(Exception):
    """An image file could not be read; the message says why, without the path."""


def read_image(path: str, side: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Reads an image file as the input of a model of images `side` x `side`.

    Returns:
        (image, size): uint8 RGB (side, side, 3), resized with Pillow's BICUBIC filter where
        the file's (width, height) `size` is another; Pillow widens the filter by the
        scale factor when it shrinks, so large photos are averaged, not aliased.

    Raises:
        ImageError: the file is missing, unreadable or not an image Pillow can decode.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as file:
            image = file.convert("RGB")  # grey, palette, RGBA and CMYK files alike
    except FileNotFoundError:
        raise ImageError("no such file.") from None
    except IsADirectoryError:
        raise ImageError("is a folder, not an image file.") from None
    except UnidentifiedImageError:
        raise ImageError("not an image file Pillow can read (e.g. PNG or JPEG).") from None
    # A truncated or corrupt file fails while decoding: OSError, or SyntaxError from some
    # of Pillow's decoders; a huge one raises DecompressionBombError.
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ImageError(f"could not read the image: {commands.one_line(e)}") from None
    size = image.size
    if size != (side, side):
        image = image.resize((side, side), Image.Resampling.BICUBIC)
    return np.asarray(image, dtype=np.uint8), size


def format_top(probabilities: np.ndarray, class_names: list[str], top: int) -> str:
    """ "cat 81.2%, dog 9.4%, frog 3.1%": the `top` most likely classes, most likely first."""
    order = np.argsort(-probabilities, kind="stable")[:top]  # ties: the lower label first
    return ", ".join(f"{class_names[i]} {100 * probabilities[i]:.1f}%" for i in order)


def run(argv: list[str] | None = None) -> None:
    """Console-script entry point; exits with main's status."""
    commands.run_command(main, FLAGS, __doc__, argv)


if __name__ == "__main__":
    run()
