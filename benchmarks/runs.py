"""What the DAWNBench-style benchmarks share, so their runs compare seed for seed: the flags
that choose the runs and the fields every run reports."""

from __future__ import annotations

from absl import flags

from tf_resnet9.config import TrainConfig

# Every run of benchmarks.dawnbench and benchmarks.reference_torch has these, besides "seed".
RUN_FIELDS = (
    "test_accuracy",
    "training_time_s",
    "compile_time_s",
    "eval_time_s",
    "wall_time_s",
    "images_per_s",
    "device",
    "versions",
)


def define_run_flags(benchmark: str) -> None:
    """Defines the flags both benchmarks take, with the same names, defaults and meaning."""
    flags.DEFINE_string("data_dir", None, "CIFAR-10 (see python -m tf_resnet9.train --help).")
    flags.DEFINE_integer(
        "seeds", 5, "Runs, with seeds first_seed, first_seed + 1, ...", lower_bound=1
    )
    flags.DEFINE_integer("first_seed", 0, "Seed of the first run.")
    flags.DEFINE_integer("epochs", TrainConfig.epochs, "Epochs per run.", lower_bound=1)
    flags.DEFINE_integer("batch_size", TrainConfig.batch_size, "Images per step.", lower_bound=1)
    flags.DEFINE_float("width", 1.0, "Channel multiplier (1.0: the recipe).")
    flags.DEFINE_integer("train_limit", None, "Use only the first N training images.")
    flags.DEFINE_string(
        "out", None, f"JSON path. Unset: benchmarks/results/{benchmark}-<time>.json."
    )
