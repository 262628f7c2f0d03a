"""Data parallel training on Keras' JAX backend (`--devices`), on forced CPU host devices
(XLA_FLAGS=--xla_force_host_platform_device_count=N, read when JAX starts: every check runs
in processes of its own): the numbers of one device, the all-reduces in the compiled
program, a sharded evaluation, resuming on another device count, and two processes of two
devices each on one machine (jax.distributed, CPU collectives by gloo) giving the 4-device
run's numbers, with only the first process writing files."""

import json
import os
import socket
import subprocess
import sys

import keras
import numpy as np
import pytest

from tests.cifar_files import fake_cifar10, write_folder
from tests.commands import ROOT

pytestmark = [
    pytest.mark.skipif(keras.backend.backend() != "jax", reason="data parallel is JAX's"),
    pytest.mark.slow,  # whole runs in fresh processes: minutes
    pytest.mark.jax,
]
DEVICES = 4
# One device against four: the same maths, the gradient's sum over the batch split into 4
# partial sums then all-reduced: float32 round-off of a few ulp of the updates after one
# step (measured 7e-9 to 1.2e-7 on weights of order 0.1 to 1). A wrong gradient (an
# all-reduce missing, BatchNorm statistics per device) is off by far more at once.
ONE_STEP = 1e-6
# After several steps the round-off is carried along, and where a ReLU's input or a max
# pool's two largest values are within round-off of each other the two runs may route a
# gradient differently, which later steps amplify: measured 6e-8 after the probe's 3 steps,
# but 4e-3 after 8 steps at width 0.25 and batch 128, where the same runs in float64 stay
# within 9e-9 (benchmarks/README.md). So beyond one step only a divergence is checked
# (1e-2, weights of order 0.1 to 1); the maths is checked by ONE_STEP.
SEVERAL_STEPS = 1e-2
TINY = ["--width", "0.0625", "--batch_size", "32", "--notensorboard", "--epochs", "2"]


def environment(devices: int | None, **extra) -> dict:
    """The test's environment for a process of `devices` forced host devices (None: as
    XLA starts by itself)."""
    forced = {"XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"} if devices else {}
    return os.environ | {"KERAS_BACKEND": "jax", **forced, **extra}


def run(args, devices: int | None, **extra) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *map(str, args)],
        cwd=ROOT,
        env=environment(devices, **extra),
        capture_output=True,
        text=True,
        timeout=600,
    )


def largest_difference(a, b) -> float:
    return max(float(np.abs(np.asarray(x) - np.asarray(y)).max()) for x, y in zip(a, b))


@pytest.fixture(scope="module")
def probe():
    result = run(["-m", "tests.data_parallel_probe", DEVICES], DEVICES)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_four_devices_train_the_numbers_of_one(probe):
    one, many = probe["one"], probe["many"]
    assert largest_difference(one["first"], many["first"]) <= ONE_STEP
    assert largest_difference(one["epoch"], many["epoch"]) <= SEVERAL_STEPS


def test_the_compiled_program_all_reduces_and_ghost_batchnorm_needs_none_of_its_own(probe):
    assert probe["one"]["all_reduces"] == 0
    # BatchNorm's batch statistics are the whole batch's on every device: XLA all-reduces
    # them in each of the 8 BN layers, forward and backward, beside the gradients (33
    # measured). Ghost BN with a sub-batch per device reduces nothing across devices but
    # the gradients and the step's totals, which XLA combines into one.
    assert probe["many"]["all_reduces"] >= 8 * 2
    assert probe["ghost"]["all_reduces"] <= 2


