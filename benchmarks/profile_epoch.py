r"""Where the time of one compiled training epoch goes, by kind of op, against the compute floor.

    python -m benchmarks.profile_epoch --out profile.txt              # one epoch of 50,000
    python -m benchmarks.profile_epoch --out profile.txt --width 0.0625 --batch_size 32 \
        --images 256 --json figures.json                             # a CPU check, seconds

Keras on JAX only (the GPU path). The epoch is the package's own (`tf_resnet9.build`,
`tf_resnet9.training.loop.run_epoch`, as benchmarks/throughput.py builds it) on synthetic
images: compiled by an untimed epoch, timed untraced, then run once more under
`jax.profiler.trace`. JAX's own reader of the trace (`jax.profiler.ProfileData`) gives
each HLO op's time: on a GPU, the device plane's "XLA Ops" line (else its kernels, by their
`hlo_op`); on a CPU, the host threads' op events. Each op is given a kind (convolution,
fusion, reduce, copy/transpose, other) from the compiled program's HLO. Where the trace
cannot be read, the table is XLA's `cost_analysis()` of the compiled call (FLOPs, bytes)
with the measured epoch time instead, and says so.

The floor is the model's FLOPs at the GPU's dense bf16 peak: ResNet9 at width 1.0 costs
about 3 x 0.7585 = 2.28 GFLOP per training image (`benchmarks.report`), so 50,000 images
(97 steps of 512) take at least 0.11 s on an H100 or H200. Writes --out (a small text
table) and, with --json, the figures.
"""

from __future__ import annotations

import collections
import dataclasses
import glob
import os
import re
import tempfile
import time
import warnings

import numpy as np
from absl import app, flags

from benchmarks.report import RESNET9_TRAIN_FLOPS_PER_IMAGE, bf16_peak
from tf_resnet9.config.flags import config_from_flags, define_config_flags
from tf_resnet9.outputs.files import write_atomic, write_json_atomic

CONFIG_FLAGS = ("recipe", "model", "width", "batch_size", "precision", "steps_per_call", "seed")
FLAGS = flags.FLAGS

KINDS = ("convolution", "fusion", "reduce", "copy/transpose", "other")

