"""benchmarks.gpu_session, the lease's one command: its plan and estimates, its runner (a
failing child recorded, the next one run), and the dry run end to end on tiny data; and the
trace reading of benchmarks.profile_epoch. The figures themselves are measured on the GPU."""

import importlib.util
import json
import os
import time

import pytest

from benchmarks import gpu_session, profile_epoch
from benchmarks.gpu_session import Session, Settings, Step, Timing, plan_step, timing_of_runs
from tests.cifar_files import fake_cifar10, write_folder
from tests.commands import run_module

STATUSES = {"ok", "failed", "skipped"}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    # 5 x 52 = 260 training images, enough for the dry run's --train_limit 256; 64 test.
    return write_folder(tmp_path_factory.mktemp("cifar"), fake_cifar10(train_per_batch=52, test=64))


def read_session(out) -> dict:
    return json.loads((out / "session.json").read_text())


# ---------------------------------------------------------------------------- estimates

TIMING = Timing(
    startup_s=10.0, fixed_s=30.0, epoch_s=1.0, eval_s=0.5, recipe="page24", measured_by="smoke"
)
PAGE24 = next(s for s in gpu_session.session_steps(False) if s.name == "page24-keras")
PAGE10 = next(s for s in gpu_session.session_steps(False) if s.name == "page10-keras")


def test_the_estimate_is_startup_plus_seeds_times_compile_and_epochs():
    # 10 + 5 x (30 + 24 x (1 + 0.5)) = 340 s; page10 evaluates twice (flip TTA):
    # 10 + 5 x (30 + 10 x (1 + 2 x 0.5)) = 260 s. Exact: sums of binary fractions.
    assert TIMING.seconds(5, 24, "page24") == 340.0
    assert TIMING.seconds(5, 10, "page10") == 260.0
    plan = plan_step(PAGE24, TIMING, left_s=400, budget_s=540, seeds=5, min_seeds=3)
    assert plan.run and plan.seeds == 5 and plan.estimate_s == 340.0
    assert "340 s = 10.0 s start-up + 5 seeds x" in plan.why


def test_a_benchmark_runs_with_the_seeds_that_fit_or_is_skipped():
    # 340 s x 1.15 > 300 s left; 3 seeds: (300 / 1.15 - 10) / 66 = 3.8 -> 3 fit.
    fewer = plan_step(PAGE24, TIMING, left_s=300, budget_s=540, seeds=5, min_seeds=3)
    assert fewer.run and fewer.seeds == 3 and "3 of 5 seeds fit" in fewer.why
    # 150 s: 2 seeds fit, fewer than --min_seeds 3.
    skipped = plan_step(PAGE24, TIMING, left_s=150, budget_s=540, seeds=5, min_seeds=3)
    assert not skipped.run and skipped.why.startswith("would not fit: estimate 340 s")


def test_without_a_measurement_a_smoke_gets_its_share_and_a_benchmark_what_is_left():
    smoke = gpu_session.session_steps(False)[0]
    plan = plan_step(smoke, None, left_s=500, budget_s=540, seeds=5, min_seeds=3)
    assert plan.run and plan.timeout_s == pytest.approx(0.4 * 540)
    plan = plan_step(PAGE10, None, left_s=500, budget_s=540, seeds=5, min_seeds=3)
    assert plan.run and plan.timeout_s == 500 and "no estimate" in plan.why
    assert not plan_step(PAGE10, None, left_s=5, budget_s=540, seeds=5, min_seeds=3).run


def test_the_timing_of_runs_splits_their_times():
    runs = [
        {"wall_time_s": 40.0, "training_time_s": 24.0, "eval_time_s": 4.0},  # fixed 12
        {"wall_time_s": 36.0, "training_time_s": 24.0, "eval_time_s": 4.0},  # fixed 8
    ]
    timing = timing_of_runs(runs, epochs=24, child_s=80.0, recipe="page24", step="x")
    # Start-up is what the child took besides its runs; fixed the longest run's (the
    # first compiles what later ones find cached); per-epoch figures the medians.
    assert (timing.startup_s, timing.fixed_s, timing.epoch_s, timing.eval_s) == (
        4.0,
        12.0,
        1.0,
        4.0 / 24,
    )