def test_a_sharded_evaluation_counts_what_one_device_counts(probe):
    # 44 test images in batches of 32 (the last padded): the padding must not count twice.
    assert probe["many"]["eval_batch_size"] % DEVICES == 0
    confusion = np.asarray(probe["many"]["confusion"])
    assert confusion.sum() == 44
    # Logits within ~1e-7 of one device's: an argmax tie that close is not in these data.
    assert probe["many"]["confusion"] == probe["one"]["confusion"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    # 5 x 26 = 130 training images (4 steps of 32), 24 test images.
    return write_folder(tmp_path_factory.mktemp("cifar"), fake_cifar10(26, 24))


@pytest.fixture(scope="module")
def four_device_run(data_dir, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("four") / "run"
    args = ["-m", "tf_resnet9.train", "--data_dir", data_dir, "--workdir", workdir, *TINY]
    result = run([*args, "--devices", DEVICES], DEVICES)
    assert result.returncode == 0, result.stderr
    assert f"data parallel over {DEVICES} devices" in result.stdout
    return workdir


def final_weights(workdir) -> list[np.ndarray]:
    model = keras.models.load_model(workdir / "resnet9.keras")
    return [np.asarray(v) for v in model.variables]


def test_a_checkpoint_of_four_devices_resumes_on_one(data_dir, four_device_run, tmp_path):
    workdir = tmp_path / "resumed"
    (workdir / "checkpoints").mkdir(parents=True)
    first = four_device_run / "checkpoints" / "epoch-0001.npz"
    (workdir / "checkpoints" / first.name).write_bytes(first.read_bytes())
    args = ["-m", "tf_resnet9.train", "--data_dir", data_dir, "--workdir", workdir, *TINY]
    result = run([*args, "--devices", "1", "--resume"], 1)
    assert result.returncode == 0, result.stderr
    assert "resuming from" in result.stdout and "data parallel" not in result.stdout
    # Epoch 2 on one device after epoch 1 on four: the same maths (see ONE_STEP).
    weights = final_weights(workdir)
    assert largest_difference(weights, final_weights(four_device_run)) <= SEVERAL_STEPS


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_of_two_devices_train_the_four_device_numbers(
    data_dir, four_device_run, tmp_path
):
    address = f"127.0.0.1:{free_port()}"
    workdirs = [tmp_path / "process0", tmp_path / "process1"]
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "tf_resnet9.train", "--data_dir", data_dir]
            + ["--workdir", workdirs[index], *map(str, TINY), "--devices", "all"]
            + ["--coordinator_address", address, "--num_processes", "2"]
            + ["--process_id", str(index)],
            cwd=ROOT,
            env=environment(2, JAX_CPU_COLLECTIVES_IMPLEMENTATION="gloo"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for index in range(2)
    ]
    outputs = [process.communicate(timeout=600) for process in processes]
    for process, (_, err) in zip(processes, outputs):
        assert process.returncode == 0, err
    assert "data parallel over 4 devices" in outputs[0][0]
    assert not workdirs[1].exists()  # only process 0 writes, and says where
    assert "results:" in outputs[0][0] and "results:" not in outputs[1][0]
    weights = final_weights(workdirs[0])
    # The same global batches split over 4 devices of 2 processes: the 4-device numbers.
    assert largest_difference(weights, final_weights(four_device_run)) <= SEVERAL_STEPS


def test_the_scaling_benchmark_writes_its_rows(tmp_path):
    out = tmp_path / "scaling.json"
    args = ["-m", "benchmarks.scaling", "--devices", "1,2", "--cpu_devices", "2"]
    args += ["--width", "0.0625", "--batch_size", "32", "--images", "64", "--out", out]
    result = run(args, None)  # the benchmark splits the CPU itself (--cpu_devices)
    assert result.returncode == 0, result.stderr
    rows = json.loads(out.read_text())["rows"]
    assert [row["devices"] for row in rows] == [1, 2]
    assert rows[0]["all_reduces_per_call"] == 0 and rows[1]["all_reduces_per_call"] > 0
    assert rows[0]["speed_up"] == 1.0 and all(row["images_per_s"] > 0 for row in rows)
    assert rows[1]["largest_weight_difference_after_one_epoch"] <= SEVERAL_STEPS