# One instruction of XLA's HLO text: "%name = shape opcode(operands), attributes". The shape
# may hold spaces (tuples) but never "word(", so the first such is the opcode.
_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*.*?\s([a-z][\w\-]*)\(")
# A computation's first line: "%name (params) -> shape {", or "ENTRY %name ...".
_COMPUTATION = re.compile(r"^(?:ENTRY\s+)?%?([\w.\-]+)\s.*\{\s*$")
_CALLS = re.compile(r"calls=%?([\w.\-]+)")
_TARGET = re.compile(r'custom_call_target="([^"]*)"')
_MATMUL_OPCODES = {"convolution", "dot"}
_REDUCE_OPCODES = {"reduce", "reduce-window", "select-and-scatter", "reduce-scatter"}
_COPY_OPCODES = {"copy", "transpose", "copy-start", "copy-done"}
# What a fusion made only of data movement may hold besides copies and transposes.
_LAYOUT_OPCODES = {"parameter", "bitcast", "reshape", "tuple", "get-tuple-element", "constant"}


class TraceUnreadable(Exception):
    """The trace holds no op times this module can read (the reason is the message)."""


@dataclasses.dataclass(frozen=True)
class Program:
    """The compiled training call, as XLA optimised it."""

    module: str  # the HLO module's name, which the trace's events name, e.g. "jit_train"
    kinds: dict[str, str]  # HLO instruction name -> kind (one of KINDS)
    flops: float | None  # XLA's cost analysis of one call
    bytes_accessed: float | None


def _target_kind(target: str) -> str:
    """The kind of a custom call, from its target (cuDNN convolutions, cuBLAS matmuls)."""
    target = target.lower()
    if any(word in target for word in ("conv", "gemm", "matmul", "cublas", "dot")):
        return "convolution"
    return "other"


def _instruction_kind(opcode: str, target: str | None) -> str:
    if opcode in _MATMUL_OPCODES:
        return "convolution"
    if opcode == "custom-call":
        return _target_kind(target or "")
    if opcode in _REDUCE_OPCODES:
        return "reduce"
    if opcode in _COPY_OPCODES:
        return "copy/transpose"
    return "other"


def _fusion_kind(opcodes: set[str], targets: set[str]) -> str:
    """A fusion is a convolution if it holds one (cuDNN and Triton fuse them with their
    epilogues), else a reduce if it reduces, else copy/transpose if it only moves data."""
    if opcodes & _MATMUL_OPCODES or any(_target_kind(t) == "convolution" for t in targets):
        return "convolution"
    if opcodes & _REDUCE_OPCODES:
        return "reduce"
    if opcodes & _COPY_OPCODES and opcodes <= _COPY_OPCODES | _LAYOUT_OPCODES:
        return "copy/transpose"
    return "fusion"


def op_kinds(hlo_text: str) -> dict[str, str]:
    """HLO instruction name -> kind, for every instruction of an optimised HLO module.

    A fusion's kind comes from the instructions of the computations it calls (nested
    fusions included); a while loop, a conditional or a call is "other", but the trace's
    times are self times, so their bodies' ops count under their own kinds.
    """
    computations = collections.defaultdict(list)  # name -> [(name, opcode, target, calls)]
    current = None
    for line in hlo_text.splitlines():
        header = _COMPUTATION.match(line)
        if header and "=" not in line.split("(")[0]:
            current = header.group(1)
            continue
        instruction = _INSTRUCTION.match(line)
        if instruction is None or current is None:
            continue
        target = _TARGET.search(line)
        computations[current].append(
            (
                instruction.group(1),
                instruction.group(2),
                target.group(1) if target else None,
                _CALLS.findall(line),
            )
        )

    def contents(computation: str, seen: set[str]) -> tuple[set[str], set[str]]:
        opcodes, targets = set(), set()
        for _, opcode, target, calls in computations.get(computation, ()):
            opcodes.add(opcode)
            if target:
                targets.add(target)
            for called in calls:
                if called not in seen:
                    seen.add(called)
                    inner = contents(called, seen)
                    opcodes |= inner[0]
                    targets |= inner[1]
        return opcodes, targets

    kinds = {}
    for instructions in computations.values():
        for name, opcode, target, calls in instructions:
            if opcode == "fusion":
                opcodes, targets = set(), set()
                for called in calls:
                    inner = contents(called, {called})
                    opcodes |= inner[0]
                    targets |= inner[1]
                kinds[name] = _fusion_kind(opcodes, targets)
            else:
                kinds[name] = _instruction_kind(opcode, target)
    return kinds


def kind_by_name(name: str) -> str:
    """The kind an op's name suggests, for ops the program's HLO does not list."""
    name = name.lower()
    if any(word in name for word in ("conv", "gemm", "cudnn", "cublas", "dot")):
        return "convolution"
    if "reduce" in name:
        return "reduce"
    if "transpose" in name or name.startswith("copy"):
        return "copy/transpose"
    return "fusion" if "fusion" in name else "other"


def self_times(events: list[tuple[str, float, float]]) -> list[tuple[str, float]]:
    """(name, self time) of events on one timeline line, given (name, start, duration).

    An event inside another (an op in a while loop's body, inside the loop's own event) is
    taken out of its parent's time, so nothing is counted twice.
    """
    ordered = sorted(events, key=lambda e: (e[1], -e[2]))
    own = [duration for _, _, duration in ordered]
    stack = []  # indices of the open events, innermost last
    for i, (_, start, duration) in enumerate(ordered):
        while stack and ordered[stack[-1]][1] + ordered[stack[-1]][2] <= start:
            stack.pop()
        if stack:
            own[stack[-1]] -= duration
        stack.append(i)
    return [(name, max(t, 0.0)) for (name, _, _), t in zip(ordered, own)]


def _events(line) -> list[tuple[str, float, float, dict]]:
    with warnings.catch_warnings():
        # Python 3.12 warns once per event that nanobind's stats type has no __module__.
        warnings.simplefilter("ignore", DeprecationWarning)
        return [(e.name, e.start_ns, e.duration_ns, dict(e.stats)) for e in line.events]


def _module_windows(lines, module: str) -> list[tuple[float, float]]:
    """(start, end) of each execution of `module` on a GPU plane's "XLA Modules" line."""
    windows = []
    for line in lines:
        if line.name == "XLA Modules":
            for name, start, duration, _ in _events(line):
                if name.split("(")[0].strip() == module:
                    windows.append((start, start + duration))
    return windows


def _device_ops(plane, module: str, known: set[str]) -> tuple[list, str]:
    """[(op name, start, duration)] of `module`'s ops on a device plane, and from where.

    The "XLA Ops" line has one event per HLO op, named by it; the ops of other programs
    (the epoch's shuffle, say) are left out by the "XLA Modules" line's windows, else by
    their names. Without that line, the kernels are taken by their `hlo_op` and
    `hlo_module` stats.
    """
    lines = list(plane.lines)
    ops_lines = [line for line in lines if line.name == "XLA Ops"]
    if ops_lines:
        events = _events(ops_lines[0])
        windows = _module_windows(lines, module)
        if windows:
            inside = lambda t: any(a <= t < b for a, b in windows)  # noqa: E731
            kept = [(n, t, d) for n, t, d, _ in events if inside(t)]
        else:
            kept = [
                (n, t, d)
                for n, t, d, stats in events
                if stats.get("hlo_module", module) == module
                and (not known or n.lstrip("%") in known)
            ]
        return kept, f'{plane.name}, line "XLA Ops"'
    kept = [
        (stats["hlo_op"], t, d)
        for line in lines
        for _, t, d, stats in _events(line)
        if "hlo_op" in stats and stats.get("hlo_module", module) == module
    ]
    return kept, f"{plane.name}, kernels by hlo_op"


def read_trace(path: str, module: str, known: set[str]) -> tuple[dict[str, float], str, int]:
    """Seconds of self time per HLO op of `module` in the trace file `path`.

    Args:
        path: A .xplane.pb file of `jax.profiler.trace`.
        module: The HLO module's name.
        known: The names of its instructions.

    Returns:
        ({op name: seconds}, where they were read, how many events).

    Raises:
        TraceUnreadable: JAX has no trace reader, or the trace has no op of `module`.
    """
    try:
        from jax.profiler import ProfileData
    except ImportError as e:
        raise TraceUnreadable(f"this JAX has no jax.profiler.ProfileData ({e})") from None
    if hasattr(ProfileData, "from_file"):
        profile = ProfileData.from_file(path)
    else:
        with open(path, "rb") as f:
            profile = ProfileData.from_serialized_xspace(f.read())
    planes = list(profile.planes)
    devices = [p for p in planes if p.name.startswith("/device:") and "CPU" not in p.name]
    times, where, count = collections.Counter(), [], 0
    for plane in devices:
        events, found = _device_ops(plane, module, known)
        if events:
            where.append(found)
        count += len(events)
        for name, seconds in self_times(events):
            times[name.lstrip("%")] += seconds / 1e9
    if not times:  # the CPU backend: XLA's thunks on the host threads
        for plane in planes:
            for line in plane.lines:
                events = [
                    (stats["hlo_op"], start, duration)
                    for _, start, duration, stats in _events(line)
                    if "hlo_op" in stats and stats.get("hlo_module", module) == module
                ]
                count += len(events)
                for name, seconds in self_times(events):
                    times[name.lstrip("%")] += seconds / 1e9
        if times:
            where.append(f"the host threads' ops of {module} (summed over threads)")
    if not times:
        names = ", ".join(p.name for p in planes) or "none"
        raise TraceUnreadable(f"no op events of {module} in the trace (planes: {names})")
    return dict(times), "; ".join(where), count


def compiled_program(train, state, position, chunk) -> Program:
    """The optimised HLO and the cost analysis of `train` on these arguments (JAX's cache
    hands back the executable the epoch ran: nothing is compiled again). Without a
    `jax.jit` function to ask, an empty program: kinds then come from the ops' names."""
    jitted = train.compiled  # `CompiledSteps.train_fn`'s; it takes placed chunks
    if not hasattr(jitted, "lower"):  # not a jax.jit function (--nojit)
        return Program("", {}, None, None)
    compiled = jitted.lower(state, *train.place(position, chunk)).compile()
    text = compiled.as_text()
    module = re.search(r"HloModule\s+([\w.\-]+)", text)
    costs = compiled.cost_analysis()
    if isinstance(costs, list | tuple):  # older JAX: one dict per device program
        costs = costs[0] if costs else {}
    costs = costs or {}
    return Program(
        module.group(1) if module else "",
        op_kinds(text),
        costs.get("flops"),
        costs.get("bytes accessed"),
    )


def kind_seconds(times: dict[str, float], kinds: dict[str, str]) -> dict[str, dict]:
    """{kind: {"seconds", "ops"}} in the order of KINDS."""
    table = {kind: {"seconds": 0.0, "ops": 0} for kind in KINDS}
    for name, seconds in times.items():
        kind = kinds.get(name) or kind_by_name(name)
        table[kind]["seconds"] += seconds
        table[kind]["ops"] += 1
    return table


def floor_seconds(
    config, images: int, device: str, program: Program, calls: int
) -> tuple[float | None, str]:
    """The epoch's compute floor at the bf16 peak, and how it was counted."""
    peak = bf16_peak(device)
    if config.model == "resnet9" and config.width == 1.0:
        flops, counted = images * RESNET9_TRAIN_FLOPS_PER_IMAGE, "the model's count"
    elif program.flops:
        # XLA counts a loop's body once: a lower bound where a call loops over steps.
        flops, counted = program.flops * calls, "XLA's count per call x calls"
    else:
        return None, "no FLOP count"
    if peak is None:
        return None, f"{flops / 1e9:,.1f} GFLOP ({counted}); no bf16 peak known for {device}"
    return flops / peak, f"{flops / 1e9:,.1f} GFLOP ({counted}) at {peak / 1e12:,.0f} TFLOP/s"


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f} s"