def test_every_benchmark_step_writes_its_own_file_and_all_fit_the_lease():
    steps = gpu_session.session_steps(False)
    outputs = [s.output for s in steps if s.output.startswith("{out}")]
    assert len(set(outputs)) == len(outputs)
    # session.json and log.txt besides: the lease's 8 files.
    assert len(outputs) + 2 == gpu_session.MAX_FILES


# ---------------------------------------------------------------------------- the runner


def test_a_failing_child_is_recorded_and_the_next_runs(tmp_path):
    # Stand-in children from the standard library: json.tool copies a JSON file, and exits
    # 2 on a flag it does not know. Nothing here needs a measurement, so each step runs.
    out, work = tmp_path / "out", tmp_path / "work"
    out.mkdir()
    work.mkdir()
    (work / "in.json").write_text('{"a": 1}')
    steps = [
        Step("broken", "json.tool", ("--no_such_flag",), "smoke", "keras", "page24", 1, "{out}/x"),
        Step(
            "copy",
            "json.tool",
            ("{work}/in.json", "{out}/copy.json"),
            "benchmark",
            "keras",
            "page24",
            1,
            "{out}/copy.json",
        ),  # fmt: skip
    ]
    said = []
    settings = Settings(str(out), str(work), str(tmp_path), budget_s=100, seeds=2, min_seeds=1)
    session = Session(steps, settings, {}, time.monotonic(), said.append)
    assert session.run() == 1
    broken, copy = read_session(out)["steps"]
    assert broken["status"] == "failed" and broken["reason"] == "exit status 2"
    assert any("no_such_flag" in line for line in broken["stderr_tail"])
    assert copy["status"] == "ok" and json.loads((out / "copy.json").read_text()) == {"a": 1}
    assert "headline_error" in copy  # a copy is no benchmark report: said, not fatal
    log = (out / "log.txt").read_text()
    assert "[broken stderr]" in log and "no_such_flag" in log
    assert any(line.startswith("broken: failed") for line in said)


# ---------------------------------------------------------------------------- the command


