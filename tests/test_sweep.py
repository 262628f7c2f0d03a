"""`python -m tf_resnet9.sweep`: a 2 x 2 grid with 2 seeds end to end in-process (the runs,
the table, sweep.csv, sweep.png, TensorBoard's HParams, resuming), the same kind of grid as
Ray tasks on a local Ray instance, the queues, the grid's parsing and its answers to bad
input (one `error:` line each, before anything trains)."""

import contextlib
import csv
import glob
import io
import json
import os
import statistics
import sys

import numpy as np
import pytest
from PIL import Image

from tests import sweep_probe
from tests.cifar_files import fake_cifar10, write_folder
from tf_resnet9 import sweep
from tf_resnet9.config import TrainConfig
from tf_resnet9.errors import DatasetError
from tf_resnet9.outputs.results import RunResults
from tf_resnet9.sweeps import grid, queues
from tf_resnet9.sweeps.jobs import Job

# Tiny runs: XLA off, since compiling takes ~25 s a run on two busy cores and the plain
# kernels train these 6 steps in under a second.
TINY = ["--width", "0.0625", "--batch_size", "16", "--epochs", "1", "--nojit"]
GRID = [
    "--set",
    "weight_decay=1e-4,5e-4",
    "--set",
    "lr_milestones=0.5:0.3,0.6",  # a tuple setting: values separated by ':'
    "--lr_schedule",
    "multi_step",
    "--seeds",
    "2",
]
RUN_NAMES = [
    f"weight_decay={wd},lr_milestones={m}/seed-{seed}"
    for wd in ("0.0001", "0.0005")
    for m in ("0.5", "0.3-0.6")
    for seed in (0, 1)
]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    # 5 x 20 = 100 training images (6 steps of 16), 20 test images.
    return write_folder(tmp_path_factory.mktemp("cifar"), fake_cifar10(train_per_batch=20, test=20))


def run_command(*args) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of `python -m tf_resnet9.sweep ARGS`, in this process."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        with pytest.raises(SystemExit) as exit_info:
            sweep.run(["sweep", *map(str, args)])
    return exit_info.value.code or 0, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def local_sweep(data_dir, tmp_path_factory):
    """The 2 x 2 grid, 2 seeds each, one run at a time in this process (no GPU here)."""
    workdir = tmp_path_factory.mktemp("sweep") / "grid"
    status, out, err = run_command("--data_dir", data_dir, "--workdir", workdir, *GRID, *TINY)
    assert status == 0, err
    return workdir, out


def table_rows(out: str) -> list[list[str]]:
    """The cells of the text table's rows (after its caption and header)."""
    lines = out.split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith("test accuracy over"))
    rows = []
    for line in lines[start + 2 :]:
        if not line or line.startswith(("best median", "written:")):
            break
        rows.append(line.split())
    return rows


@pytest.mark.slow  # trains
def test_the_grid_trains_every_combination_and_seed(local_sweep):
    workdir, out = local_sweep
    assert "8 runs" in out and "8 to train" in out and "in this process" in out
    for name in RUN_NAMES:
        results = json.loads((workdir / name / "results.json").read_text())
        assert results["config"]["seed"] == int(name[-1])
        assert results["config"]["lr_schedule"] == "multi_step"  # the fixed flag
        assert (workdir / name / "train.log").read_text().count("test accuracy") >= 1
    first = json.loads((workdir / RUN_NAMES[2] / "results.json").read_text())["config"]
    assert first["weight_decay"] == 1e-4 and first["lr_milestones"] == [0.3, 0.6]
    assert out.count("] weight_decay=") == 8  # a line per run
    spec = json.loads((workdir / "sweep.json").read_text())
    assert spec["axes"] == {"weight_decay": [1e-4, 5e-4], "lr_milestones": [[0.5], [0.3, 0.6]]}
    assert spec["fixed"]["lr_schedule"] == "multi_step" and spec["seeds"] == 2