def format_table(figures: dict, top: list[tuple[str, str, float]]) -> str:
    """The profile as plain text."""
    epoch = figures["epoch_s"]
    lines = [
        f"profile of one compiled epoch: {figures['title']}",
        f"source: {figures['source']}",
        f"epoch: {epoch:.4f} s untraced, {_seconds(figures['traced_epoch_s'])} traced; "
        f"compile (first epoch) {figures['compile_s']:.1f} s",
    ]
    floor = figures["floor_s"]
    floor_text = "n/a"
    if floor is not None:  # the floor's share of the epoch is the FLOP utilisation
        floor_text = f"{floor:.4f} s ({floor / epoch:.1%} of the epoch: the FLOP utilisation)"
    lines.append(f"compute floor: {floor_text}; {figures['floor_counted']}")
    if figures["xla_flops"] is not None:
        call_s = epoch / figures["calls"]
        flops, moved = figures["xla_flops"], figures["xla_bytes"] or 0.0
        lines.append(
            f"XLA cost analysis of one call: {flops / 1e9:,.2f} GFLOP, {moved / 1e9:,.3f} GB "
            f"accessed; at {call_s:.4f} s a call ({figures['calls']} per epoch): "
            f"{flops / call_s / 1e12:,.2f} TFLOP/s, {moved / call_s / 1e9:,.1f} GB/s "
            "(XLA counts a loop's body once)"
        )
    kinds = figures["kinds"]
    if kinds is None:
        return "\n".join(lines + ["(no time per kind of op: the trace could not be read)"])
    total = sum(k["seconds"] for k in kinds.values())
    lines.append(
        f"op time {total:.4f} s in all ({total / epoch:.0%} of the untraced epoch; "
        f"{figures['events']:,} events)"
    )
    lines.append(f"{'kind':<16}{'seconds':>10}{'share':>8}{'ops':>7}")
    for kind, row in kinds.items():
        share = row["seconds"] / total if total else 0.0
        lines.append(f"{kind:<16}{row['seconds']:>10.4f}{share:>8.1%}{row['ops']:>7}")
    if top:
        lines.append("longest ops:")
        lines += [f"  {seconds:>9.4f} s  {kind:<15} {name}" for name, kind, seconds in top]
    return "\n".join(lines)