def test_a_tiny_budget_skips_every_step_and_says_so(data_dir, tmp_path):
    out = tmp_path / "out"
    result = run_module(
        "benchmarks.gpu_session", "--data_dir", data_dir, "--out", out, "--dry_run",
        "--budget_s", "1", timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "budget 1 s for 10 steps" in result.stdout
    assert sorted(os.listdir(out)) == ["log.txt", "session.json"]
    session = read_session(out)
    assert session["budget_s"] == 1 and session["dry_run"]
    assert [s["status"] for s in session["steps"]] == ["skipped"] * len(
        gpu_session.session_steps(True)
    )
    smoke = session["steps"][0]
    assert smoke["reason"].startswith("would not fit") and "smoke: skipped" in result.stdout
    # The closing table's columns line up, whatever the longest step name.
    names = {step["name"] for step in session["steps"]}
    table = [
        line for line in result.stdout.splitlines() if line.split()[:1] in [[n] for n in names]
    ]
    assert len(table) == len(names)
    assert len({line.index(" skipped ") for line in table}) == 1
    assert "versions" in session["environment"]


def expected_status(step: str) -> set[str]:
    if step == "page10-keras":
        return {"failed"}  # given a bad flag
    if "torch" in step and importlib.util.find_spec("torch") is None:
        return {"skipped"}
    if step == "profile" and importlib.util.find_spec("jax") is None:
        return {"skipped"}
    return {"ok"}


@pytest.mark.slow
def test_the_dry_run_end_to_end(data_dir, tmp_path):
    # Every step at tiny size, as on the lease; page10-keras gets a bad flag and fails, and
    # the steps after it still run. JAX's compilation cache, shared by the children, saves
    # most of the compiling after the first (on two CPU cores: ~50 s a child without it).
    out = tmp_path / "out"
    result = run_module(
        "benchmarks.gpu_session", "--data_dir", data_dir, "--out", out, "--dry_run",
        "--budget_s", "3000", "--step_flags", "page10-keras=--no_such_flag",
        "--compilation_cache", tmp_path / "jax-cache", timeout=3300,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    assert "budget 3000 s for 10 steps" in result.stdout
    session = read_session(out)
    steps = {s["name"]: s for s in session["steps"]}
    assert list(steps) == [s.name for s in gpu_session.session_steps(True)]
    for name, step in steps.items():
        assert step["status"] in expected_status(name), (name, step)
        assert step["command"].startswith("python -m ")
    assert "no_such_flag" in " ".join(steps["page10-keras"]["stderr_tail"])
    assert steps["smoke"]["headline"]["compile_time_s"] > 0
    assert "[measured by smoke]" in steps["page24-keras"]["estimate"]
    files = os.listdir(out)
    assert len(files) <= gpu_session.MAX_FILES
    written = {os.path.basename(s["output"]) for s in steps.values() if s["status"] == "ok"}
    in_work = {"results.json", "smoke-torch.json", "airbench94-keras.json", "airbench94-torch.json"}
    assert written - in_work <= set(files)
    for name in ("airbench94-keras", "airbench94-torch"):  # their reports in session.json
        if steps[name]["status"] == "ok":
            assert [run["seed"] for run in steps[name]["report"]["runs"]] == [0, 1]
    report = json.loads((out / "page24-keras.json").read_text())
    assert [run["seed"] for run in report["runs"]] == [0, 1]
    assert "[smoke]" in (out / "log.txt").read_text()
    if steps["profile"]["status"] == "ok":
        assert "kind" in (out / "profile.txt").read_text()
    together = steps["seeds-together"]
    assert together["estimate"].startswith("estimate") and "2 ways x" in together["estimate"]
    assert together["headline"]["seeds"] == 2
    assert set(together["headline"]["seeds_per_hour_training"]) == {"together", "one_after_another"}


# ---------------------------------------------------------------------------- the profile

HLO = """HloModule jit_train, entry_computation_layout={(f32[8]{0})->f32[8]{0}}

%fused_conv (p0: f32[1,8,8,4], p1: f32[3,3,4,4]) -> f32[1,8,8,4] {
  %p0 = f32[1,8,8,4]{3,2,1,0} parameter(0)
  %p1 = f32[3,3,4,4]{3,2,1,0} parameter(1)
  ROOT %convolution.1 = f32[1,8,8,4]{3,2,1,0} convolution(%p0, %p1), window={size=3x3}
}

%fused_sum (p0.1: f32[8]) -> f32[] {
  %p0.1 = f32[8]{0} parameter(0)
  %c = f32[] constant(0)
  ROOT %reduce.2 = f32[] reduce(%p0.1, %c), dimensions={0}, to_apply=%add
}

%fused_t (p0.2: f32[2,4]) -> f32[4,2] {
  %p0.2 = f32[2,4]{1,0} parameter(0)
  ROOT %transpose.3 = f32[4,2]{1,0} transpose(%p0.2), dimensions={1,0}
}

ENTRY %main (a: f32[8]) -> f32[8] {
  %a = f32[8]{0} parameter(0)
  %conv_fusion = f32[1,8,8,4]{3,2,1,0} fusion(%a, %a), kind=kOutput, calls=%fused_conv
  %input_reduce_fusion = f32[] fusion(%a), kind=kInput, calls=%fused_sum
  %transpose_fusion = f32[4,2]{1,0} fusion(%a), kind=kLoop, calls=%fused_t
  %cudnn-conv.4 = (f32[8]{0}, u8[0]{0}) custom-call(%a), custom_call_target="__cudnn$convForward"
  %while.5 = (s32[], f32[8]{0}) while(%t), condition=%cond, body=%body
  ROOT %multiply.6 = f32[8]{0} multiply(%a, %a)
}
"""


def test_op_kinds_come_from_the_fused_computations():
    kinds = profile_epoch.op_kinds(HLO)
    assert kinds["conv_fusion"] == "convolution"
    assert kinds["input_reduce_fusion"] == "reduce"
    assert kinds["transpose_fusion"] == "copy/transpose"
    assert kinds["cudnn-conv.4"] == "convolution"
    assert kinds["while.5"] == kinds["multiply.6"] == "other"
    assert profile_epoch.kind_by_name("loop_add_fusion.7") == "fusion"


def test_self_times_take_nested_ops_out_of_their_parent():
    # A loop of 10 ns holding two ops of 3 and 4 ns, then an op of 5 ns on its own.
    events = [("while", 0, 10), ("a", 1, 3), ("b", 5, 4), ("c", 12, 5)]
    assert dict(profile_epoch.self_times(events)) == {"while": 3, "a": 3, "b": 4, "c": 5}


def test_the_table_says_when_the_trace_could_not_be_read():
    figures = {
        "title": "resnet9",
        "source": "XLA cost_analysis() with the measured epoch time (trace unreadable: x)",
        "epoch_s": 1.0,
        "traced_epoch_s": 1.1,
        "compile_s": 20.0,
        "floor_s": 0.1,
        "floor_counted": "the model's count",
        "xla_flops": 2e12,
        "xla_bytes": 5e10,
        "calls": 1,
        "kinds": None,
        "events": 0,
    }
    table = profile_epoch.format_table(figures, [])
    assert "trace unreadable" in table and "2,000.00 GFLOP" in table
    assert "2.00 TFLOP/s, 50.0 GB/s" in table  # one call of 1 s per epoch
    assert "0.1000 s (10.0% of the epoch" in table and "no time per kind" in table


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="the profile is JAX only")
def test_jax_has_the_trace_reader_the_profile_uses():
    from jax.profiler import ProfileData

    assert hasattr(ProfileData, "from_file") or hasattr(ProfileData, "from_serialized_xspace")


# A GPU's trace as JAX's profiler writes it, in XSpace's text form: the module ran from 1 to
# 21 us; a while loop of 10 us holds a 3 us convolution; an op of another program runs later.
# The kernels' form: a stream's events naming their HLO op and module.
GPU_TRACE = """
planes {
  id: 1
  name: "/device:GPU:0"
  lines { id: 1 name: "XLA Modules" timestamp_ns: 1000
    events { metadata_id: 1 offset_ps: 0 duration_ps: 20000000 } }
  lines { id: 2 name: "XLA Ops" timestamp_ns: 1000
    events { metadata_id: 2 offset_ps: 0 duration_ps: 10000000 }
    events { metadata_id: 3 offset_ps: 1000000 duration_ps: 3000000 }
    events { metadata_id: 4 offset_ps: 30000000 duration_ps: 5000000 } }
  event_metadata { key: 1 value { id: 1 name: "jit_train(7)" } }
  event_metadata { key: 2 value { id: 2 name: "while.5" } }
  event_metadata { key: 3 value { id: 3 name: "conv_fusion" } }
  event_metadata { key: 4 value { id: 4 name: "fusion.9" } }
}
"""
KERNEL_TRACE = """
planes {
  id: 1
  name: "/device:GPU:0"
  lines { id: 1 name: "Stream #13" timestamp_ns: 0
    events { metadata_id: 1 offset_ps: 0 duration_ps: 2000000
      stats { metadata_id: 10 str_value: "conv_fusion" }
      stats { metadata_id: 11 str_value: "jit_train" } }
    events { metadata_id: 1 offset_ps: 5000000 duration_ps: 1000000
      stats { metadata_id: 10 str_value: "fusion.1" }
      stats { metadata_id: 11 str_value: "jit_other" } } }
  event_metadata { key: 1 value { id: 1 name: "sm90_xmma_fprop" } }
  stat_metadata { key: 10 value { id: 10 name: "hlo_op" } }
  stat_metadata { key: 11 value { id: 11 name: "hlo_module" } }
}
"""


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="the profile is JAX only")
@pytest.mark.parametrize(
    "trace, expected, where",
    [
        (GPU_TRACE, {"while.5": 7e-6, "conv_fusion": 3e-6}, '/device:GPU:0, line "XLA Ops"'),
        (KERNEL_TRACE, {"conv_fusion": 2e-6}, "/device:GPU:0, kernels by hlo_op"),
    ],
)
def test_a_gpu_trace_gives_each_op_of_the_module_its_self_time(tmp_path, trace, expected, where):
    from jax.profiler import ProfileData

    path = tmp_path / "trace.xplane.pb"
    path.write_bytes(ProfileData.text_proto_to_serialized_xspace(trace))
    times, found, _ = profile_epoch.read_trace(str(path), "jit_train", {"while.5", "conv_fusion"})
    assert found == where
    # Nanoseconds to seconds in float64: equal to ~1e-16 relative.
    assert times == pytest.approx(expected, rel=1e-12)