def medians_of(workdir) -> list[float]:
    """Each combination's median test accuracy over its 2 seeds, from the runs' files."""
    accuracies = [
        json.loads((workdir / name / "results.json").read_text())["test_accuracy"]
        for name in RUN_NAMES
    ]
    return [statistics.median(accuracies[i : i + 2]) for i in range(0, 8, 2)]


@pytest.mark.slow  # trains
def test_the_table_and_csv_give_each_combination_over_its_seeds(local_sweep):
    workdir, out = local_sweep
    rows = table_rows(out)
    assert [row[:2] for row in rows] == [
        ["0.0001", "0.5"],
        ["0.0001", "0.3,0.6"],
        ["0.0005", "0.5"],
        ["0.0005", "0.3,0.6"],
    ]
    medians = medians_of(workdir)
    # The table prints percentages to 2 decimals: 0.005 points of rounding.
    assert [float(row[2].rstrip("%")) for row in rows] == pytest.approx(
        [100 * m for m in medians], abs=0.005
    )
    assert all(row[5] == "2" for row in rows)  # the seeds
    assert all(row[-2:] == ["94.00%", "0/2"] for row in rows)  # page24's target: not reached
    with open(workdir / "sweep.csv") as f:
        csv_rows = list(csv.DictReader(f))
    assert [r["lr_milestones"] for r in csv_rows] == ["0.5", "0.3,0.6"] * 2
    # 4 decimals in the file: 5e-5 of rounding.
    assert [float(r["test_acc_median"]) for r in csv_rows] == pytest.approx(medians, abs=5e-5)
    for r in csv_rows:
        seeds = [float(v) for v in r["test_acc_per_seed"].split()]
        assert float(r["test_acc_min"]) == pytest.approx(min(seeds), abs=5e-5)
        assert float(r["test_acc_max"]) == pytest.approx(max(seeds), abs=5e-5)
        assert r["seeds"] == "2" and float(r["training_time_s_median"]) > 0
    assert (workdir / "sweep.txt").read_text().startswith("test accuracy over the seeds")


@pytest.mark.slow  # trains
def test_the_picture_is_drawn(local_sweep):
    workdir, _ = local_sweep
    with Image.open(workdir / "sweep.png") as picture:
        width, height = picture.size
        pixels = np.asarray(picture.convert("L"))
    assert width > 600 and height > 250  # 8 x (1.5 + 4 x 0.42) inches at 120 dpi, trimmed
    assert pixels.std() > 10  # not blank


def hparams_sessions(logdir) -> dict[str, dict[str, object]]:
    """run -> {hparam: value} of each HParams session under `logdir`, read with
    TensorBoard's own event reader where it is installed (else tensorboardX's protos)."""
    try:
        from tensorboard.backend.event_processing import plugin_event_multiplexer
        from tensorboard.plugins.hparams import metadata
        from tensorboard.util import tensor_util
    except ImportError:
        return _sessions_from_protos(logdir)
    multiplexer = plugin_event_multiplexer.EventMultiplexer().AddRunsFromDirectory(str(logdir))
    multiplexer.Reload()
    content = multiplexer.PluginRunToTagToContent(metadata.PLUGIN_NAME)
    sessions = {}
    for run, tags in content.items():
        assert metadata.EXPERIMENT_TAG in tags and metadata.SESSION_END_INFO_TAG in tags
        experiment = metadata.parse_experiment_plugin_data(tags[metadata.EXPERIMENT_TAG])
        assert [m.name.tag for m in experiment.metric_infos] == [
            "hparams/test_accuracy",
            "hparams/training_time_s",
        ]
        start = metadata.parse_session_start_info_plugin_data(tags[metadata.SESSION_START_INFO_TAG])
        values = {name: _hparam(value) for name, value in start.hparams.items()}
        (accuracy,) = multiplexer.Tensors(run, "hparams/test_accuracy")
        sessions[run] = values | {
            "test_accuracy": tensor_util.make_ndarray(accuracy.tensor_proto).item()
        }
    return sessions


