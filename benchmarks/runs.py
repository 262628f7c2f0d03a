"""What the DAWNBench-style benchmarks share, so their runs compare seed for seed: the flags
that choose the runs and the fields every run reports."""

from __future__ import annotations

from absl import flags

from tf_resnet9.config_flags import define_config_flags

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


# The training settings both benchmarks take, defined from `TrainConfig` (same names,
# defaults and help as `python -m tf_resnet9.train`).
SHARED_CONFIG_FLAGS = ("epochs", "batch_size", "width", "train_limit", "test_limit", "subset_seed")


def define_run_flags(benchmark: str, config_flags: tuple[str, ...] = ()) -> list[str]:
    """Defines the flags both benchmarks take, plus `config_flags` of `TrainConfig`.

    Returns:
        The names of the `TrainConfig` flags defined (for `config_from_flags`).
    """
    flags.DEFINE_string("data_dir", None, "CIFAR-10 (see python -m tf_resnet9.train --help).")
    flags.DEFINE_integer(
        "seeds", 5, "Runs, with seeds first_seed, first_seed + 1, ...", lower_bound=1
    )
    flags.DEFINE_integer("first_seed", 0, "Seed of the first run.")
    flags.DEFINE_string(
        "out", None, f"JSON path. Unset: benchmarks/results/{benchmark}-<time>.json."
    )
    return define_config_flags(only=SHARED_CONFIG_FLAGS + config_flags)
