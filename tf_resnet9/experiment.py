"""A training run as the package's users call it (`tf_resnet9.train_and_evaluate`): one seed
(`tf_resnet9.training_run`) or several (`tf_resnet9.experiment_seeds`)."""

from __future__ import annotations

import os

import keras

from tf_resnet9.config import TrainConfig
from tf_resnet9.experiment_seeds import train_seeds
from tf_resnet9.outputs.results import RunResults
from tf_resnet9.outputs.seeds import SeedsResults
from tf_resnet9.training_run import train_one


def train_and_evaluate(
    config: TrainConfig,
    data_dir: str | os.PathLike | None = None,
    workdir: str | os.PathLike | None = None,
    out=None,
    callbacks: tuple[keras.callbacks.Callback, ...] = (),
    resume: bool = False,
) -> RunResults | SeedsResults:
    """Trains `config.model` by `config`'s recipe, evaluating on the test set (and the
    validation set, with `config.val_split`) after every epoch.

    Args:
        config: The run's settings.
        data_dir: Where CIFAR-10 is (see `tf_resnet9.load_cifar10`).
        workdir: If set, a checkpoint after every epoch, and at the end `results.json` and
            the trained model (e.g. `resnet9.keras`) first, then the extras: `report.png`,
            TensorBoard's weight histograms, the model for inference (`inference.keras`,
            `classes.json`) and, on TensorFlow, `saved_model/`. Each file is written whole
            or not at all; an extra that fails is named on `out` (and in the result's
            `unwritten`), and the others are still written. The folder is created at the
            start (so that a bad path fails before training) and removed again if the run
            fails and left it empty.
        out: Text stream for progress (default stdout).
        callbacks: Keras callbacks called by the epoch loop (`tf_resnet9.training.loop`),
            after the run's own (progress, checkpoints, TensorBoard).
        resume: Continue from the latest checkpoint in `workdir` (written after every
            epoch), to the same results an uninterrupted run reaches. If the checkpoint is
            of the last epoch, only the end-of-run files that are missing are written.

    With `config.seeds` > 1, the seeds seed, seed + 1, ... each train as a run of that seed
    alone into `workdir/seed-<n>`, together in one compiled program on JAX, one after
    another on TensorFlow; `workdir` gets their summary (`tf_resnet9.experiment_seeds`).

    Returns:
        The results (`RunResults`), with `unwritten`: {file: why} of the extras that failed;
        with several seeds, `tf_resnet9.outputs.seeds.SeedsResults`.

    Raises:
        ConfigError: a setting does not fit the data or the backend.
        MissingPackage: a package the run needs is not installed (before any data is read).
        DatasetError: CIFAR-10 is missing or corrupt.
        TrainingDiverged: a loss or metric became NaN or infinite.
        CheckpointError: `resume` finds no usable checkpoint.
    """
    if config.seeds == 1:
        return train_one(config, data_dir, workdir, out, callbacks, resume)
    if callbacks:
        raise ValueError("callbacks are for a run of one seed: pass seeds=1.")
    return train_seeds(config, data_dir, workdir, out, resume)