def _hparam(value):
    kind = value.WhichOneof("kind")
    return {"number_value": value.number_value, "string_value": value.string_value}[kind]


def _sessions_from_protos(logdir) -> dict[str, dict[str, object]]:
    from tensorboardX.proto import event_pb2, plugin_hparams_pb2

    from tests.test_tensorboard import read_records

    sessions = {}
    for path in glob.glob(os.path.join(logdir, "**", "events.out.tfevents.*"), recursive=True):
        run = os.path.relpath(os.path.dirname(path), logdir)
        for record in read_records(path):
            for value in event_pb2.Event.FromString(record).summary.value:
                if value.tag == "_hparams_/session_start_info":
                    data = plugin_hparams_pb2.HParamsPluginData.FromString(
                        value.metadata.plugin_data.content
                    )
                    start = data.session_start_info.hparams
                    sessions.setdefault(run, {}).update({k: _hparam(v) for k, v in start.items()})
                elif value.tag == "hparams/test_accuracy":
                    sessions.setdefault(run, {})["test_accuracy"] = value.simple_value
    return sessions


@pytest.mark.slow  # trains
def test_each_run_is_an_hparams_session(local_sweep):
    workdir, _ = local_sweep
    sessions = hparams_sessions(workdir / "tensorboard")
    assert sorted(sessions) == sorted(RUN_NAMES)
    for name in RUN_NAMES:
        results = json.loads((workdir / name / "results.json").read_text())
        session = sessions[name]
        assert session["weight_decay"] == results["config"]["weight_decay"]
        assert session["lr_milestones"] == ",".join(map(str, results["config"]["lr_milestones"]))
        assert session["seed"] == results["config"]["seed"]
        # Logged as float32: its rounding, ~6e-8 relative.
        assert session["test_accuracy"] == pytest.approx(results["test_accuracy"], rel=1e-6)


@pytest.mark.slow  # trains
def test_a_second_call_trains_nothing_and_gives_the_same_table(local_sweep, data_dir):
    workdir, first = local_sweep
    before = {name: os.path.getmtime(workdir / name / "results.json") for name in RUN_NAMES}
    events = sorted(glob.glob(str(workdir / "tensorboard" / "**" / "events.*"), recursive=True))
    status, out, err = run_command("--data_dir", data_dir, "--workdir", workdir, *GRID, *TINY)
    assert status == 0, err
    assert "nothing to train" in out and out.count("not run again") == 8
    assert table_rows(out) == table_rows(first)
    after = {name: os.path.getmtime(workdir / name / "results.json") for name in RUN_NAMES}
    assert after == before
    # No session written twice (the HParams of a run are logged once).
    assert sorted(glob.glob(str(workdir / "tensorboard" / "**" / "events.*"), recursive=True)) == (
        events
    )


@pytest.mark.slow  # trains
def test_other_fixed_flags_into_the_same_workdir_are_refused(local_sweep, data_dir):
    workdir, _ = local_sweep
    # The last --epochs counts: the same sweep but for its length.
    args = ["--data_dir", data_dir, "--workdir", workdir, *GRID, *TINY, "--epochs", "2"]
    status, out, err = run_command(*args)
    assert status == 1
    assert err.count("\n") == 1 and err.startswith("error: --workdir ")
    assert "--epochs: 1 there, 2 here" in err
    assert not out


