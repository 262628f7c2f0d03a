r"""The CIFAR ResNet-18 by `--recipe adam_plateau` over several seeds.

    python -m benchmarks.adam_plateau --data_dir $CIFAR10_DIR --seeds 5

Adam (lr 1e-3, L2 1e-5), the lr cut 10x after --plateau_patience epochs without a lower
training loss (floor 1e-6), 50 epochs unless --epochs says otherwise. No published figure
to compare with (the report has no target): it measures what the recipe reaches. Writes the
same kind of JSON as benchmarks.dawnbench to benchmarks/results/.
"""

from __future__ import annotations

from absl import app

from benchmarks.runs import define_run_flags, run_seeds
from tf_resnet9.config_flags import config_from_flags

CONFIG_FLAGS = define_run_flags(
    "adam_plateau",
    ("precision", "augment", "steps_per_call", "val_split", "plateau_patience", "plateau_monitor"),
)


def main(argv):
    del argv
    run_seeds(
        "adam_plateau",
        lambda seed: config_from_flags(CONFIG_FLAGS, recipe="adam_plateau", seed=seed),
        None,
    )


if __name__ == "__main__":
    app.run(main)
