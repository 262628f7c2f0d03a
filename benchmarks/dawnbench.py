r"""The 24-epoch recipe over several seeds, timed by DAWNBench rules.

    python -m benchmarks.dawnbench --data_dir $CIFAR10_DIR --seeds 5

Each seed is a full `train_and_evaluate` run (compiled and warmed up before its clock).
Writes every run (seed, test accuracy, training time, time to 94%, compile time, wall
time, images/s, device, library versions) and the summary (median accuracy, share of runs
>= 94%, median training time, model FLOP utilisation against the GPU's bf16 peak) to
benchmarks/results/, and prints a table.
"""

from __future__ import annotations

from absl import app

from benchmarks.runs import define_run_flags, run_seeds
from tf_resnet9.config_flags import config_from_flags
from tf_resnet9.recipes import RECIPES

CONFIG_FLAGS = define_run_flags("dawnbench", ("precision", "augment", "steps_per_call"))


def main(argv):
    del argv
    target = RECIPES["page24"].reported["resnet9"]
    run_seeds("dawnbench", lambda seed: config_from_flags(CONFIG_FLAGS, seed=seed), target)


if __name__ == "__main__":
    app.run(main)
