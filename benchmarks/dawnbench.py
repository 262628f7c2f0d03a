r"""A recipe over several seeds, timed by DAWNBench rules: ResNet9 by the 24-epoch recipe
unless told otherwise.

    python -m benchmarks.dawnbench --data_dir $CIFAR10_DIR --seeds 5
    python -m benchmarks.dawnbench --data_dir $CIFAR10_DIR --seeds 5 --recipe page10
    python -m benchmarks.dawnbench --data_dir $CIFAR10_DIR --seeds 5 --recipe he2016 \
        --model resnet56
    python -m benchmarks.dawnbench --data_dir $CIFAR10_DIR --seeds 5 --recipe adam_plateau

Each seed is a full `train_and_evaluate` run (compiled and warmed up before its clock). The
target is the test accuracy the recipe's source reports for the model (94% for page24 and
page10, He et al.'s Table 6 for their ResNets; adam_plateau has none). Writes every run
(seed, test accuracy, training time, time to the target, compile time, wall time, images/s,
device, library versions) and the summary (median accuracy, share of runs at the target,
median training time, model FLOP utilisation against the GPU's bf16 peak) to
benchmarks/results/, and prints a table.

    python -m benchmarks.dawnbench --data_dir $CIFAR10_DIR --parallel_seeds 4

compares seeds per hour with 4 seeds trained together (`--seeds 4`, JAX) against the same 4
one after another (benchmarks/parallel_seeds.py).
"""

from __future__ import annotations

from absl import app, flags

from benchmarks.parallel_seeds import compare
from benchmarks.runs import define_run_flags, run_seeds
from tf_resnet9.config.flags import config_from_flags
from tf_resnet9.config.recipes import RECIPES

CONFIG_FLAGS = define_run_flags(
    "dawnbench",
    ("recipe", "model", "precision", "augment", "steps_per_call", "val_split", "peak_lr"),
)
flags.DEFINE_integer(
    "parallel_seeds",
    None,
    "Instead: seeds per hour with this many seeds (from --first_seed) trained together in "
    "one compiled program (JAX) against the same seeds one after another "
    "(benchmarks/parallel_seeds.py).",
    lower_bound=2,
)
FLAGS = flags.FLAGS


def main(argv):
    del argv
    config = config_from_flags(CONFIG_FLAGS)
    if FLAGS.parallel_seeds:
        first = config_from_flags(CONFIG_FLAGS, seed=FLAGS.first_seed)
        compare(first, FLAGS.parallel_seeds, FLAGS.data_dir, FLAGS.out)
        return
    target = RECIPES[config.recipe].reported.get(config.model)
    run_seeds("dawnbench", lambda seed: config_from_flags(CONFIG_FLAGS, seed=seed), target)


if __name__ == "__main__":
    app.run(main)
