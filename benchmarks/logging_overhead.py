r"""What TensorBoard logging and the progress line cost a training run.

    python -m benchmarks.logging_overhead --data_dir DIR --width 0.25 --train_limit 4096

Runs the same training (same seed) several times in each of three ways, in turn, so that
slow spells of the machine hit all alike: `--notensorboard` and output to a file (no
logging, no progress line); the default (TensorBoard logs: per-step gradient norms inside
the compiled step, and at each epoch's end scalars, a confusion-matrix image, and weight
histograms at the end); and the default with the output on a terminal (the progress line).
Reports the median training images/s (DAWNBench training time: the time callbacks take at
an epoch's end is excluded) and the median wall time of each (which includes it), and
writes them to benchmarks/results/. Not a test: the figures depend on the machine.
"""

from __future__ import annotations

import dataclasses
import datetime
import io
import statistics
import tempfile

from absl import app, flags

from benchmarks.runs import define_run_flags
from tf_resnet9.config.flags import config_from_flags
from tf_resnet9.experiment import train_and_evaluate
from tf_resnet9.outputs.files import write_json_atomic
from tf_resnet9.outputs.run_folder import timestamp

CONFIG_FLAGS = define_run_flags("logging_overhead", ("precision", "augment", "steps_per_call"))
flags.DEFINE_integer("repeats", 3, "Runs of each way.", lower_bound=1)
FLAGS = flags.FLAGS


class Terminal(io.StringIO):
    """Output that says it is a terminal, so that the progress line is drawn."""

    def isatty(self) -> bool:
        return True


WAYS = {
    "no logging": ({"tensorboard": False}, io.StringIO),
    "TensorBoard (default)": ({}, io.StringIO),
    "TensorBoard + progress line": ({}, Terminal),
}


def main(argv):
    del argv
    measured = {way: [] for way in WAYS}
    for repeat in range(FLAGS.repeats):
        for way, (changes, output) in WAYS.items():
            config = config_from_flags(CONFIG_FLAGS, seed=FLAGS.first_seed, **changes)
            with tempfile.TemporaryDirectory() as workdir:
                results = train_and_evaluate(config, FLAGS.data_dir, workdir, out=output())
            measured[way].append(
                {"images_per_s": results.images_per_s, "wall_time_s": results.wall_time_s}
            )
            print(
                f"{repeat + 1}/{FLAGS.repeats} {way}: {results.images_per_s:,.0f} images/s, "
                f"wall {results.wall_time_s:.1f} s",
                flush=True,
            )
    base = statistics.median(run["images_per_s"] for run in measured["no logging"])
    summary = {}
    for way, runs in measured.items():
        rate = statistics.median(run["images_per_s"] for run in runs)
        summary[way] = {
            "median_images_per_s": rate,
            "median_wall_time_s": statistics.median(run["wall_time_s"] for run in runs),
            "training_slowdown_vs_no_logging": 1 - rate / base,
        }
        slower = summary[way]["training_slowdown_vs_no_logging"]
        wall = summary[way]["median_wall_time_s"]
        print(f"{way:28s} {rate:9,.0f} images/s ({slower:+.1%} slower), wall {wall:.1f} s")
    stamp = datetime.datetime.now(datetime.timezone.utc)
    out = FLAGS.out or f"benchmarks/results/logging_overhead-{timestamp()}.json"
    write_json_atomic(
        out,
        {
            "benchmark": "logging_overhead",
            "date_utc": stamp.isoformat(timespec="seconds"),
            "config": dataclasses.asdict(config_from_flags(CONFIG_FLAGS)),
            "repeats": FLAGS.repeats,
            "summary": summary,
            "runs": measured,
        },
    )
    print(f"results: {out}")


if __name__ == "__main__":
    app.run(main)
