"""What the package's commands (`tf_resnet9.train`, `tf_resnet9.predict`) share: flag
parsing where --help is no failure, and TensorFlow's and XLA's C++ start-up log lines kept
off stderr. Imports nothing heavy: --help answers without starting TensorFlow.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import sys
import tempfile

from absl import app, flags, logging

# A line of the C++ libraries' own log (absl's format: level, date, time, thread, file:line]).
_NATIVE_LOG_LINE = re.compile(
    r"^(?:[IWE]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w./-]+:\d+\] "
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called)"
)


@contextlib.contextmanager
def without_native_startup_logs():
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


HELP_FLAGS = ("-h", "-?", "--help", "--helpshort", "--helpfull")


def _parse_flags(argv: list[str]) -> list[str]:
    flags.FLAGS.unparse_flags()  # in-process callers (the tests) parse more than once
    try:
        return app.parse_flags_with_usage(argv)
    except SystemExit as e:
        # absl exits 1 after printing the help it was asked for: that is no failure.
        if e.code == 1 and any(arg.split("=")[0] in HELP_FLAGS for arg in argv[1:]):
            raise SystemExit(0) from None
        raise


def run(main, argv: list[str] | None = None) -> None:
    """Runs a command's `main(argv) -> status` with absl, and exits with its status."""
    app.run(main, argv=argv, flags_parser=_parse_flags)


def prepare_environment(quiet: bool = True) -> None:
    """What a command sets before Keras and its backend start (they read it once, then):
    warnings only from absl's Python logs (app.run shows INFO, e.g. JAX probing for TPUs),
    TensorFlow's and XLA's C++ logs quiet unless not `quiet`, and JAX where TensorFlow is
    not installed (Keras would ask for TensorFlow and fail)."""
    logging.set_verbosity(logging.WARNING)
    if quiet:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "KERAS_BACKEND" not in os.environ and not importlib.util.find_spec("tensorflow"):
        os.environ["KERAS_BACKEND"] = "jax"
