r"""Trains a grid of runs: every combination of the --set values, each with --seeds seeds,
then prints a table of the test accuracy per combination (median, min and max over the
seeds) and writes WORKDIR/sweep.csv, sweep.png and TensorBoard's HParams.

    python -m tf_resnet9.sweep --data_dir D --workdir runs/sweep1 \
        --set weight_decay=1e-4,5e-4 --set lr_milestones=0.5,0.75:0.3,0.6,0.9 \
        --seeds 3 --model resnet20 --recipe he2016 --epochs 12

--set NAME=V1,V2,... takes the values of one training setting (a tuple setting's values,
e.g. lr_milestones', separated by ':'); every other training flag of
`python -m tf_resnet9.train` is fixed for all the runs. Each run is a folder
WORKDIR/<settings>/seed-<n>; run the same command again to resume: the runs that finished
are not run again. Runs train one at a time per local GPU, or one at a time on a CPU, or as
Ray tasks on a cluster (--ray). See README.org, "Sweeps".
"""

from __future__ import annotations

import contextlib
import os
import sys

from absl import app, flags

from tf_resnet9 import commands
from tf_resnet9.backends import xla_flags
from tf_resnet9.config import flags as config_flags
from tf_resnet9.errors import USER_ERRORS, ConfigError, MissingPackage
from tf_resnet9.sweeps import driver, queues
from tf_resnet9.sweeps.grid import GridError, grid_from_flags

FLAGS = flags.FlagValues()  # this command's own (`tf_resnet9.commands.run_command`)
# --seeds is the sweep's own (seeds per combination, which `sweeps.jobs.train_job` trains).
CONFIG_FLAGS = config_flags.define_config_flags(flag_values=FLAGS, exclude=("seeds",))
flags.DEFINE_multi_string(
    "set",
    [],
    "NAME=V1,V2,...: sweep the training setting NAME over these values (repeat for more "
    "settings: every combination is trained). A tuple setting's values are separated by "
    "':', each a comma list: lr_milestones=0.5,0.75:0.3,0.6,0.9. Booleans: true/false; an "
    "optional setting unset: none.",
    flag_values=FLAGS,
)
flags.DEFINE_integer(
    "seeds",
    1,
    "Train each combination with this many seeds: --seed, --seed + 1, ...",
    lower_bound=1,
    flag_values=FLAGS,
)
flags.DEFINE_string(
    "data_dir",
    None,
    "CIFAR-10, as for python -m tf_resnet9.train (with --ray: the same path on every node).",
    flag_values=FLAGS,
)
flags.DEFINE_string(
    "workdir",
    None,
    "The sweep's folder: a run folder per combination and seed, sweep.json, sweep.csv, "
    "sweep.png, sweep.txt, tensorboard/ (the HParams). Unset: runs/sweep-<date>-<time>.",
    flag_values=FLAGS,
)
flags.DEFINE_string(
    "ray",
    None,
    "Train the runs as Ray tasks: auto (the cluster this host is in), local (a new Ray "
    "instance here) or the head node's host:port; one GPU per run (a node's CPUs where the "
    "cluster has no GPU). Needs Ray: " + queues.RAY_INSTALL + ". Unset: on this host, one "
    "run at a time per GPU (nvidia-smi), else one at a time.",
    flag_values=FLAGS,
)
flags.DEFINE_boolean(
    "verbose", False, "Show TensorFlow's and XLA's own log lines.", flag_values=FLAGS
)


def make_queue(ray_address: str | None):
    """Where the runs train: Ray tasks (--ray), else a process per local GPU, else here."""
    if ray_address:
        return queues.RayQueue(ray_address)
    gpus = queues.local_gpus()
    return queues.GpuQueue(gpus) if gpus else queues.InProcessQueue()


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    commands.prepare_environment(quiet=not FLAGS.verbose)
    try:
        grid, combinations = grid_from_flags(
            FLAGS.set, config_flags.given_settings(CONFIG_FLAGS, FLAGS), FLAGS.seeds
        )
        workdir = FLAGS.workdir or driver.default_workdir()
        driver.check_workdir(workdir, grid, FLAGS.data_dir)
        if any(c.configs[0].deterministic for c in combinations):
            # Read by XLA when the backend starts (here, or in the processes that train).
            os.environ["XLA_FLAGS"] = xla_flags.with_flag(
                xla_flags.DETERMINISTIC, os.environ.get("XLA_FLAGS")
            )
        queue = make_queue(FLAGS.ray)
    except (GridError, ConfigError, MissingPackage) as e:
        return commands.report_error(e, FLAGS)
    except ConnectionError as e:  # ray.init: no cluster at that address
        return commands.report_error(f"--ray {FLAGS.ray}: {commands.one_line(e)}", FLAGS)
    quiet = contextlib.nullcontext() if FLAGS.verbose else commands.NativeLogFilter()
    try:
        with quiet:
            swept = driver.run_sweep(grid, combinations, FLAGS.data_dir, workdir, queue)
    except USER_ERRORS as e:
        return commands.report_error(e, FLAGS)
    except KeyboardInterrupt:
        print(
            f"interrupted: stopped; the finished runs are kept in {workdir}: the same command "
            "again resumes the sweep (a run cut short from its latest checkpoint).",
            file=sys.stderr,
        )
        return 130
    finally:
        queue.close()
    unwritten = [name for name in swept.trained if getattr(swept.outcomes[name], "unwritten", None)]
    return 1 if unwritten else 0


def run(argv: list[str] | None = None) -> None:
    """Console-script entry point; exits with main's status."""
    commands.run_command(main, FLAGS, __doc__, argv)


if __name__ == "__main__":
    run()
