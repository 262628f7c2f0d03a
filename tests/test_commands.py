"""What the commands share: the C++ libraries' own log lines kept off stderr at any time of
the run, everything else passed through. Tested with lines in their format, written to the
process's file descriptor 2 as the libraries write them: what a given machine's TensorFlow
prints (e.g. oneDNN's AVX-512 notice) differs from CPU to CPU."""

import subprocess
import sys

from tests.commands import ROOT

# Real lines seen from TensorFlow, XLA and oneDNN on this project's machines.
NATIVE = [
    "E0000 00:00:1796178290.991363    2847 util.cc:131] oneDNN supports DT_UINT8 only on "
    "platforms with AVX-512. Falling back to the default Eigen-based implementation if present.",
    "I0000 00:00:1796178291.083535    2847 cpu_feature_guard.cc:227] This TensorFlow binary "
    "is optimized to use available CPU instructions in performance-critical operations.",
    "W0000 00:00:1796178295.457787    2847 cuda_platform.cc:52] failed call to cuInit",
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
]
OWN = ["a Python warning: keep me", "Traceback (most recent call last):", "error: --epochs=0"]


def run(program: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def test_native_log_lines_are_dropped_and_the_rest_passes_in_order():
    lines = [line for pair in zip(NATIVE, OWN + [OWN[0]]) for line in pair]
    program = (
        "import os, sys\n"
        "from tf_resnet9.commands import NativeLogFilter\n"
        f"lines = {lines!r}\n"
        "with NativeLogFilter():\n"
        "    for i, line in enumerate(lines):\n"
        "        if i % 2:\n"
        "            print(line, file=sys.stderr)  # Python's own stream\n"
        "        else:\n"
        "            os.write(2, (line + '\\n').encode())  # as C++ writes, under Python\n"
        "print('after', file=sys.stderr)\n"
    )
    result = run(program)
    assert result.returncode == 0
    assert result.stderr.splitlines() == [*OWN, OWN[0], "after"]


def test_the_last_lines_reach_stderr_when_the_process_ends_at_once():
    # The Ctrl-C handler closes the filter, then calls os._exit: nothing may be lost.
    program = (
        "import os, sys\n"
        "from tf_resnet9.commands import NativeLogFilter\n"
        "logs = NativeLogFilter().__enter__()\n"
        "print('interrupted (SIGINT): stopped', file=sys.stderr, flush=True)\n"
        "logs.close()\n"
        "os._exit(130)\n"
    )
    result = run(program)
    assert result.returncode == 130
    assert result.stderr == "interrupted (SIGINT): stopped\n"
