"""What the package's commands (`tf_resnet9.train`, `tf_resnet9.predict`) share: parsing
each command's own flags, where --help is no failure, and TensorFlow's and XLA's C++
log lines kept off stderr. Imports nothing heavy: --help answers without starting
TensorFlow.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
import threading

from absl import app, flags, logging

from tf_resnet9.errors import ConfigError

# A line of the C++ libraries' own log (absl's format: level, date, time, thread, file:line]).
_NATIVE_LOG_LINE = re.compile(
    r"^(?:[IWE]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w./-]+:\d+\] "
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called)"
)


class NativeLogFilter:
    """Keeps the C++ libraries' own log lines (TensorFlow's, XLA's, oneDNN's, in absl's
    format) off stderr while it is active, at start-up and at run time alike; every other
    line (a Python warning, a traceback, the command's own messages) passes through.

    Those libraries write straight to the process's file descriptor 2, some before their
    log level (TF_CPP_MIN_LOG_LEVEL) applies, some at level ERROR while the run goes on (on
    a CPU with AVX-512: "oneDNN supports DT_UINT8 only on platforms with AVX-512"). So the
    descriptor itself is pointed at a pipe, and a thread passes the pipe's lines on to the
    real stderr, leaving out the libraries' own. Use it as a context manager; `close`
    restores stderr and passes on what is still in the pipe (the Ctrl-C handler calls it
    before it ends the process).
    """

    def __enter__(self):
        sys.stderr.flush()
        self._stderr = os.dup(2)
        read_end, write_end = os.pipe()
        os.dup2(write_end, 2)
        os.close(write_end)
        self._pump = threading.Thread(target=self._pass_on, args=(read_end,), daemon=True)
        self._pump.start()
        return self

    def _pass_on(self, read_end: int) -> None:
        with os.fdopen(read_end, "rb") as pipe:
            for line in pipe:
                if not _NATIVE_LOG_LINE.match(line.decode(errors="replace")):
                    os.write(self._stderr, line)

    def close(self) -> None:
        if self._stderr is None:
            return
        sys.stderr.flush()
        os.dup2(self._stderr, 2)  # the pipe's last write end closes: the pump sees its end
        self._pump.join(timeout=5)
        os.close(self._stderr)
        self._stderr = None

    def __exit__(self, *exc_info):
        self.close()
        return False


def one_line(error: Exception, limit: int = 200) -> str:
    """An exception's message on one line, at most `limit` characters: for `error:` lines
    about what a library raised (Keras, Pillow and torch write several lines)."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def report_error(error: Exception | str, flag_values: flags.FlagValues) -> int:
    """Prints `error: ...` on stderr and returns the exit status 1. A `ConfigError` about a
    setting that is one of the command's flags is named as the flag (`--epochs=0 ...`)."""
    if isinstance(error, ConfigError) and error.setting in flag_values:
        message = f"--{error}"
    else:
        message = str(error)
    print(f"error: {message}", file=sys.stderr)
    return 1


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


def run_command(
    main, flag_values: flags.FlagValues, doc: str, argv: list[str] | None = None
) -> None:
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
