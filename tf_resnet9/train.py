r"""Trains ResNet9 on CIFAR-10 by David Page's 24-epoch recipe.

    python -m tf_resnet9.train --data_dir ~/data/cifar-10-batches-py --workdir runs/first

Prints a row per epoch and writes WORKDIR/results.json and WORKDIR/resnet9.keras. Every
setting of `tf_resnet9.TrainConfig` is a flag of the same name. See README.org.
"""

from __future__ import annotations

import contextlib
import datetime
import importlib.util
import os
import re
import signal
import sys
import tempfile
import threading

from absl import app, flags, logging

from tf_resnet9 import config_flags, workdir
from tf_resnet9.config import ConfigError

CONFIG_FLAGS = config_flags.define_config_flags()
flags.adopt_module_key_flags(config_flags)  # --help lists them with this module's own
flags.DEFINE_string(
    "data_dir",
    None,
    "CIFAR-10: the cifar-10-batches-py folder, its parent, or cifar-10-python.tar.gz. "
    "Unset: the Keras cache, else tensorflow-datasets (downloads if online).",
)
flags.DEFINE_string(
    "workdir", None, "Where results.json and resnet9.keras go. Unset: runs/<date-time>."
)
flags.DEFINE_boolean("verbose", False, "Show TensorFlow's and XLA's own log lines.")
FLAGS = flags.FLAGS

HELP_FLAGS = ("-h", "-?", "--help", "--helpshort", "--helpfull")


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    # app.run shows library INFO logs (e.g. JAX probing for TPUs); users need warnings only.
    logging.set_verbosity(logging.WARNING)
    if not FLAGS.verbose:
        # Read once, when TensorFlow or XLA starts: set before the imports below.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "KERAS_BACKEND" not in os.environ and not importlib.util.find_spec("tensorflow"):
        os.environ["KERAS_BACKEND"] = "jax"  # Keras would ask for TensorFlow and fail
    run_dir = FLAGS.workdir or os.path.join(
        "runs", datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    )
    try:
        config = config_flags.config_from_flags(CONFIG_FLAGS)
        created = workdir.make_workdir(run_dir)
    except ConfigError as e:
        return _error(e)
    with StopOnSignal(created):
        # Imported here, not at the top, so that --help and flag errors answer without
        # starting TensorFlow (seconds).
        with contextlib.nullcontext() if FLAGS.verbose else _without_native_startup_logs():
            from tf_resnet9 import hardware
            from tf_resnet9.data import DatasetError
            from tf_resnet9.experiment import train_and_evaluate
            from tf_resnet9.loop import TrainingDiverged

            hardware.current_device()  # probing for a GPU logs too
        try:
            train_and_evaluate(config, data_dir=FLAGS.data_dir, workdir=run_dir)
        except (ConfigError, DatasetError, TrainingDiverged) as e:
            workdir.remove_if_empty(created)
            return _error(e)
    print(f"results: {os.path.join(run_dir, 'results.json')}")
    return 0


# A line of the C++ libraries' own log (absl's format: level, date, time, thread, file:line]).
_NATIVE_LOG_LINE = re.compile(
    r"^(?:[IWE]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w./-]+:\d+\] "
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called)"
)


@contextlib.contextmanager
def _without_native_startup_logs():
    """Holds back the C++ log lines TensorFlow and XLA write to stderr while they load.

    They write before their log level (TF_CPP_MIN_LOG_LEVEL) applies, straight to the
    process's stderr, so the stream itself is held in a file meanwhile; afterwards every
    other line (a Python warning, an error) is passed on.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            for line in held.read().decode(errors="replace").splitlines(keepends=True):
                if not _NATIVE_LOG_LINE.match(line):
                    sys.stderr.write(line)


def _error(error: Exception) -> int:
    if isinstance(error, ConfigError) and error.setting in FLAGS:
        message = f"--{error}"  # the setting is the flag of the same name
    else:
        message = str(error)
    print(f"error: {message}", file=sys.stderr)
    return 1


class StopOnSignal:
    """Ctrl-C (SIGINT) or SIGTERM: stop at once, say so in one line, leave nothing half-done.

    Python runs signal handlers only between bytecodes, and while XLA compiles, the main
    thread stays in C++ for a minute. So the signal also wakes a watcher thread (through
    `signal.set_wakeup_fd`), which acts while the main thread is busy: it removes the empty
    folders the run created and ends the process with 128 + the signal's number (130 for
    Ctrl-C). Results files are written atomically at the end, so none is ever half-written.

    Args:
        created: The folders this run created (`tf_resnet9.workdir.make_workdir`).
    """

    def __init__(self, created: list[str]):
        self.created = created
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
            workdir.remove_if_empty(self.created)
            sys.stdout.flush()
            print(
                f"interrupted ({signal.Signals(signum).name}): stopped; no results written.",
                file=sys.stderr,
                flush=True,
            )
            os._exit(128 + signum)


def _parse_flags(argv: list[str]) -> list[str]:
    FLAGS.unparse_flags()  # in-process callers (the tests) parse more than once
    try:
        return app.parse_flags_with_usage(argv)
    except SystemExit as e:
        # absl exits 1 after printing the help it was asked for: that is no failure.
        if e.code == 1 and any(arg.split("=")[0] in HELP_FLAGS for arg in argv[1:]):
            raise SystemExit(0) from None
        raise


def run(argv: list[str] | None = None) -> None:
    """Console-script entry point; exits with main's status."""
    app.run(main, argv=argv, flags_parser=_parse_flags)


if __name__ == "__main__":
    run()
