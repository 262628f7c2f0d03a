r"""The whole work of a GPU lease in one command: environment, smoke run, benchmarks, profile.

    source .device/setup.sh && python -m benchmarks.gpu_session --data_dir $CIFAR10_DIR --out $OUT
    python -m benchmarks.gpu_session --data_dir DIR --out OUT --dry_run   # a CPU, tiny sizes

The steps run one after another, each a child process (`sys.executable -m ...`) with a
timeout from what is left of --budget_s, the most important figures first:

    smoke          1 epoch of `tf_resnet9.train` (the GPU defaults: device augmentation, bf16),
                   in a workdir under /tmp; its results.json times the Keras steps
    smoke-torch    1 epoch, 1 seed of `benchmarks.reference_torch`, likewise for the torch ones
    page24-keras   `benchmarks.dawnbench`, --seeds seeds          -> OUT/page24-keras.json
    page24-torch   `benchmarks.reference_torch`, the same seeds   -> OUT/page24-torch.json
    page10-keras   the same with --recipe page10                  -> OUT/page10-keras.json
    page10-torch                                                  -> OUT/page10-torch.json
    airbench94-keras  `benchmarks.dawnbench --recipe airbench94`  -> its report in session.json
    airbench94-torch  the transcription, the same seeds            -> likewise
    seeds-together `benchmarks.dawnbench --parallel_seeds`: page24's seeds in one program
                   against one after another (seeds per hour)     -> OUT/seeds-together.json
    profile        `benchmarks.profile_epoch`, one compiled epoch -> OUT/profile.txt

OUT also gets session.json (the environment, the budget, each step's command, status, time
and headline figures; rewritten atomically after every step, so a session killed from
outside still leaves a true record) and log.txt (every line the children print, prefixed
with the elapsed seconds and the step, as it comes): 8 files, the lease's 8, so the airbench
steps write their reports to the scratch folder and session.json holds them whole. A step that
fails is recorded (the end of its stderr) and the next one runs; a step needing a package
that is missing (torch, jax) is skipped and says so.

The budget. Every step after the smoke runs only if its estimate, times 1.15, fits in what
is left; a benchmark that does not fit with all its seeds runs with as many as fit, if
that is at least --min_seeds, and is skipped otherwise. The estimates come from the
latest measurement of the same framework (the smoke runs first, then each benchmark's own
JSON refines the next):

    benchmark = start-up + seeds x (fixed + epochs x (epoch + evaluation))
    seeds-together = 2 x that of page24 (both ways, the one in one program taken to be as
                 long as the other: unmeasured on a GPU), with no fewer seeds
    profile   = start-up + fixed + 4 x epoch + 10 s (one epoch compiles, one is timed, one
                is traced, which slows it, counted twice; then the trace is read)

where start-up is the child's wall time less its runs' (Python, imports, torch's data
loading), fixed is a run's wall time less its training and evaluation (data, model,
compilation or warm-up; the longest of its runs), and epoch and evaluation are per epoch
(medians). Each seed is counted as compiling anew, as a process's first run does (the
benchmarks build a new model per seed; later ones find some of it cached), so the estimate
errs long. page10 evaluates every image and its mirror image: its evaluation counts twice
page24's. A step with no measurement (its smoke failed) runs with what is left as its timeout; the
smokes have none before they run and get at most 40% (smoke) and 15% (smoke-torch) of
the budget. A child past its timeout gets SIGTERM, then SIGKILL 10 s later.

Memory. JAX preallocates 75% of the GPU's memory in each process that starts its GPU
client. The children run one at a time, so each JAX child (smoke, page24-keras,
page10-keras, profile) gets XLA_PYTHON_CLIENT_MEM_FRACTION=--mem_fraction (0.9),
explicitly, so that results.json records it (its `environment`); the torch children get
XLA_PYTHON_CLIENT_PREALLOCATE=false, so that nothing in them that starts JAX takes memory
from PyTorch's caching allocator, which grows on demand. This process imports neither JAX
nor torch: the JAX devices are listed by a child of their own, which preallocates nothing.

--dry_run runs the same steps at tiny size (1 epoch, width 0.0625, batch 32, 256 training
and 64 test images, 2 seeds; the profile on 256 images), so that the first command on the
lease cannot fail on a typo. It works on Keras' JAX backend without TensorFlow (the GPU
machine has none) and on TensorFlow (where the profile, JAX only, is skipped).
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable

from absl import app, flags

from tf_resnet9.config import TrainConfig
from tf_resnet9.outputs.files import TEMPORARY_PREFIX, write_atomic

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_FILES = 8  # what the lease brings back from OUT
MARGIN = 1.15  # estimates times this must fit
RESERVE_S = 5.0  # kept back from the last child: session.json and the log are written after it
MIN_START_S = 10.0  # less than this left: no child starts (Python and JAX take seconds to load)
KILL_GRACE_S = 10.0  # SIGTERM, then SIGKILL this much later
STDERR_LINES = 15  # the end of a failed child's stderr, kept in session.json
PROFILE_EPOCHS = 4  # one compiles, one is timed, one traced (the tracer slows it: counted twice)
PROFILE_READ_S = 10.0  # reading and summing the trace of one epoch
# page10 evaluates each image and its mirror image (flip TTA): two forward passes;
# airbench94 six (TTA level 2).
EVAL_PASSES = {"page24": 1.0, "page10": 2.0, "airbench94": 6.0}
# Where a smoke has no estimate yet: the share of the budget it may take at most.
SMOKE_SHARE = {"smoke": 0.4, "smoke-torch": 0.15}
# The tiny sizes of --dry_run: every step runs, in seconds to minutes on a CPU.
DRY_RUN_FLAGS = ("--width", "0.0625", "--batch_size", "32", "--train_limit", "256")
DRY_RUN_FLAGS += ("--test_limit", "64")
DRY_RUN_PROFILE = ("--width", "0.0625", "--batch_size", "32", "--images", "256")

FLAGS = flags.FLAGS


# ---------------------------------------------------------------------------- the steps


@dataclasses.dataclass(frozen=True)
class Step:
    """One child of the session.

    Attributes:
        name: The step's name (session.json, log.txt, --skip, --step_flags).
        module: Run as `python -m module`.
        args: Its flags; "{data_dir}", "{out}", "{work}" and "{seeds}" are filled in.
        kind: "smoke", "benchmark" or "profile": how it is estimated and summarised.
        framework: "keras" or "torch": whose timings estimate it, which packages it needs.
        recipe: The recipe it trains.
        epochs: Epochs per run.
        output: The file it writes ("{out}" or "{work}" filled in): the step failed
            without it.
        figures: The file its headline figures are read from, if not `output`.
    """

    name: str
    module: str
    args: tuple[str, ...]
    kind: str
    framework: str
    recipe: str
    epochs: float
    output: str
    figures: str | None = None


def session_steps(dry_run: bool) -> list[Step]:
    """The session's steps in the order they run: the most important figures first. One
    entry per step: a new one (e.g. `benchmarks.dawnbench --parallel_seeds K`) is one more."""
    size = DRY_RUN_FLAGS if dry_run else ()
    epochs = {r: 1 if dry_run else TrainConfig.from_recipe(r).epochs for r in EVAL_PASSES}
    data = ("--data_dir", "{data_dir}")
    one_epoch = ("--epochs", "1", *size)

    def benchmark(name, module, framework, recipe, folder="{out}"):
        output = f"{folder}/{name}.json"
        args = (*data, "--seeds", "{seeds}", "--recipe", recipe, "--out", output)
        if dry_run:
            args += ("--epochs", "1", *size)
        return Step(name, module, args, "benchmark", framework, recipe, epochs[recipe], output)

    return [
        Step(
            "smoke",
            "tf_resnet9.train",
            (*data, *one_epoch, "--workdir", "{work}/smoke"),
            "smoke",
            "keras",
            "page24",
            1,
            "{work}/smoke/results.json",
        ),
        Step(
            "smoke-torch",
            "benchmarks.reference_torch",
            (*data, *one_epoch, "--seeds", "1", "--out", "{work}/smoke-torch.json"),
            "smoke",
            "torch",
            "page24",
            1,
            "{work}/smoke-torch.json",
        ),
        benchmark("page24-keras", "benchmarks.dawnbench", "keras", "page24"),
        benchmark("page24-torch", "benchmarks.reference_torch", "torch", "page24"),
        benchmark("page10-keras", "benchmarks.dawnbench", "keras", "page10"),
        benchmark("page10-torch", "benchmarks.reference_torch", "torch", "page10"),
        # The lease's files are taken: these reports travel whole inside session.json.
        benchmark("airbench94-keras", "benchmarks.dawnbench", "keras", "airbench94", "{work}"),
        benchmark(
            "airbench94-torch", "benchmarks.reference_torch", "torch", "airbench94", "{work}"
        ),
        Step(
            "seeds-together",
            "benchmarks.dawnbench",
            (*data, "--parallel_seeds", "{seeds}", "--recipe", "page24")
            + ("--out", "{out}/seeds-together.json")
            + (("--epochs", "1", *size) if dry_run else ()),
            "seeds_together",
            "keras",
            "page24",
            epochs["page24"],
            "{out}/seeds-together.json",
        ),
        Step(
            "profile",
            "benchmarks.profile_epoch",
            (
                *(DRY_RUN_PROFILE if dry_run else ()),
                "--out",
                "{out}/profile.txt",
                "--json",
                "{work}/profile.json",
            ),
            "profile",
            "keras",
            "page24",
            1,
            "{out}/profile.txt",
            figures="{work}/profile.json",
        ),
    ]


def missing_package(step: Step) -> str | None:
    """Why `step` cannot run here (a package it needs is not installed), or None."""
    needs = ["torch"] if step.framework == "torch" else ["keras"]
    if step.kind == "profile":
        needs.append("jax")
    for package in needs:
        if importlib.util.find_spec(package) is None:
            return f"{package} not installed ({step.module} needs it)"
    return None


# ---------------------------------------------------------------------------- estimates


@dataclasses.dataclass(frozen=True)
class Timing:
    """What a framework's runs take, measured by an earlier step (seconds)."""

    startup_s: float  # per process: its wall time less its runs'
    fixed_s: float  # per run: wall time less training and evaluation (building, compiling)
    epoch_s: float  # per epoch: training
    eval_s: float  # per epoch: evaluation
    recipe: str  # the recipe it was measured on
    measured_by: str  # the step

    def per_seed(self, epochs: int, recipe: str) -> float:
        passes = EVAL_PASSES.get(recipe, 1.0) / EVAL_PASSES.get(self.recipe, 1.0)
        return self.fixed_s + epochs * (self.epoch_s + passes * self.eval_s)

    def seconds(self, seeds: int, epochs: int, recipe: str) -> float:
        return self.startup_s + seeds * self.per_seed(epochs, recipe)

    def formula(self, seeds: int, epochs: int, recipe: str) -> str:
        passes = EVAL_PASSES.get(recipe, 1.0) / EVAL_PASSES.get(self.recipe, 1.0)
        evaluation = f"{passes:g} x {self.eval_s:.2f}" if passes != 1 else f"{self.eval_s:.2f}"
        return (
            f"{self.startup_s:.1f} s start-up + {seeds} seeds x ({self.fixed_s:.1f} s + "
            f"{epochs} epochs x ({self.epoch_s:.2f} + {evaluation}) s) "
            f"[measured by {self.measured_by}]"
        )


