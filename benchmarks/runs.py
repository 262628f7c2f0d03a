"""What the DAWNBench-style benchmarks share, so their runs compare seed for seed: the flags
that choose the runs, the fields every run reports, and the loop over seeds."""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Callable

from absl import flags

from benchmarks.report import write_report
from tf_resnet9.config import TrainConfig
from tf_resnet9.config.flags import define_config_flags
from tf_resnet9.training.records import EpochRecord

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


def time_to_target(records: list[EpochRecord], target: float | None) -> float | None:
    """Training time (DAWNBench) at the end of the first epoch whose test accuracy reaches
    `target`; None if none does (or there is no target)."""
    if target is None:
        return None
    return next((r.training_time_s for r in records if r.test_acc >= target), None)


def each_seed(run: Callable[[int], dict]) -> list[dict]:
    """`run(seed)` for the seeds of --seeds and --first_seed, a line printed after each:
    the runs (each a dict with "seed" and `RUN_FIELDS`)."""
    runs = []
    for seed in range(flags.FLAGS.first_seed, flags.FLAGS.first_seed + flags.FLAGS.seeds):
        result = {"seed": seed} | run(seed)
        runs.append(result)
        print(
            f"seed {seed}: {result['test_accuracy']:.2%} in {result['training_time_s']:.2f} s "
            f"(compile {result['compile_time_s']:.1f} s)",
            flush=True,
        )
    return runs


def run_seeds(benchmark: str, config_of_seed: Callable[[int], TrainConfig], target) -> dict:
    """A whole `train_and_evaluate` run per seed, each compiled and warmed up before its
    clock; prints a line per run, then writes the report.

    Args:
        benchmark: The module's name under benchmarks/.
        config_of_seed: The settings of the run with a seed.
        target: The test accuracy to reach (the recipe's source), or None.
    """
    from tf_resnet9.experiment import train_and_evaluate  # starts Keras: not for --help

    def run(seed: int) -> dict:
        config = config_of_seed(seed)
        log = io.StringIO()  # the per-epoch tables would drown the summary
        results = train_and_evaluate(config, data_dir=flags.FLAGS.data_dir, out=log)
        return {key: getattr(results, key) for key in RUN_FIELDS} | {
            "time_to_target_s": time_to_target(results.epochs, target),
            "airbench_time_s": results.airbench_time_s,  # whitening, training, last eval
            "config": results.as_dict()["config"],
        }

    runs = each_seed(run)
    config = config_of_seed(runs[0]["seed"])
    return write_report(
        benchmark,
        f"tf_resnet9: {config.model} by {config.recipe} on {runs[0]['device']['name']}",
        runs,
        runs[0]["device"],
        dataclasses.asdict(config) | {"seed": "per run"},
        flags.FLAGS.out,
        target,
    )
