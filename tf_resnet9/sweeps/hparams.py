"""Each run of a sweep in TensorBoard's HParams dashboard: its swept settings (and seed) and
its final metrics, written with tensorboardX's `add_hparams` into the sweep's TensorBoard
folder (`WORKDIR/tensorboard/<combination>/seed-<n>/`). `tensorboard --logdir WORKDIR`
shows them beside the runs' own curves (`WORKDIR/<combination>/seed-<n>/tensorboard/`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from tf_resnet9.config.values import format_value
from tf_resnet9.errors import MissingPackage
from tf_resnet9.outputs.results import RunResults

FOLDER = "tensorboard"  # in the sweep's workdir
# The metrics' tags: not a tag the runs log per epoch (accuracy/test), whose points at the
# same steps would then be written twice.
TEST_ACCURACY = "hparams/test_accuracy"
TRAINING_TIME = "hparams/training_time_s"


def hparam_values(settings: Mapping[str, object], seed: int) -> dict[str, object]:
    """The values as the dashboard takes them: numbers, text and booleans (a tuple or None
    as `--set` writes it)."""
    values = {
        name: value if isinstance(value, (bool, int, float, str)) else format_value(value)
        for name, value in settings.items()
    }
    return values | {"seed": seed}


def metrics(results: RunResults) -> dict[str, float]:
    return {TEST_ACCURACY: results.test_accuracy, TRAINING_TIME: results.training_time_s}


def log_runs(
    logdir: str | os.PathLike,
    runs: Sequence[tuple[str, Mapping[str, object], int, RunResults]],
) -> list[str]:
    """Writes each run's session (`add_hparams`) where it is not written yet.

    Args:
        logdir: The sweep's TensorBoard folder.
        runs: (run name, swept settings, seed, results) of each finished run; the run name
            (`<combination>/seed-<n>`) is its session's folder under `logdir`.

    Returns:
        The run names written now.
    """
    todo = [run for run in runs if not os.path.isdir(os.path.join(logdir, run[0]))]
    if not todo:
        return []
    writer = _writer(os.fspath(logdir))
    try:
        for name, settings, seed, results in todo:
            writer.add_hparams(
                hparam_values(settings, seed),
                metrics(results),
                name=name,
                global_step=len(results.epochs),
            )
    finally:
        writer.close()
    return [run[0] for run in todo]


def _writer(logdir: str):
    # Not tf_resnet9.outputs.tensorboard's: that module imports Keras, which the sweep's own
    # process does not start where its runs train in other processes.
    try:
        from tensorboardX import SummaryWriter
    except ImportError as error:
        raise MissingPackage(
            "The sweep's TensorBoard HParams need the tensorboardX package: pip install "
            "tensorboardX."
        ) from error
    return SummaryWriter(logdir)