def timing_of_runs(runs: list[dict], epochs: int, child_s: float, recipe: str, step: str):
    """The `Timing` of runs (each with wall_time_s, training_time_s, eval_time_s) of
    `epochs` epochs that a child took `child_s` seconds for."""
    per_run = [r["wall_time_s"] - r["training_time_s"] - r["eval_time_s"] for r in runs]
    return Timing(
        startup_s=max(child_s - sum(r["wall_time_s"] for r in runs), 0.0),
        # The longest: a process's first run also compiles what later runs find cached.
        fixed_s=max(max(per_run), 0.0),
        epoch_s=statistics.median(r["training_time_s"] for r in runs) / epochs,
        eval_s=statistics.median(r["eval_time_s"] for r in runs) / epochs,
        recipe=recipe,
        measured_by=step,
    )


@dataclasses.dataclass(frozen=True)
class Plan:
    """What to do with a step: run it (with `seeds`, within `timeout_s`) or skip it."""

    run: bool
    why: str  # the estimate and the decision, in words
    estimate_s: float | None = None
    timeout_s: float | None = None
    seeds: int | None = None


def plan_step(
    step: Step, timing: Timing | None, left_s: float, budget_s: float, seeds: int, min_seeds: int
) -> Plan:
    """Whether `step` fits in `left_s` seconds by its estimate (see the module's docstring)."""
    if left_s < MIN_START_S:
        return Plan(
            False, f"would not fit: {max(left_s, 0):.0f} s left, a child needs {MIN_START_S:.0f}"
        )
    if timing is None:
        limit = left_s
        if step.kind == "smoke":
            limit = min(left_s, SMOKE_SHARE.get(step.name, 1.0) * budget_s)
            why = f"no estimate before it runs: at most {limit:.0f} s"
        else:
            why = f"no estimate (no {step.framework} run measured): at most the {left_s:.0f} s left"
        with_seeds = step.kind in ("benchmark", "seeds_together")
        return Plan(True, why, None, limit, seeds if with_seeds else None)
    if step.kind == "profile":
        estimate = (
            timing.startup_s + timing.fixed_s + PROFILE_EPOCHS * timing.epoch_s + PROFILE_READ_S
        )
        formula = (
            f"{timing.startup_s:.1f} s start-up + {timing.fixed_s:.1f} s + {PROFILE_EPOCHS} "
            f"epochs x {timing.epoch_s:.2f} s + {PROFILE_READ_S:.0f} s "
            f"[measured by {timing.measured_by}]"
        )
        return _fits(estimate, formula, left_s)
    if step.kind == "seeds_together":
        estimate = 2 * timing.seconds(seeds, step.epochs, step.recipe)
        formula = f"2 ways x ({timing.formula(seeds, step.epochs, step.recipe)})"
        return _fits(estimate, formula, left_s, seeds)
    runs = 1 if step.kind == "smoke" else seeds
    estimate = timing.seconds(runs, step.epochs, step.recipe)
    formula = timing.formula(runs, step.epochs, step.recipe)
    if step.kind != "benchmark" or MARGIN * estimate <= left_s:
        return _fits(estimate, formula, left_s, runs)
    fitting = math.floor(
        (left_s / MARGIN - timing.startup_s) / timing.per_seed(step.epochs, step.recipe)
    )
    if fitting >= max(min_seeds, 1):
        fewer = timing.seconds(fitting, step.epochs, step.recipe)
        return Plan(
            True,
            f"estimate {estimate:.0f} s = {formula}, x{MARGIN} > {left_s:.0f} s left: "
            f"{fitting} of {seeds} seeds fit ({fewer:.0f} s)",
            fewer,
            left_s,
            fitting,
        )
    return _fits(estimate, formula, left_s, runs)


