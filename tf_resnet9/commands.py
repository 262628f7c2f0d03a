"""What the package's commands (`tf_resnet9.train`, `tf_resnet9.predict`) share: parsing
each command's own flags, where --help is no failure, and TensorFlow's and XLA's C++
start-up log lines kept off stderr. Imports nothing heavy: --help answers without starting
TensorFlow.
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


def _parser(flag_values: flags.FlagValues, doc: str):
    def parse(argv: list[str]) -> list[str]:
        flag_values.unparse_flags()  # in-process callers (the tests) parse more than once
        if any(arg.split("=")[0] in HELP_FLAGS for arg in argv[1:]):
            print(f"{doc.strip()}\n\nflags:\n{flag_values.get_help(include_special_flags=False)}\n")
            raise SystemExit(0)
        try:
            rest = flag_values(argv)
        except flags.Error as error:
            print(f"error: {error}\nPass --help to see the flags.", file=sys.stderr)
            raise SystemExit(1) from None
        flags.FLAGS.mark_as_parsed()  # app.run insists; absl's own flags keep their defaults
        return rest

    return parse


def run(main, flag_values: flags.FlagValues, doc: str, argv: list[str] | None = None) -> None:
    """Runs a command's `main(argv) -> status` with absl, and exits with its status.

    Each command has flags of its own (`flag_values`, not absl's global FLAGS): train's
    --model names a network, predict's a saved model, and both commands live in one
    process in the tests. --help prints `doc` and the flags, and exits 0.
    """
    app.run(main, argv=argv, flags_parser=_parser(flag_values, doc))


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
