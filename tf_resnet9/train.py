r"""Trains a network on CIFAR-10 by a recipe: ResNet9 by David Page's 24-epoch recipe unless
told otherwise.

    python -m tf_resnet9.train --data_dir ~/data/cifar-10-batches-py --workdir runs/first
    python -m tf_resnet9.train --model resnet56 --recipe he2016

Prints a row per epoch and writes WORKDIR/results.json and the trained model
(WORKDIR/resnet9.keras, or the --model's name). Every setting of `tf_resnet9.TrainConfig` is
a flag of the same name; --recipe sets their defaults. See README.org.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading

from absl import app, flags

from tf_resnet9 import commands
from tf_resnet9.backends import xla_flags
from tf_resnet9.config import flags as config_flags
from tf_resnet9.errors import USER_ERRORS, ConfigError
from tf_resnet9.outputs import run_folder

FLAGS = flags.FlagValues()  # this command's own (`tf_resnet9.commands.run_command`)
CONFIG_FLAGS = config_flags.define_config_flags(flag_values=FLAGS)
flags.DEFINE_string(
    "data_dir",
    None,
    "CIFAR-10: the cifar-10-batches-py folder, its parent, or cifar-10-python.tar.gz "
    "(unset: the Keras cache, else tensorflow-datasets, which downloads if online); with "
    "--dataset folder, the class folder (train/<class>/*, test/<class>/*); with --dataset "
    "tfds:NAME, tensorflow-datasets' data dir where NAME is prepared.",
    flag_values=FLAGS,
)
flags.DEFINE_string(
    "data_cache",
    None,
    "A class folder's images are decoded into memory-mapped files here (for a set larger "
    "than memory; kept for the next run). Unset: decoded into memory.",
    flag_values=FLAGS,
)
flags.DEFINE_string(
    "workdir",
    None,
    "Where results.json and the trained model (resnet9.keras, ...) go. Unset: "
    "runs/<model>-<recipe>-<date>-<time>.",
    flag_values=FLAGS,
)
flags.DEFINE_boolean(
    "resume",
    False,
    "Continue the run in --workdir from its latest checkpoint (one is written after every "
    "epoch), to the results an uninterrupted run reaches.",
    flag_values=FLAGS,
)
flags.DEFINE_boolean(
    "overwrite",
    False,
    "Where --workdir holds another run, move it aside to <workdir>.replaced-<time> and "
    "start afresh (without it, such a workdir is refused).",
    flag_values=FLAGS,
)
flags.DEFINE_boolean(
    "verbose", False, "Show TensorFlow's and XLA's own log lines.", flag_values=FLAGS
)
# Many machines (JAX): `keras.distribution.initialize`, which starts `jax.distributed`.
flags.DEFINE_string(
    "coordinator_address",
    None,
    "host:port of process 0, for a run over several processes (JAX). Unset: "
    "KERAS_DISTRIBUTION_JOB_ADDRESSES, or the cluster's own (SLURM) with --distributed.",
    flag_values=FLAGS,
)
flags.DEFINE_integer(
    "num_processes", None, "Processes of a run over several (JAX).", flag_values=FLAGS
)
flags.DEFINE_integer(
    "process_id", None, "This process's number, 0 .. num_processes - 1 (JAX).", flag_values=FLAGS
)
flags.DEFINE_boolean(
    "distributed",
    False,
    "Start jax.distributed even without the three flags above: from the "
    "KERAS_DISTRIBUTION_* variables, or the cluster scheduler's (SLURM), which it reads.",
    flag_values=FLAGS,
)
DISTRIBUTION_VARIABLES = (
    "KERAS_DISTRIBUTION_JOB_ADDRESSES",
    "KERAS_DISTRIBUTION_NUM_PROCESSES",
    "KERAS_DISTRIBUTION_PROCESS_ID",
)


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    commands.prepare_environment(quiet=not FLAGS.verbose)
    if FLAGS.deterministic:  # read by XLA when the backend starts: before Keras is imported
        os.environ["XLA_FLAGS"] = xla_flags.with_flag(
            xla_flags.DETERMINISTIC, os.environ.get("XLA_FLAGS")
        )
    try:
        config = config_flags.config_from_flags(CONFIG_FLAGS, FLAGS)
        run_dir = FLAGS.workdir or run_folder.default_workdir(config.model, config.recipe)
        start_processes()
    except ConfigError as e:
        return commands.report_error(e, FLAGS)
    quiet = contextlib.nullcontext() if FLAGS.verbose else commands.NativeLogFilter()
    with quiet as native_logs, StopOnSignal(run_dir, native_logs):
        # Imported here, not at the top, so that --help and flag errors answer without
        # starting TensorFlow (seconds).
        from tf_resnet9 import backends
        from tf_resnet9.experiment import train_and_evaluate

        try:
            results = train_and_evaluate(
                config,
                data_dir=FLAGS.data_dir,
                workdir=run_dir,
                resume=FLAGS.resume,
                overwrite=FLAGS.overwrite,
                data_cache=FLAGS.data_cache,
            )
        except USER_ERRORS as e:
            return commands.report_error(e, FLAGS)
    summary = run_folder.SEEDS_FILE if config.seeds > 1 else run_folder.RESULTS_FILE
    if backends.process_index() == 0:  # of several processes, the first writes
        print(f"results: {os.path.join(run_dir, summary)}")
    return 1 if results.unwritten else 0


def start_processes() -> None:
    """Starts `jax.distributed` where the flags or the environment ask for a run over
    several processes (`keras.distribution.initialize`, before any computation)."""
    given = (FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
    asked = FLAGS.distributed or any(v is not None for v in given)
    if not (asked or any(name in os.environ for name in DISTRIBUTION_VARIABLES)):
        return
    import keras

    if keras.backend.backend() != "jax":
        raise ConfigError(
            "distributed", True, "a run over several processes needs Keras' JAX backend."
        )
    keras.distribution.initialize(*given)


class StopOnSignal:
    """Ctrl-C (SIGINT) or SIGTERM: stop at once, say so in one line, leave nothing half-done.

    Python runs signal handlers only between bytecodes, and while XLA compiles, the main
    thread stays in C++ for a minute. So the signal also wakes a watcher thread (through
    `signal.set_wakeup_fd`), which acts while the main thread is busy: it removes what an
    interrupted checkpoint write left and the empty folders the run created, says how to
    resume where a checkpoint exists, and ends the process with 128 + the signal's number
    (130 for Ctrl-C). Every file is written to a temporary name and renamed into place, so
    none is ever half-written under its own name. The workdir's lock goes with the process.

    Args:
        run_dir: The run's workdir.
        native_logs: The `commands.NativeLogFilter` in use, if any: closed before the
            process ends, so that the last lines reach stderr.
    """

    def __init__(self, run_dir: str, native_logs=None):
        self.run_dir = run_dir
        self.created = run_folder.missing_folders(run_dir)  # what the run will make
        self.native_logs = native_logs
        self._lock = threading.Lock()

    def __enter__(self):
        read_end, write_end = os.pipe()
        os.set_blocking(write_end, False)
        self._previous = {
            signum: signal.signal(signum, lambda signum, frame: self.stop(signum))
            for signum in (signal.SIGINT, signal.SIGTERM)
        }
        self._previous_fd = signal.set_wakeup_fd(write_end)
        threading.Thread(target=self._watch, args=(read_end,), daemon=True).start()
        return self

    def __exit__(self, *exc_info):
        signal.set_wakeup_fd(self._previous_fd)
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self.created = []  # the run ended: what it wrote stays
        return False

    def _watch(self, read_end: int) -> None:
        while True:
            signum = os.read(read_end, 1)[0]
            if signum in (signal.SIGINT, signal.SIGTERM):
                self.stop(signum)

    def stop(self, signum: int) -> None:
        with self._lock:  # the handler and the watcher may both get here: one acts
            run_folder.remove_temporary(self.run_dir)
            for seed_folder in run_folder.run_folders(self.run_dir)[1:]:  # those not started
                run_folder.remove_if_empty([seed_folder])
            run_folder.remove_if_empty(self.created)
            saved = run_folder.kept_checkpoints(self.run_dir)
            if saved:
                then = (
                    f"{saved[-1]} is kept: resume with python -m tf_resnet9.train "
                    f"--workdir {self.run_dir} --resume (and the same flags)."
                )
            else:
                then = "no results written."
            sys.stdout.flush()
            print(
                f"interrupted ({signal.Signals(signum).name}): stopped; {then}",
                file=sys.stderr,
                flush=True,
            )
            if self.native_logs is not None:
                self.native_logs.close()
            os._exit(128 + signum)


def run(argv: list[str] | None = None) -> None:
    """Console-script entry point; exits with main's status."""
    commands.run_command(main, FLAGS, __doc__, argv)


if __name__ == "__main__":
    run()