def _fits(estimate: float, formula: str, left_s: float, seeds: int | None = None) -> Plan:
    why = f"estimate {estimate:.0f} s = {formula}"
    if MARGIN * estimate > left_s:
        return Plan(False, f"would not fit: {why}, x{MARGIN} > {left_s:.0f} s left", estimate)
    return Plan(True, f"{why}; {left_s:.0f} s left", estimate, left_s, seeds)


# ---------------------------------------------------------------------------- the children


class Log:
    """log.txt: every line, prefixed with the session's elapsed seconds and its source."""

    def __init__(self, path: str, start: float):
        self._file = open(path, "a", encoding="utf-8", buffering=1)
        self._start = time.monotonic() if start is None else start
        self._lock = threading.Lock()

    def write(self, source: str, line: str) -> None:
        with self._lock:
            elapsed = time.monotonic() - self._start
            self._file.write(f"{elapsed:7.1f} [{source}] {line.rstrip()}\n")

    def close(self) -> None:
        self._file.close()


@dataclasses.dataclass
class ChildResult:
    returncode: int | None
    seconds: float
    timed_out: bool
    stderr_tail: list[str]
    stdout_lines: list[str]


class Interrupted(Exception):
    """The session got SIGTERM or SIGINT (the child it was running is stopped)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _stream(pipe, log: Log, source: str, keep: collections.deque | list) -> None:
    for line in pipe:
        log.write(source, line)
        keep.append(line.rstrip())


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM to the child's process group, SIGKILL if it is still there later."""
    for signum, grace in ((signal.SIGTERM, KILL_GRACE_S), (signal.SIGKILL, None)):
        try:
            os.killpg(process.pid, signum)
        except ProcessLookupError:
            return
        try:
            process.wait(grace)
            return
        except subprocess.TimeoutExpired:
            continue


