r"""The 24-epoch recipe over several seeds, timed by DAWNBench rules.

    python -m benchmarks.dawnbench --data_dir $CIFAR10_DIR --seeds 5

Each seed is a full `train_and_evaluate` run (compiled and warmed up before its clock).
Writes every run (seed, test accuracy, training time, compile time, wall time, images/s,
device, library versions) and the summary (median accuracy, share of runs >= 94%, median
training time, model FLOP utilisation against the GPU's bf16 peak) to
benchmarks/results/, and prints a table.
"""

from __future__ import annotations

import dataclasses
import io

from absl import app, flags

from benchmarks.report import write_report
from benchmarks.runs import RUN_FIELDS, define_run_flags
from tf_resnet9.config_flags import config_from_flags
from tf_resnet9.experiment import train_and_evaluate

CONFIG_FLAGS = define_run_flags("dawnbench", ("precision", "augment", "steps_per_call"))
FLAGS = flags.FLAGS


def main(argv):
    del argv
    runs = []
    for seed in range(FLAGS.first_seed, FLAGS.first_seed + FLAGS.seeds):
        config = config_from_flags(CONFIG_FLAGS, seed=seed)
        log = io.StringIO()  # the per-epoch tables would drown the summary
        results = train_and_evaluate(config, data_dir=FLAGS.data_dir, out=log)
        run = {"seed": seed} | {key: results[key] for key in RUN_FIELDS}
        run["config"] = results["config"]
        runs.append(run)
        print(
            f"seed {seed}: {run['test_accuracy']:.2%} in {run['training_time_s']:.2f} s "
            f"(compile {run['compile_time_s']:.1f} s)",
            flush=True,
        )
    write_report(
        "dawnbench",
        f"tf_resnet9 on {runs[0]['device']['name']}",
        runs,
        runs[0]["device"],
        dataclasses.asdict(config) | {"seed": "per run"},
        FLAGS.out,
    )


if __name__ == "__main__":
    app.run(main)
