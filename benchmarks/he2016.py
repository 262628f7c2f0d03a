r"""He et al. 2016's CIFAR ResNets by their recipe (`--recipe he2016`) over several seeds.

    python -m benchmarks.he2016 --data_dir $CIFAR10_DIR --depth 56 --seeds 5

The paper's schedule (lr 0.1, / 10 at 50% and 75% of 164 epochs on 50k images, or 182 on
45k with --val_split 5000) unless --epochs says otherwise. The target is the paper's test
error for the depth (Table 6: 8.75% for ResNet-20, 6.97% for ResNet-56); the report gives
the share of runs reaching it and the median training time to reach it. Writes the same
kind of JSON as benchmarks.dawnbench to benchmarks/results/.
"""

from __future__ import annotations

from absl import app, flags

from benchmarks.runs import define_run_flags, run_seeds
from tf_resnet9.config_flags import config_from_flags
from tf_resnet9.recipes import RECIPES

CONFIG_FLAGS = define_run_flags(
    "he2016", ("precision", "augment", "steps_per_call", "val_split", "peak_lr")
)
flags.DEFINE_enum("depth", "56", ["20", "32", "44", "56", "110"], "Layers of the ResNet.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    model = f"resnet{FLAGS.depth}"
    run_seeds(
        "he2016",
        lambda seed: config_from_flags(CONFIG_FLAGS, recipe="he2016", model=model, seed=seed),
        RECIPES["he2016"].reported[model],
    )


if __name__ == "__main__":
    app.run(main)