def run_child(argv: list[str], env: dict, timeout_s: float, log: Log, name: str) -> ChildResult:
    """Runs argv in the repository root, its output streamed to `log` as it comes.

    Raises:
        Interrupted: the session was told to stop; the child has been stopped.
    """
    start = time.monotonic()
    process = subprocess.Popen(
        argv,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        errors="replace",
        start_new_session=True,  # its own process group: a timeout stops its children too
    )
    stderr, stdout = collections.deque(maxlen=STDERR_LINES), []
    readers = [
        threading.Thread(target=_stream, args=(process.stdout, log, name, stdout)),
        threading.Thread(target=_stream, args=(process.stderr, log, f"{name} stderr", stderr)),
    ]
    for reader in readers:
        reader.start()
    timed_out = False
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        timed_out = True
        _stop(process)
    except BaseException:
        _stop(process)
        raise
    finally:
        for reader in readers:
            reader.join(KILL_GRACE_S)
    return ChildResult(
        process.returncode, time.monotonic() - start, timed_out, list(stderr), stdout
    )


# ---------------------------------------------------------------------------- figures


def _read_json(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def smoke_figures(path: str) -> dict:
    """The headline of a smoke: its results.json (Keras) or benchmark report (torch)."""
    report = _read_json(path)
    if "runs" in report:  # benchmarks.reference_torch
        run = report["runs"][0]
        keys = ("compile_time_s", "training_time_s", "eval_time_s", "wall_time_s")
        return {k: run[k] for k in keys} | {"device": run["device"]}
    epochs = report["epochs"]
    return {
        "compile_time_s": report["compile_time_s"],
        "epoch_time_s": epochs[-1]["epoch_time_s"],
        "training_time_s": report["training_time_s"],
        "eval_time_s": report["eval_time_s"],
        "wall_time_s": report["wall_time_s"],
        "test_accuracy": report["test_accuracy"],
        "device": report["device"],
        "precision": report["config"].get("precision"),
        "augment": report["config"].get("augment"),
        "steps_per_call": report["config"].get("steps_per_call"),
        "environment": report.get("environment"),
    }


def benchmark_figures(path: str) -> dict:
    """A benchmark report's summary, with the runs' median compile time and their device."""
    report = _read_json(path)
    keys = (
        "runs",
        "median_test_accuracy",
        "fraction_at_target",
        "median_training_time_s",
        "median_time_to_target_s",
        "median_images_per_s",
        "model_flop_utilization",
        "mean_test_accuracy",
        "std_test_accuracy",
        "p_mean_above_target",
    )
    runs = report["runs"]
    compile_s = statistics.median(run["compile_time_s"] for run in runs)
    figures = {k: report["summary"].get(k) for k in keys} | {
        "median_compile_time_s": compile_s,
        "device": report["device"].get("name"),
    }
    if all("airbench_time_s" in run for run in runs):  # whitening, training, last evaluation
        figures["median_airbench_time_s"] = statistics.median(r["airbench_time_s"] for r in runs)
    return figures


def seeds_together_figures(path: str) -> dict:
    report = _read_json(path)
    ways = report["ways"]
    return {
        "seeds": report["parallel_seeds"],
        "together_speedup": report["together_speedup"],
        "seeds_per_hour_training": {way: ways[way]["seeds_per_hour_training"] for way in ways},
    }


def profile_figures(path: str) -> dict:
    figures = _read_json(path)
    kinds = figures.get("kinds") or {}
    total = sum(k["seconds"] for k in kinds.values())
    keys = ("source", "trace_read", "epoch_s", "floor_s", "compile_s", "xla_flops")
    return {k: figures.get(k) for k in keys} | {
        "share": {kind: round(k["seconds"] / total, 4) for kind, k in kinds.items()}
        if total
        else None
    }


def timing_after(step: Step, path: str, child_s: float) -> Timing:
    """The timing a finished smoke or benchmark measured."""
    report = _read_json(path)
    if "runs" in report:
        epochs = report["config"]["epochs"]
        return timing_of_runs(report["runs"], epochs, child_s, step.recipe, step.name)
    # A run's results.json; it also writes the trained model and report.png after its wall
    # time stops, which the benchmarks do not: counted as start-up, the estimate errs long.
    return timing_of_runs([report], len(report["epochs"]), child_s, step.recipe, step.name)


def headline(step: Step, path: str) -> dict:
    """A step's headline figures, from the file `path` its kind writes them to."""
    read = {
        "smoke": smoke_figures,
        "benchmark": benchmark_figures,
        "seeds_together": seeds_together_figures,
        "profile": profile_figures,
    }
    return read[step.kind](path)


def short(figures: dict) -> str:
    """A step's headline in a few words, for stdout."""
    if "median_test_accuracy" in figures:
        mfu = figures.get("model_flop_utilization")
        return (
            f"median {figures['median_test_accuracy']:.2%} of {figures['runs']}, training "
            f"{figures['median_training_time_s']:.2f} s, compile "
            f"{figures['median_compile_time_s']:.1f} s, "
            f"{figures['median_images_per_s']:,.0f} images/s"
            + ("" if mfu is None else f", MFU {mfu:.1%}")
        )
    if "together_speedup" in figures:
        rates, ratio = figures["seeds_per_hour_training"], figures["together_speedup"]
        return (
            f"{figures['seeds']} seeds together {rates['together']:.0f} seeds/h, one after "
            f"another {rates['one_after_another']:.0f} ({ratio['by_training']:.2f}x)"
        )
    if "epoch_s" in figures:
        share = figures.get("share") or {}
        parts = ", ".join(f"{kind} {s:.0%}" for kind, s in share.items())
        return f"epoch {figures['epoch_s']:.3f} s; {parts or 'no trace: ' + figures['source']}"
    if "compile_time_s" in figures:
        epoch = figures.get("epoch_time_s", figures["training_time_s"])
        return f"compile {figures['compile_time_s']:.1f} s, epoch {epoch:.2f} s"
    return ""


# ---------------------------------------------------------------------------- environment


def gpu_query() -> list[dict] | str:
    """nvidia-smi's name, driver and memory of each GPU, or why there are none."""
    command = ["nvidia-smi", "--query-gpu=name,driver_version,memory.total"]
    try:
        answer = subprocess.run(
            [*command, "--format=csv,noheader"], capture_output=True, text=True, timeout=30
        )
    except FileNotFoundError:
        return "nvidia-smi not found"
    except subprocess.TimeoutExpired:
        return "nvidia-smi did not answer in 30 s"
    if answer.returncode != 0:
        return f"nvidia-smi failed: {answer.stderr.strip() or answer.stdout.strip()}"
    gpus = []
    for line in answer.stdout.strip().splitlines():
        name, driver, memory = [part.strip() for part in line.split(",")]
        gpus.append({"name": name, "driver_version": driver, "memory_total": memory})
    return gpus


def versions() -> dict[str, str]:
    """Python's and the libraries' versions, read from their metadata (nothing imported)."""
    found = {"python": platform.python_version()}
    wanted = ("jax", "jaxlib", "keras", "torch", "numpy", "tensorflow", "absl-py")
    for package in wanted:
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = None
    for dist in importlib.metadata.distributions():  # JAX's CUDA plugins, by their names
        name = dist.metadata["Name"] or ""
        if name.lower().replace("_", "-").startswith("jax-cuda"):
            found[name] = dist.version
    return found


# JAX's devices from a child that preallocates nothing: this process must not hold GPU memory.
_DEVICES = "import json, jax; print(json.dumps([f'{d} ({d.device_kind})' for d in jax.devices()]))"


def jax_devices() -> list[str] | str:
    if importlib.util.find_spec("jax") is None:
        return "jax not installed"
    env = os.environ | {"XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
    try:
        answer = subprocess.run(
            [sys.executable, "-c", _DEVICES], capture_output=True, text=True, timeout=120, env=env
        )
    except subprocess.TimeoutExpired:
        return "jax.devices() did not answer in 120 s"
    if answer.returncode != 0:
        return "jax.devices() failed: " + " | ".join(answer.stderr.strip().splitlines()[-3:])
    return json.loads(answer.stdout.strip().splitlines()[-1])


def environment() -> dict:
    variables = ("KERAS_BACKEND", "XLA_FLAGS", "CUDA_VISIBLE_DEVICES", "PYTHONPATH")
    return {
        "gpus": gpu_query(),
        "versions": versions(),
        "jax_devices": jax_devices(),
        "host": platform.node(),
        "cpu_count": os.cpu_count(),
        "variables": {name: os.environ.get(name) for name in variables},
    }


# ---------------------------------------------------------------------------- the session


@dataclasses.dataclass(frozen=True)
class Settings:
    """What a session is told (the command's flags, resolved).

    Attributes:
        out: The results folder.
        work: Scratch folder (the smokes' outputs, the profile's figures).
        data_dir: CIFAR-10.
        budget_s: Seconds for everything, from the session's start.
        seeds, min_seeds: Runs per benchmark, and the fewest when not all fit.
        mem_fraction: XLA_PYTHON_CLIENT_MEM_FRACTION of the JAX children.
        extra_flags: Step name -> more flags for its command.
        skip: Names of steps not to run.
        compilation_cache: A folder for JAX's persistent compilation cache, or None.
    """

    out: str
    work: str
    data_dir: str
    budget_s: float
    seeds: int
    min_seeds: int
    mem_fraction: str = "0.9"
    extra_flags: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    skip: frozenset[str] = frozenset()
    compilation_cache: str | None = None


class Session:
    """Runs the steps in order within the budget, recording each in session.json.

    Args:
        steps: The steps, in order.
        settings: Where things go, the budget, the seeds, ...
        record: What session.json holds besides the steps (command, environment, ...).
        start: When the budget started (`time.monotonic()`).
        say: Prints a line of the session's own (it goes to log.txt too).
    """

    def __init__(
        self,
        steps: list[Step],
        settings: Settings,
        record: dict,
        start: float,
        say: Callable[[str], None] = print,
    ):
        self.steps = steps
        self.settings = settings
        self.out, self.work, self.data_dir = settings.out, settings.work, settings.data_dir
        self.budget_s, self.seeds = settings.budget_s, settings.seeds
        self.start = start
        self._say = say
        self.cache = _cache_variables(settings.compilation_cache)
        self.log = Log(os.path.join(self.out, "log.txt"), start)
        self.timings: dict[str, Timing] = {}
        self.record = record | {
            "budget_s": self.budget_s,
            "memory": {
                "jax_children": {"XLA_PYTHON_CLIENT_MEM_FRACTION": settings.mem_fraction}
                | self.cache,
                "torch_children": {"XLA_PYTHON_CLIENT_PREALLOCATE": "false"},
                "note": "one child at a time; this process imports neither JAX nor torch",
            },
            "estimate": (
                "benchmark = start-up + seeds x (fixed + epochs x (epoch + evaluation)); "
                f"profile = start-up + fixed + {PROFILE_EPOCHS} x epoch + "
                f"{PROFILE_READ_S:.0f} s; from the latest run of the same framework; "
                f"x{MARGIN} must fit in what is left"
            ),
            "steps": [self._entry(step) for step in steps],
        }

    def _entry(self, step: Step) -> dict:
        return {
            "name": step.name,
            "command": shlex.join(["python", *self.argv(step, self.seeds)[1:]]),
            "output": self._path(step.output),
            "status": "pending",
        }

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def left(self) -> float:
        return self.budget_s - self.elapsed() - RESERVE_S

    def say(self, text: str) -> None:
        self.log.write("session", text)
        try:
            self._say(text)
        except OSError:  # stdout gone (a closed pipe): log.txt and session.json still tell
            pass

    def _path(self, template: str) -> str:
        return template.format(out=self.out, work=self.work, data_dir=self.data_dir, seeds="")

    def argv(self, step: Step, seeds: int | None) -> list[str]:
        args = [
            a.format(out=self.out, work=self.work, data_dir=self.data_dir, seeds=seeds)
            for a in step.args
        ]
        extra = self.settings.extra_flags.get(step.name, [])
        return [sys.executable, "-m", step.module, *args, *extra]

    def env(self, step: Step) -> dict:
        env = os.environ | {"PYTHONUNBUFFERED": "1"}
        if step.framework == "torch":
            return env | {"XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
        env["XLA_PYTHON_CLIENT_MEM_FRACTION"] = self.settings.mem_fraction
        env |= self.cache
        if step.kind == "profile":
            env["KERAS_BACKEND"] = "jax"  # the profile reads JAX's trace
        return env

    def write(self) -> None:
        self.record["elapsed_s"] = round(self.elapsed(), 1)
        self.record["updated_utc"] = _now()
        text = json.dumps(self.record, indent=2, default=str) + "\n"
        write_atomic(os.path.join(self.out, "session.json"), lambda f: f.write(text.encode()))

    def print_plan(self) -> None:
        ends = datetime.datetime.now() + datetime.timedelta(seconds=self.left())
        dry = " (dry run)" if self.record.get("dry_run") else ""
        self.say(
            f"gpu_session{dry}: budget {self.budget_s:.0f} s for {len(self.steps)} steps "
            f"(the last child ends "
            f"by {ends:%H:%M:%S}; {RESERVE_S:.0f} s kept for the record); results in "
            f"{self.out} (at most {MAX_FILES} files); seeds {self.seeds} (at least "
            f"{self.settings.min_seeds} when not all fit)"
        )
        self.say(f"estimates: {self.record['estimate']}")
        if self.cache:
            self.say(f"JAX children share a compilation cache: {self.cache}")
        width = max(len(step.name) for step in self.steps)
        for number, step in enumerate(self.steps, 1):
            output = os.path.basename(self._path(step.output))
            self.say(f"  {number:>2}. {step.name:<{width}} python -m {step.module} -> {output}")

    def run(self, environment: Callable[[], dict] = lambda: {}) -> int:
        """Prints the plan, records `environment()`, runs every step; returns the exit
        status (1 if a step failed)."""
        self.print_plan()
        self.write()
        self.record["environment"] = environment()
        self.write()
        entries = self.record["steps"]
        try:
            for step, entry in zip(self.steps, entries):
                self.run_step(step, entry)
                self.write()
        except Interrupted as e:
            for entry in entries:
                if entry["status"] in ("pending", "running"):
                    if entry["status"] == "running":
                        entry["seconds"] = round(self.elapsed() - entry["started_s"], 1)
                    entry["status"] = "failed" if entry["status"] == "running" else "skipped"
                    entry["reason"] = f"the session was stopped ({e})"
            self.write()
            self.say(f"stopped by {e}")
            return 128 + e.signum
        finally:
            self.finish()
        failed = [entry["name"] for entry in entries if entry["status"] == "failed"]
        return 1 if failed else 0

    def run_step(self, step: Step, entry: dict) -> None:
        if step.name in self.settings.skip:
            return self._skip(entry, "--skip")
        missing = missing_package(step)
        if missing:
            return self._skip(entry, missing)
        plan = plan_step(
            step,
            self.timings.get(step.framework),
            self.left(),
            self.budget_s,
            self.seeds,
            self.settings.min_seeds,
        )
        entry["estimate"] = plan.why
        entry["estimate_s"] = None if plan.estimate_s is None else round(plan.estimate_s, 1)
        if not plan.run:
            return self._skip(entry, plan.why)
        argv = self.argv(step, plan.seeds)
        entry |= {
            "status": "running",
            "command": shlex.join(["python", *argv[1:]]),
            "timeout_s": round(plan.timeout_s, 1),
            "started_s": round(self.elapsed(), 1),
        }
        if plan.seeds is not None:
            entry["seeds"] = plan.seeds
        self.write()
        self.say(f"{step.name}: {plan.why}: runs (timeout {plan.timeout_s:.0f} s)")
        result = run_child(argv, self.env(step), plan.timeout_s, self.log, step.name)
        self._finish_step(step, entry, result)

    def _finish_step(self, step: Step, entry: dict, result: ChildResult) -> None:
        entry["seconds"] = round(result.seconds, 1)
        entry["returncode"] = result.returncode
        output = self._path(step.output)
        written = os.path.exists(output)
        if result.timed_out:
            entry |= {"status": "failed", "reason": f"timed out after {result.seconds:.0f} s"}
        elif result.returncode != 0:
            entry |= {"status": "failed", "reason": f"exit status {result.returncode}"}
        elif not written:
            entry |= {"status": "failed", "reason": f"exited 0 but wrote no {output}"}
        else:
            entry["status"] = "ok"
        if entry["status"] == "failed":
            entry["stderr_tail"] = result.stderr_tail
            # What a benchmark killed before its report printed per seed (log.txt has all).
            done = [line for line in result.stdout_lines if re.match(r"seed \d+: ", line)]
            if done:
                entry["seeds_done"] = done
        if written:
            self._read_figures(step, entry, output, result.seconds)
        self.say(
            f"{step.name}: {entry['status']} in {result.seconds:.0f} s"
            + (f" ({entry['reason']})" if entry["status"] == "failed" else "")
            + (f": {short(entry['headline'])}" if entry.get("headline") else "")
            + f"; {max(self.left(), 0):.0f} s left"
        )
        if entry["status"] == "failed" and result.stderr_tail:
            self.say(f"{step.name} stderr ends: {result.stderr_tail[-1]}")

    def _read_figures(self, step: Step, entry: dict, output: str, child_s: float) -> None:
        try:
            entry["headline"] = headline(step, self._path(step.figures or step.output))
            if step.kind == "benchmark" and step.output.startswith("{work}"):
                entry["report"] = _read_json(output)  # no file of its own comes back
            if step.kind in ("smoke", "benchmark"):
                self.timings[step.framework] = timing_after(step, output, child_s)
        except (OSError, KeyError, ValueError, TypeError, IndexError) as e:
            entry["headline_error"] = f"{type(e).__name__}: {e}"

    def _skip(self, entry: dict, why: str) -> None:
        entry |= {"status": "skipped", "reason": why}
        self.say(f"{entry['name']}: skipped: {why}")

    def finish(self) -> None:
        """Leftovers of interrupted atomic writes out; the files counted."""
        for name in os.listdir(self.out):
            if name.startswith(TEMPORARY_PREFIX):
                os.remove(os.path.join(self.out, name))
        files = sorted(os.listdir(self.out))
        self.record["files"] = files
        if len(files) > MAX_FILES:
            self.say(f"warning: {len(files)} files in {self.out}; the lease brings {MAX_FILES}")
        self.record["finished_utc"] = _now()
        width = max((len(entry["name"]) for entry in self.record["steps"]), default=0)
        for entry in self.record["steps"]:
            line = (
                f"  {entry['name']:<{width}} {entry['status']:<8} {entry.get('seconds', 0):>6.0f} s"
            )
            detail = short(entry["headline"]) if entry.get("headline") else entry.get("reason", "")
            self.say(f"{line}  {detail}")
        self.write()
        self.log.close()


def _cache_variables(folder: str | None) -> dict[str, str]:
    """The environment that gives JAX children a persistent compilation cache in `folder`
    (every program cached, however small or quick to compile); none without a folder."""
    if folder is None:
        return {}
    return {
        "JAX_COMPILATION_CACHE_DIR": os.path.abspath(folder),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
    }


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def parse_step_flags(values: list[str], names: list[str]) -> dict[str, list[str]]:
    """--step_flags NAME=FLAGS values as {name: [flags]}."""
    parsed = {}
    for value in values:
        name, _, rest = value.partition("=")
        if name not in names:
            raise app.UsageError(f"--step_flags={value}: no step {name!r}; steps: {names}")
        parsed.setdefault(name, []).extend(shlex.split(rest))
    return parsed


def define_flags() -> None:
    """The command's flags; defined when it runs, not on import, so that tests can import
    the planning functions beside other programs' flags."""
    flags.DEFINE_string(
        "data_dir", None, "CIFAR-10 (the cifar-10-batches-py folder).", required=True
    )
    flags.DEFINE_string("out", None, f"Results folder (at most {MAX_FILES} files).", required=True)
    flags.DEFINE_float("budget_s", 540, "Seconds for the whole session, from its start.")
    flags.DEFINE_boolean("dry_run", False, "Every step at tiny size (a CPU check of the script).")
    flags.DEFINE_integer(
        "seeds", None, "Runs per benchmark. Unset: 5 (2 with --dry_run).", lower_bound=1
    )
    flags.DEFINE_integer(
        "min_seeds",
        None,
        "Fewest seeds a benchmark runs with when not all fit. Unset: 3 (1 dry).",
        lower_bound=1,
    )
    flags.DEFINE_string(
        "mem_fraction", "0.9", "XLA_PYTHON_CLIENT_MEM_FRACTION of the JAX children."
    )
    flags.DEFINE_multi_string(
        "step_flags", [], "NAME=FLAGS: more flags for step NAME's command (repeatable)."
    )
    flags.DEFINE_list("skip", [], "Steps not to run (names, comma-separated).")
    flags.DEFINE_string("workdir", None, "Scratch folder for the smokes. Unset: a temporary one.")
    flags.DEFINE_string(
        "compilation_cache",
        None,
        "A folder for JAX's persistent compilation cache, shared by the JAX children: a "
        "program compiled once (the smoke's, each seed's) is loaded by the next. Their "
        "compile times are then load times, and the estimates made from them too short for a "
        "program not compiled yet. Unset: none, every seed compiles.",
    )


def main(argv):
    del argv
    start = time.monotonic()
    steps = session_steps(FLAGS.dry_run)
    names = [step.name for step in steps]
    unknown = set(FLAGS.skip) - set(names)
    if unknown:
        raise app.UsageError(f"--skip: no step {sorted(unknown)}; steps: {names}")
    out = os.path.abspath(FLAGS.out)
    os.makedirs(out, exist_ok=True)
    work = FLAGS.workdir or tempfile.mkdtemp(prefix="gpu_session-")
    os.makedirs(work, exist_ok=True)
    record = {
        "session": "benchmarks.gpu_session",
        "command": shlex.join(["python", "-m", "benchmarks.gpu_session", *sys.argv[1:]]),
        "dry_run": FLAGS.dry_run,
        "started_utc": _now(),
        "environment": "being collected",
    }
    settings = Settings(
        out=out,
        work=os.path.abspath(work),
        data_dir=os.path.abspath(FLAGS.data_dir),
        budget_s=FLAGS.budget_s,
        seeds=FLAGS.seeds or (2 if FLAGS.dry_run else 5),
        min_seeds=FLAGS.min_seeds or (1 if FLAGS.dry_run else 3),
        mem_fraction=FLAGS.mem_fraction,
        extra_flags=parse_step_flags(FLAGS.step_flags, names),
        skip=frozenset(FLAGS.skip),
        compilation_cache=FLAGS.compilation_cache,
    )
    session = Session(steps, settings, record, start, lambda text: print(text, flush=True))

    def stop(signum, frame):
        raise Interrupted(signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, stop)
    try:
        return session.run(environment)
    finally:
        if FLAGS.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    define_flags()
    app.run(main)
