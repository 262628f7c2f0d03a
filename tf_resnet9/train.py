r"""Trains ResNet9 on CIFAR-10 by David Page's 24-epoch recipe.

    python -m tf_resnet9.train --data_dir ~/data/cifar-10-batches-py --workdir runs/first

Prints a row per epoch and writes WORKDIR/results.json. See README.org.
"""

from __future__ import annotations

import datetime
import os
import sys

from absl import app, flags, logging

from tf_resnet9.config import AUGMENT_MODES, INITS, PRECISIONS, ConfigError, TrainConfig

_DEFAULTS = TrainConfig()

flags.DEFINE_integer("epochs", _DEFAULTS.epochs, "Epochs to train.", lower_bound=1)
flags.DEFINE_integer("batch_size", _DEFAULTS.batch_size, "Images per step.", lower_bound=1)
flags.DEFINE_float(
    "peak_lr", _DEFAULTS.peak_lr, "Peak learning rate (mean-loss units; the recipe's 0.4)."
)
flags.DEFINE_string(
    "data_dir",
    None,
    "CIFAR-10: the cifar-10-batches-py folder, its parent, or cifar-10-python.tar.gz. "
    "Unset: the Keras cache, else tensorflow-datasets (downloads if online).",
)
flags.DEFINE_string("workdir", None, "Where results.json goes. Unset: runs/<date-time>.")
flags.DEFINE_integer("seed", _DEFAULTS.seed, "Seeds initialisation, shuffling, augmentation.")
flags.DEFINE_enum(
    "precision",
    None,
    PRECISIONS,
    "Unset: mixed_bfloat16 on a GPU with bf16, mixed_float16 on older GPUs, float32 on CPU.",
)
flags.DEFINE_boolean("jit", _DEFAULTS.jit, "XLA-compile the train and eval steps.")
flags.DEFINE_enum(
    "augment",
    None,
    AUGMENT_MODES,
    "Where crop, flip and cutout happen: 'device' (the training set on the accelerator) or "
    "'host' (tf.data, TensorFlow backend only). Unset: host on TensorFlow, device on JAX.",
)
flags.DEFINE_integer(
    "steps_per_call",
    None,
    "Training steps per compiled call. Unset: a whole epoch with --augment device on a GPU, "
    "else 1 (XLA's CPU backend runs convolutions in loops far slower).",
    lower_bound=1,
)
flags.DEFINE_enum("init", _DEFAULTS.init, INITS, "Conv/dense kernel initialisation.")
flags.DEFINE_float("width", _DEFAULTS.width, "Multiplies every channel count (> 0).")
flags.DEFINE_integer(
    "train_limit", None, "Use only the first N training images (quick runs).", lower_bound=1
)
flags.DEFINE_integer(
    "test_limit", None, "Use only the first N test images (quick runs).", lower_bound=1
)
flags.register_validator("width", lambda width: width > 0, message="--width must be > 0.")
flags.register_validator("peak_lr", lambda lr: lr > 0, message="--peak_lr must be > 0.")

FLAGS = flags.FLAGS


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    # app.run shows library INFO logs (e.g. JAX probing for TPUs); users need warnings only.
    logging.set_verbosity(logging.WARNING)
    # Imported here, not at the top, so that --help and flag errors answer without
    # starting TensorFlow (seconds).
    from tf_resnet9.data import DatasetError
    from tf_resnet9.training import TrainingDiverged, train_and_evaluate

    workdir = FLAGS.workdir or os.path.join(
        "runs", datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    )
    try:
        config = TrainConfig(
            epochs=FLAGS.epochs,
            batch_size=FLAGS.batch_size,
            peak_lr=FLAGS.peak_lr,
            init=FLAGS.init,
            width=FLAGS.width,
            precision=FLAGS.precision,
            jit=FLAGS.jit,
            augment=FLAGS.augment,
            steps_per_call=FLAGS.steps_per_call,
            seed=FLAGS.seed,
            train_limit=FLAGS.train_limit,
            test_limit=FLAGS.test_limit,
        )
        train_and_evaluate(config, data_dir=FLAGS.data_dir, workdir=workdir)
    except (ConfigError, DatasetError, TrainingDiverged) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"results: {os.path.join(workdir, 'results.json')}")
    return 0


def run() -> None:
    """Console-script entry point."""
    app.run(main)


if __name__ == "__main__":
    run()