def run_profile(config, images: int, top: int) -> tuple[dict, str]:
    """Compiles, times and traces one epoch of `config` on `images` synthetic images;
    returns (figures, table)."""
    import jax
    import keras

    from tf_resnet9.build import build_training
    from tf_resnet9.config.settings import resolve
    from tf_resnet9.data.splits import Splits
    from tf_resnet9.training.loop import first_call, run_epoch

    if keras.backend.backend() != "jax":
        raise SystemExit(
            f"error: the profile needs Keras' JAX backend, not {keras.backend.backend()}."
        )
    rng = np.random.default_rng(config.seed)
    x = rng.integers(0, 256, (images, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, images)
    settings = resolve(config, images, images)
    training = build_training(config, settings, Splits.of_arrays((x, y)), [config.seed])
    train_input, _ = training.inputs()

    start = time.perf_counter()
    state, _ = run_epoch(training, training.steps.initial_state(), train_input, 1)  # compiles
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    state, _ = run_epoch(training, state, train_input, 2)  # reads the totals: synchronised
    epoch_s = time.perf_counter() - start

    train = training.steps.train_fn(train_input.batches)
    program = compiled_program(train, state, *first_call(training, train_input))
    options = jax.profiler.ProfileOptions()
    options.python_tracer_level = 0  # Python's own calls would swamp the trace
    traced_s = None
    with tempfile.TemporaryDirectory(prefix="profile_epoch-") as logdir:
        try:  # a profiler that cannot start (no CUPTI) leaves the fallback's table
            start = time.perf_counter()
            with jax.profiler.trace(logdir, profiler_options=options):
                run_epoch(training, state, train_input, 3)
            traced_s = time.perf_counter() - start
            found = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)
            if not found:
                raise TraceUnreadable(f"jax.profiler.trace wrote no .xplane.pb under {logdir}")
            # JAX names a jitted function's module jit_<name>: the steps' `train`.
            module = program.module or "jit_train"
            times, where, events = read_trace(found[0], module, set(program.kinds))
            source = f"jax.profiler.trace read by jax.profiler.ProfileData: {where}"
        except Exception as e:  # noqa: BLE001 - any unreadable trace: the fallback's table
            times, events = None, 0
            why = str(e) if isinstance(e, TraceUnreadable) else f"{type(e).__name__}: {e}"
            source = f"XLA cost_analysis() with the measured epoch time (trace unreadable: {why})"

    calls = -(-settings.steps_per_epoch // settings.steps_per_call)
    trained = settings.steps_per_epoch * config.batch_size
    floor, counted = floor_seconds(config, trained, settings.device.name, program, calls)
    figures = {
        "title": (
            f"{config.model} by {config.recipe}, width {config.width}, batch "
            f"{config.batch_size}, {settings.steps_per_epoch} steps ({trained:,} images) in "
            f"{calls} calls, {settings.precision}, on {settings.device.name}"
        ),
        "device": settings.device.name,
        "jax": jax.__version__,
        "source": source,
        "trace_read": times is not None,
        "compile_s": compile_s,
        "epoch_s": epoch_s,
        "traced_epoch_s": traced_s,
        "images": trained,
        "calls": calls,
        "floor_s": floor,
        "floor_counted": counted,
        "xla_flops": program.flops,
        "xla_bytes": program.bytes_accessed,
        "events": events,
        "kinds": None if times is None else kind_seconds(times, program.kinds),
    }
    longest = sorted((times or {}).items(), key=lambda item: -item[1])[:top]
    named = [(name, program.kinds.get(name) or kind_by_name(name), s) for name, s in longest]
    return figures, format_table(figures, named)


def define_flags() -> None:
    """The command's flags; defined when it runs, not on import, so that tests can import
    the trace reading beside other programs' flags."""
    define_config_flags(only=CONFIG_FLAGS)
    flags.DEFINE_integer(
        "images", 50_000, "Synthetic training images: 50,000 is a CIFAR-10 epoch.", lower_bound=1
    )
    flags.DEFINE_string("out", None, "Where the table goes (text).", required=True)
    flags.DEFINE_string("json", None, "Where the figures go as JSON, if set.")
    flags.DEFINE_integer("top", 8, "The longest ops listed by name.", lower_bound=0)


def main(argv):
    del argv
    config = config_from_flags(CONFIG_FLAGS)
    figures, table = run_profile(config, FLAGS.images, FLAGS.top)
    print(table)
    write_atomic(FLAGS.out, lambda f: f.write((table + "\n").encode()))
    if FLAGS.json:
        write_json_atomic(FLAGS.json, figures)
    print(f"profile: {FLAGS.out}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