@pytest.mark.parametrize(
    "args, message",
    [
        (["--set", "learning_rate=0.1,0.2"], "--set learning_rate: no such setting"),
        (["--set", "weight_decay=1e-4,abc"], "--set weight_decay='abc' is invalid"),
        (["--set", "peak_lr=0.1,-1"], "--set peak_lr=-1.0 is invalid: expected a number > 0"),
        (
            ["--set", "weight_decay=1e-4,5e-4", "--weight_decay", "1e-3"],
            "--set weight_decay: it is also given as --weight_decay=0.001",
        ),
        (["--set", "lr_milestones=0.5,x"], "--set lr_milestones='0.5,x' is invalid"),
        (["--set", "weight_decay"], "expected NAME=V1,V2,..."),
        (["--set", "seed=0,1"], "--seed S --seeds K"),
        (["--set", "seeds=1,2"], "--set seeds: the seeds are not an axis"),
        (["--set", "model=resnet9,resnet21"], "--set model='resnet21' is invalid"),
        (["--seeds", "0"], "--seeds=0: 0 is not a positive integer"),
    ],
)
def test_bad_input_is_one_error_line_before_anything_trains(tmp_path, args, message):
    status, out, err = run_command("--workdir", tmp_path / "sweep", *TINY, *args)
    assert status == 1
    assert err.startswith("error: ") and message in err, err
    assert err.count("\n") <= 2  # one line (absl's flag errors add "Pass --help ...")
    assert not out and not (tmp_path / "sweep").exists()


def test_an_unknown_name_gets_the_closest_setting():
    with pytest.raises(grid.GridError, match=r"did you mean weight_decay\?"):
        grid.parse_set("weight_decays=1e-4")


def test_ray_without_ray_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    status, _, err = run_command("--workdir", tmp_path / "s", "--ray", "auto", *TINY)
    assert status == 1 and err.count("\n") == 1
    assert "--ray needs Ray" in err and "pip install 'tf_resnet9[sweep]'" in err


def test_set_values_parse_by_the_settings_type():
    assert grid.parse_set("lr_milestones=0.5,0.75:0.3,0.6,0.9").values == (
        (0.5, 0.75),
        (0.3, 0.6, 0.9),
    )
    assert grid.parse_set("cutout=true,false").values == (True, False)
    assert grid.parse_set("batch_size=128, 256").values == (128, 256)
    assert grid.parse_set("precision=none,float32").values == (None, "float32")
    assert grid.parse_set("train_limit=none,1000").values == (None, 1000)
    with pytest.raises(grid.GridError, match="given twice"):
        grid.parse_set("weight_decay=1e-4,0.0001")


def test_folder_names_are_file_system_safe():
    assert grid.folder_name({"weight_decay": 1e-4, "lr_milestones": (0.5, 0.75)}) == (
        "weight_decay=0.0001,lr_milestones=0.5-0.75"
    )
    assert grid.folder_name({"devices": "a/b c"}) == "devices=a_b_c"
    assert grid.folder_name({}) == "all"
    long = grid.folder_name({"lr_milestones": tuple(i / 1000 for i in range(1, 200))})
    assert len(long) <= 200
    other = grid.folder_name({"lr_milestones": tuple(i / 1000 for i in range(1, 201))})
    assert long != other  # the hash of the whole name keeps them apart


def test_a_grid_builds_every_combination_with_its_seeds():
    g = grid.Grid(
        {"recipe": "he2016", "epochs": 12, "seed": 5},
        (grid.Axis("weight_decay", (1e-4, 5e-4)), grid.Axis("peak_lr", (0.05, 0.1, 0.2))),
        seeds=3,
    )
    combinations = g.combinations()
    assert len(combinations) == 6
    assert [c.configs[0].peak_lr for c in combinations[:3]] == [0.05, 0.1, 0.2]
    assert [config.seed for config in combinations[0].configs] == [5, 6, 7]
    assert combinations[0].configs[0] == TrainConfig.from_recipe(
        "he2016", epochs=12, seed=5, weight_decay=1e-4, peak_lr=0.05
    )
    assert combinations[-1].run_name(7) == "weight_decay=0.0005,peak_lr=0.2/seed-7"


def test_a_cross_check_names_the_combination_that_fails_it():
    g = grid.Grid({"min_lr": 0.05}, (grid.Axis("peak_lr", (0.1, 0.01)),))
    with pytest.raises(grid.GridError, match=r"--min_lr=0.05 is invalid.*with --set peak_lr=0.01"):
        g.combinations()


