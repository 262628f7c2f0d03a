r"""ResNet9 by the 24-epoch recipe (or --recipe page10) over several seeds, timed by
DAWNBench rules.

    python -m benchmarks.dawnbench --data_dir $CIFAR10_DIR --seeds 5
    python -m benchmarks.dawnbench --data_dir $CIFAR10_DIR --seeds 5 --recipe page10

Each seed is a full `train_and_evaluate` run (compiled and warmed up before its clock).
Writes every run (seed, test accuracy, training time, time to 94%, compile time, wall
time, images/s, device, library versions) and the summary (median accuracy, share of runs
>= 94%, median training time, model FLOP utilisation against the GPU's bf16 peak) to
benchmarks/results/, and prints a table.
"""

from __future__ import annotations

from absl import app, flags

from benchmarks.runs import define_run_flags, run_seeds
from tf_resnet9.config_flags import config_from_flags
from tf_resnet9.recipes import RECIPES

CONFIG_FLAGS = define_run_flags("dawnbench", ("recipe", "precision", "augment", "steps_per_call"))
FLAGS = flags.FLAGS


def main(argv):
    del argv
    target = RECIPES[FLAGS.recipe].reported.get("resnet9")
    run_seeds("dawnbench", lambda seed: config_from_flags(CONFIG_FLAGS, seed=seed), target)


if __name__ == "__main__":
    app.run(main)
