"""The trained model, saved and loaded, and as a model for users: uint8 images in, class
probabilities out.

The training model (`tf_resnet9.resnet9`, saved as `resnet9.keras`) takes normalised float
images and returns logits, so every caller must repeat the recipe's normalisation and a
softmax. `inference_model` puts both inside the model, and `save_inference_model` writes it
beside its class names (`export_saved_model` the SavedModel):

    WORKDIR/inference.keras    the Keras model, plain layers only (no custom objects)
    WORKDIR/classes.json       {"classes": [name of class 0, name of class 1, ...]}
    WORKDIR/saved_model/       a TensorFlow SavedModel (TensorFlow backend only)

`python -m tf_resnet9.predict --model WORKDIR IMAGE...` reads them back.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Sequence

import keras
import numpy as np

from tf_resnet9.data.augment import MEAN, STD
from tf_resnet9.data.cifar import IMAGE_SHAPE, checked_class_names
from tf_resnet9.models import layers  # noqa: F401 (it registers the custom layers with Keras)
from tf_resnet9.outputs.files import write_into_place, write_json_atomic

INFERENCE_FILE = "inference.keras"
CLASSES_FILE = "classes.json"
SAVED_MODEL_DIR = "saved_model"


def inference_model(
    model: keras.Model, class_names: Sequence[str], normalization=None
) -> keras.Model:
    """Wraps a trained network so that it maps raw pixels to class probabilities.

    Args:
        model: The trained model: normalised float images (B, S, S, 3) -> logits
            (B, num_classes), e.g. `tf_resnet9.resnet9()` or a loaded `resnet9.keras`.
            It is used as it is (its weights are shared, not copied).
        class_names: The name of each class, in label order; one per logit.
        normalization: (mean, std) per channel on the 0..255 scale the model was trained
            with (`RunSettings.normalization`); None: the recipe's, CIFAR-10's.

    Returns:
        A functional `keras.Model`, uint8 images (B, S, S, 3) on the 0..255 scale ->
        float32 probabilities (B, num_classes) that sum to 1. The normalisation is
        `tf_resnet9.preprocess`'s, (pixel - mean) / std per channel, as a Keras
        `Normalization` layer, so the model saves and loads without custom objects and
        carries the statistics with it.

    Raises:
        ValueError: `class_names` is empty, holds a non-string or empty name or a
            duplicate, or its length differs from the model's number of logits.
    """
    names = _class_names(class_names)
    shape = tuple(model.input_shape[1:])
    square = len(shape) == 3 and shape[0] == shape[1] and shape[2] == IMAGE_SHAPE[2]
    if not square or len(model.output_shape) != 2:
        raise ValueError(
            f"model {model.name!r} maps {model.input_shape} to {model.output_shape}: "
            "expected square RGB images (B, S, S, 3) to logits (B, num_classes)."
        )
    if model.output_shape[-1] != len(names):
        raise ValueError(
            f"class_names has {len(names)} names but model {model.name!r} has "
            f"{model.output_shape[-1]} logits: expected one name per logit."
        )
    mean, std = normalization if normalization is not None else (MEAN, STD)
    images = keras.Input(shape, dtype="uint8", name="images")
    # Normalization casts to its float32 compute dtype, then divides by sqrt(variance):
    # sqrt(float32(std**2)) is std to within one float32 rounding.
    x = keras.layers.Normalization(
        mean=mean, variance=np.square(std), dtype="float32", name="normalize"
    )(images)
    logits = model(x)
    # float32 whatever the model's dtype policy: bf16 probabilities round to 3 digits.
    probabilities = keras.layers.Softmax(dtype="float32", name="probabilities")(logits)
    return keras.Model(images, probabilities, name=f"{model.name}_inference")


def save_model(model: keras.Model, path: str | os.PathLike) -> str:
    """`model.save(path)`, whole or not at all: written under a temporary name, renamed.

    Raises:
        OutputError: it could not be written (nothing partial is left).
    """
    write_into_place(path, model.save, needed=_weight_bytes(model))
    return os.fspath(path)


def _weight_bytes(model: keras.Model) -> int:
    """The size of the model's weights: about what a saved model needs on disk."""
    return sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in model.weights)


def save_inference_model(
    model: keras.Model,
    class_names: Sequence[str],
    workdir: str | os.PathLike,
    normalization=None,
) -> list[str]:
    """Writes the inference model of a trained model and its class names to `workdir`.

    Args:
        model: The trained model (normalised images -> logits), as for `inference_model`.
        class_names: The name of each class, in label order (`tf_resnet9.data.cifar`).
        workdir: The folder to write to (a training run's workdir); created if missing.
        normalization: As for `inference_model`.

    Returns:
        The paths written, each whole or not at all: `workdir/inference.keras` and
        `workdir/classes.json`.

    Raises:
        ValueError: as `inference_model`.
    """
    inference = inference_model(model, class_names, normalization)
    workdir = os.fspath(workdir)
    os.makedirs(workdir, exist_ok=True)
    keras_path = save_model(inference, os.path.join(workdir, INFERENCE_FILE))
    classes_path = os.path.join(workdir, CLASSES_FILE)
    write_json_atomic(classes_path, {"classes": list(class_names)})
    return [keras_path, classes_path]


def read_class_names(path: str | os.PathLike) -> list[str]:
    """The class names a `classes.json` holds.

    Raises:
        ValueError: the file is not JSON of the form {"classes": [name, ...]} with
            distinct non-empty names; the message names the file.
    """
    try:
        with open(path) as f:
            names = json.load(f)["classes"]
        return list(checked_class_names(names))
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(
            f'{os.fspath(path)} is invalid: expected {{"classes": [name, ...]}} ({e}).'
        ) from None


def _class_names(class_names) -> tuple[str, ...]:
    try:
        return checked_class_names(class_names)
    except ValueError as e:
        raise ValueError(f"class_names={e}") from None


def export_saved_model(
    model: keras.Model,
    class_names: Sequence[str],
    workdir: str | os.PathLike,
    normalization=None,
) -> str:
    """Writes `workdir/saved_model`, the inference model (`inference_model`) as a TensorFlow
    SavedModel whose serving signature takes uint8 images (B, S, S, 3) and returns
    probabilities (for TensorFlow Serving and TFLite converters). TensorFlow backend only:
    exporting one from JAX needs TensorFlow too."""
    inference = inference_model(model, class_names, normalization)
    path = os.path.join(os.fspath(workdir), SAVED_MODEL_DIR)

    def export(partial: str) -> None:
        try:
            inference.export(partial, format="tf_saved_model", verbose=False)
        except OSError:
            raise
        except Exception as error:  # TensorFlow's own I/O errors (a full disk) are not OSError
            text = " ".join(str(error).split())
            if "No space left on device" in text:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)) from None
            raise OSError(None, _one_line(text)) from None

    write_into_place(path, export)  # its size: the weights and a graph of unknown size
    return path


def _one_line(text: str) -> str:
    return text if len(text) <= 200 else text[:197] + "..."


def load_model(path: str | os.PathLike) -> keras.Model:
    """`keras.models.load_model(path, compile=False)` for a model tf_resnet9 saved
    (`resnet9.keras`, `resnet20.keras`, `inference.keras`, ...): Keras finds the custom
    layers such a model may hold (option A's `ZeroChannels`, `GhostBatchNorm`, `CELU`) only
    once their modules are imported, as this one does."""
    return keras.models.load_model(path, compile=False)