def test_local_gpus_come_from_nvidia_smi_and_cuda_visible_devices():
    listed = "GPU 0: NVIDIA H100 (UUID: GPU-a)\nGPU 1: NVIDIA H100 (UUID: GPU-b)\n"
    assert queues.local_gpus({}, lambda: listed) == ["0", "1"]
    assert queues.local_gpus({"CUDA_VISIBLE_DEVICES": "1"}, lambda: listed) == ["1"]
    # CUDA stops at the first invalid entry: -1 hides every GPU.
    assert queues.local_gpus({"CUDA_VISIBLE_DEVICES": "-1"}, lambda: listed) == []
    assert queues.local_gpus({}, lambda: None) == []  # no nvidia-smi


def fake_jobs(count: int) -> list[Job]:
    config = TrainConfig()
    return [
        Job(f"c{i}", config, (0, 1), (f"/runs/c{i}/seed-0", f"/runs/c{i}/seed-1"), None)
        for i in range(count)
    ]


def test_the_gpu_queue_pins_one_process_to_each_gpu():
    done = {}
    queue = queues.GpuQueue(["3", "5"], work=sweep_probe.report_pinning)
    queue.run(
        fake_jobs(4), lambda run_dir: None, lambda run_dir, outcome: done.update({run_dir: outcome})
    )
    assert len(done) == 8  # every seed of every job
    gpu_of = {}
    for gpu, pid in done.values():
        assert gpu_of.setdefault(pid, gpu) == gpu  # a worker keeps its GPU
    assert sorted(gpu_of.values()) == ["3", "5"]  # a worker per GPU, each its own


def test_a_failing_job_stops_the_gpu_queue_with_its_error():
    queue = queues.GpuQueue(["0"], work=sweep_probe.fail)
    with pytest.raises(DatasetError, match="no data for c0"):
        queue.run(fake_jobs(3), lambda run_dir: None, lambda run_dir, outcome: None)


@pytest.mark.slow  # trains
def test_the_gpu_queue_trains_a_real_job_in_its_worker(data_dir, tmp_path):
    # What every GPU host runs: train_job in a spawned worker, pinned (here to a GPU that
    # is not there: the worker trains on the CPU), its RunResults pickled back.
    config = TrainConfig(width=0.0625, batch_size=16, epochs=1, jit=False)
    run_dir = str(tmp_path / "all" / "seed-0")
    done = {}
    queue = queues.GpuQueue(["0"])
    job = Job("all", config, (0,), (run_dir,), data_dir)
    queue.run([job], lambda run_dir: None, done.__setitem__)
    (results,) = done.values()
    written = RunResults.read(os.path.join(run_dir, "results.json"))
    assert results.test_accuracy == written.test_accuracy and results.epochs == written.epochs


@pytest.fixture(scope="module")
def local_ray():
    """A Ray instance on this host with 2 CPUs (what the machine has)."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.mark.slow  # trains
def test_the_grid_runs_as_ray_tasks(local_ray, data_dir, tmp_path):
    workdir = tmp_path / "ray"
    args = ["--set", "weight_decay=1e-4,5e-4", "--lr_schedule", "multi_step"]
    status, out, err = run_command(
        "--data_dir", data_dir, "--workdir", workdir, "--ray", "auto", *args, *TINY
    )
    assert status == 0, err
    assert "Ray tasks" in out and "one run per node (2 CPUs)" in out
    assert len(table_rows(out)) == 2
    for name in ("weight_decay=0.0001/seed-0", "weight_decay=0.0005/seed-0"):
        assert json.loads((workdir / name / "results.json").read_text())["config"]["seed"] == 0
    assert sorted(hparams_sessions(workdir / "tensorboard")) == [
        "weight_decay=0.0001/seed-0",
        "weight_decay=0.0005/seed-0",
    ]
