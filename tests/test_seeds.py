"""Several seeds (`--seeds K`): trained together (JAX, `--seeds_together`) each seed's
numbers are those a run of that seed alone gives, on one device and split over two; the
files of the run and the summary's figures, resuming, bad input; one after another (the
default on a CPU, and TensorFlow's only way) in the same layout."""

import glob
import json
import os
import signal
import statistics
import subprocess
import sys
from typing import NamedTuple

import keras
import numpy as np
import pytest
from keras import ops

from tests.cifar_files import fake_cifar10, write_folder
from tests.test_train_cli import run_in_process
from tf_resnet9.backends.device import Device
from tf_resnet9.config import TrainConfig
from tf_resnet9.config.recipes import RECIPES
from tf_resnet9.config.settings import resolve_devices, resolve_together
from tf_resnet9.data.inputs import DeviceInput
from tf_resnet9.errors import ConfigError
from tf_resnet9.models.resnet9 import resnet9
from tf_resnet9.sweeps import jobs
from tf_resnet9.training import loop
from tf_resnet9.training.evaluation import EvalSet
from tf_resnet9.training.lanes import SeedInput, SeedSteps
from tf_resnet9.training.optimizers import NesterovSGD
from tf_resnet9.training.records import Progress
from tf_resnet9.training.schedules import LearningRate, PiecewiseLinear
from tf_resnet9.training.steps import CompiledSteps

JAX = keras.backend.backend() == "jax"
only_jax = pytest.mark.skipif(not JAX, reason="seeds train together on Keras' JAX backend")
RNG = np.random.default_rng(0)
IMAGES = RNG.integers(0, 256, (64, 32, 32, 3), np.uint8)
LABELS = RNG.integers(0, 10, 64)
TEST = {"test": EvalSet.build(IMAGES[:32], LABELS[:32], 16)}
SEEDS = (3, 4)
TINY = ["--width", "0.0625", "--batch_size", "16", "--epochs", "2"]
# Together on JAX (the default on a CPU is one after another, where that is faster).
TOGETHER = ["--seeds_together"] if JAX else []


def lane(seed: int) -> CompiledSteps:
    """The steps a run of `seed` builds: initialised from it (4 steps an epoch of 16)."""
    keras.utils.set_random_seed(seed)
    optimizer = NesterovSGD(0.0, weight_decay=5e-4 * 16)
    return CompiledSteps(resnet9(width=0.0625), optimizer, jit=True, grad_norms=False)


def learning_rate() -> LearningRate:
    return LearningRate(PiecewiseLinear([0, 1, 2], [0.0, 0.4, 0.0], steps_per_epoch=4), 8)


class Trained(NamedTuple):
    """What `loop.fit` trains: 8 updates (2 epochs of 4 steps) of `make`'s inputs."""

    steps: object
    learning_rates: tuple
    make: object
    updates: int = 8

    def inputs(self):
        return self.make()


def weights(steps: CompiledSteps) -> list[np.ndarray]:
    return [ops.convert_to_numpy(v) for v in steps.model.weights]


def alone_and_together(placement=None):
    """[(records, final weights)] of each seed of SEEDS trained alone, then together (their
    stacked arrays placed by `placement`: one device if None)."""
    alone = []
    for seed in SEEDS:
        steps = lane(seed)
        make = lambda seed=seed: (DeviceInput(IMAGES, LABELS, 16, 1, seed=seed), TEST)  # noqa: E731
        training = Trained(steps, (learning_rate(),), make)
        (fitted,) = loop.fit(training, steps.initial_state(), [Progress((), 0.0, 0.0)], [[]])
        alone.append((fitted.records, weights(steps)))
    lanes = [lane(seed) for seed in SEEDS]
    together = SeedSteps(lanes, jit=True, placement=placement)

    def make_inputs():
        first = DeviceInput(IMAGES, LABELS, 16, 1, seed=SEEDS[0], placement=placement)
        return SeedInput.of_seeds(first, SEEDS), TEST

    training = Trained(together, (learning_rate(), learning_rate()), make_inputs)
    progress = [Progress((), 0.0, 0.0)] * 2
    fits = loop.fit(training, together.initial_state(), progress, [[], []])
    return alone, [(fitted.records, weights(steps)) for fitted, steps in zip(fits, lanes)]


def assert_same_runs(alone, together, weight_rtol: float, loss_rtol: float):
    for (records, expected), (got_records, got) in zip(alone, together):
        assert [r.test_acc for r in got_records] == [r.test_acc for r in records]
        np.testing.assert_allclose(
            [r.train_loss for r in got_records], [r.train_loss for r in records], rtol=loss_rtol
        )
        for a, b in zip(got, expected):
            # Relative to the tensor's largest weight: a weight near 0 has no relative scale.
            assert np.max(np.abs(a - b)) <= weight_rtol * np.max(np.abs(b)), np.max(np.abs(a - b))
    # The seeds are independent runs: their weights differ at order 1, not 1e-6.
    assert np.max(np.abs(together[0][1][0] - together[1][1][0])) > 1e-2


@only_jax
def test_two_seeds_together_are_two_runs_alone_in_float32():
    # 8 steps of the recipe's optimizer on random data. vmap turns each convolution into a
    # batched (grouped) one, which XLA may sum in another order: ~1e-7 relative per step,
    # grown by the chaotic dynamics (measured: 3e-6 of a tensor's largest weight after 8
    # steps, 2e-8 relative on the mean losses). 2e-5 leaves room for other CPUs while a
    # mix-up of the seeds' data or initialisation moves weights by order 1.
    alone, together = alone_and_together()
    assert_same_runs(alone, together, weight_rtol=2e-5, loss_rtol=1e-5)


def test_seeds_are_split_evenly_over_the_devices():
    with pytest.raises(ConfigError, match="seeds=0 is invalid: expected an integer >= 1"):
        TrainConfig(seeds=0)
    four_gpus = Device("gpu", "stand-in", (9, 0), count=4)
    # Unset: as many of the GPUs as the seeds trained together split evenly over.
    devices = {k: resolve_devices(TrainConfig(seeds=k), four_gpus, "jax", k) for k in (2, 3, 6, 8)}
    assert devices == {2: 2, 3: 3, 6: 3, 8: 4}
    assert resolve_devices(TrainConfig(seeds=1), four_gpus, "jax") == 4  # data parallel
    cpu = Device("cpu", "stand-in", None, count=1)
    assert resolve_devices(TrainConfig(seeds=4), cpu, "jax", 4) == 1
    assert resolve_devices(TrainConfig(seeds=6, devices="2"), four_gpus, "jax", 6) == 2
    # A batch need not split over the devices when the seeds are split instead.
    two_seeds = TrainConfig(seeds=2, batch_size=7, devices="2")
    assert resolve_devices(two_seeds, four_gpus, "jax", 2) == 2
    with pytest.raises(
        ConfigError, match=r"seeds=3 is invalid: .* 3 do not split over 2 .*--devices 1\)"
    ):
        resolve_devices(TrainConfig(seeds=3, devices="2"), four_gpus, "jax", 3)
    with pytest.raises(ConfigError, match="training over several devices runs on Keras' JAX"):
        resolve_devices(TrainConfig(seeds=2, devices="2"), four_gpus, "tensorflow", 2)


def test_seeds_train_together_where_it_is_faster_or_where_told():
    # Unset: together on a GPU with JAX, one after another on a CPU (README.org's figures)
    # and on TensorFlow, which cannot map the program over the seeds.
    gpu, cpu = Device("gpu", "stand-in", (9, 0)), Device("cpu", "stand-in")
    two = TrainConfig(seeds=2)
    assert resolve_together(two, 2, gpu, "jax") is (keras.backend.backend() == "jax")
    assert resolve_together(two, 2, cpu, "jax") is False
    assert resolve_together(TrainConfig(seeds=2, seeds_together=True), 2, cpu, "jax") is True
    assert resolve_together(TrainConfig(seeds_together=True), 1, gpu, "jax") is False
    with pytest.raises(ConfigError, match="seeds_together=True is invalid: seeds train together"):
        resolve_together(TrainConfig(seeds=2, seeds_together=True), 2, gpu, "tensorflow")


def test_bad_seeds_is_one_error_line(capsys, tmp_path):
    status, out, err = run_in_process(capsys, "--seeds", "0", "--workdir", tmp_path / "run")
    assert status == 1
    assert err.strip().splitlines() == ["error: --seeds=0 is invalid: expected an integer >= 1."]
    assert not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    # 5 x 20 = 100 training images (6 steps of 16), 20 test images.
    return write_folder(tmp_path_factory.mktemp("cifar"), fake_cifar10(train_per_batch=20, test=20))


def train_command(capsys, data_dir, workdir, *args):
    status, out, err = run_in_process(
        capsys, "--data_dir", data_dir, "--workdir", workdir, *TINY, *args
    )
    assert status == 0, err
    return out


def read(path):
    with open(path) as f:
        return json.load(f)


@pytest.mark.slow
@pytest.mark.jax  # CI runs the slow tests of JAX in its JAX suite
def test_the_files_and_the_summary_of_a_run_of_seeds(capsys, data_dir, tmp_path):
    workdir = tmp_path / "run"
    out = train_command(capsys, data_dir, workdir, "--seeds", "2", "--seed", "3", *TOGETHER)
    assert f"results: {workdir / 'seeds.json'}" in out
    for seed in SEEDS:
        run_dir = workdir / f"seed-{seed}"
        for name in ("results.json", "resnet9.keras", "report.png", "inference.keras"):
            assert (run_dir / name).is_file(), name
        assert glob.glob(str(run_dir / "tensorboard" / "*"))
        assert glob.glob(str(run_dir / "checkpoints" / "epoch-0002.npz"))
    assert (workdir / "seeds.png").stat().st_size > 1000
    seeds = read(workdir / "seeds.json")
    runs = [read(workdir / f"seed-{seed}" / "results.json") for seed in SEEDS]
    assert [run["seed"] for run in runs] == list(SEEDS)
    assert [run["config"]["seeds"] for run in runs] == [1, 1]  # each a run of its seed
    assert seeds["together"] is JAX
    assert [run["config"]["seeds_together"] for run in runs] == [JAX, JAX]  # recorded
    for entry, run in zip(seeds["seeds"], runs):
        assert entry["seed"] == run["seed"]
        assert entry["epochs"] == run["epochs"]
        assert entry["test_accuracy"] == run["test_accuracy"]
    # The summary, worked out here from the seeds' own results.json.
    accuracies = [run["epochs"][-1]["test_acc"] for run in runs]
    target = RECIPES["page24"].reported["resnet9"]
    summary = seeds["summary"]
    assert summary["median_test_accuracy"] == pytest.approx(statistics.median(accuracies))
    assert summary["min_test_accuracy"] == min(accuracies)
    assert summary["max_test_accuracy"] == max(accuracies)
    assert summary["share_at_target"] == sum(a >= target for a in accuracies) / 2
    assert summary["target"] == target and summary["reported"] == {"resnet9": target}
    # Seed 4 of the run is the run of seed 4 alone. On JAX the vmapped program sums in
    # another order (see above): 12 steps at the recipe's lr (peak 0.4) on random data
    # grow that to 4e-7 relative in epoch 1's mean loss and 3.5e-5 in epoch 2's (measured);
    # 2e-4 is a wrong seed's or lr's 1e-2. On TensorFlow the seeds run alone: identical.
    alone = workdir.parent / "alone"
    train_command(capsys, data_dir, alone, "--seed", "4")
    single = read(alone / "results.json")
    assert [e["test_acc"] for e in single["epochs"]] == [e["test_acc"] for e in runs[1]["epochs"]]
    np.testing.assert_allclose(
        [e["train_loss"] for e in single["epochs"]],
        [e["train_loss"] for e in runs[1]["epochs"]],
        rtol=2e-4 if JAX else 1e-12,
    )


@only_jax
@pytest.mark.slow
@pytest.mark.jax  # CI runs the slow tests of JAX in its JAX suite
def test_a_run_of_seeds_stopped_between_epochs_resumes_every_seed(capsys, data_dir, tmp_path):
    workdir = tmp_path / "run"
    train_command(capsys, data_dir, workdir, "--seeds", "2", "--seed", "3", *TOGETHER)
    whole = read(workdir / "seeds.json")
    # Stopped while writing epoch 2's checkpoints: seed 4 has only epoch 1's; no results.
    os.remove(workdir / "seed-4" / "checkpoints" / "epoch-0002.npz")
    for name in ("seeds.json", "seed-3/results.json", "seed-4/results.json"):
        os.remove(workdir / name)
    args = ["--seeds", "2", "--seed", "3", *TOGETHER, "--resume"]
    out = train_command(capsys, data_dir, workdir, *args)
    assert "seed-3/checkpoints/epoch-0001.npz (epoch 1)" in out
    assert "seed-4/checkpoints/epoch-0001.npz (epoch 1)" in out
    resumed = read(workdir / "seeds.json")
    for a, b in zip(whole["seeds"], resumed["seeds"]):
        # The same program on the same values: identical, bit for bit (times aside).
        keys = ("train_loss", "test_loss", "test_acc")
        assert [[e[k] for k in keys] for e in a["epochs"]] == [
            [e[k] for k in keys] for e in b["epochs"]
        ]


@pytest.mark.slow
@pytest.mark.jax  # CI runs the slow tests of JAX in its JAX suite
def test_a_sweep_job_trains_its_seeds_together_on_jax(data_dir, tmp_path):
    config = TrainConfig(
        width=0.0625, batch_size=16, epochs=1, tensorboard=False, seeds_together=JAX or None
    )
    run_dirs = tuple(str(tmp_path / f"seed-{seed}") for seed in SEEDS)
    job = jobs.Job("combination", config, SEEDS, run_dirs, str(data_dir))
    seen = []
    outcomes = jobs.train_job(job, started=seen.append, done=lambda d, o: seen.append(o))
    assert [outcome.seed for outcome in outcomes] == list(SEEDS)
    # Both started before either is done where they train together (JAX).
    assert (seen[:2] == list(run_dirs)) is JAX
    for run_dir, outcome in zip(run_dirs, outcomes):
        assert jobs.finished(run_dir).epochs == outcome.epochs  # its results.json
    with open(os.path.join(run_dirs[0], jobs.LOG_FILE)) as log:
        assert ("seeds 3, 4 trained together" in log.read()) is JAX


@pytest.mark.slow
@pytest.mark.jax  # CI runs the slow tests of JAX in its JAX suite
def test_a_sweep_job_whose_seeds_diverge_gets_each_seeds_outcome(data_dir, tmp_path):
    # A peak lr of 1e20 overflows the weights within the first steps (tests/test_train_cli.py).
    # Together, the first NaN stops every seed: they then train alone, each to its outcome.
    config = TrainConfig(
        width=0.0625, batch_size=16, epochs=1, peak_lr=1e20, seeds_together=JAX or None
    )
    run_dirs = tuple(str(tmp_path / f"seed-{seed}") for seed in SEEDS)
    outcomes = jobs.train_job(jobs.Job("combination", config, SEEDS, run_dirs, str(data_dir)))
    assert all(isinstance(outcome, jobs.Diverged) for outcome in outcomes)
    for run_dir in run_dirs:
        assert isinstance(jobs.finished(run_dir), jobs.Diverged)  # its diverged.json


@pytest.mark.slow
@pytest.mark.jax  # CI runs the slow tests of JAX in its JAX suite
def test_a_diverging_seed_is_named_in_one_error_line(capsys, data_dir, tmp_path):
    args = ["--data_dir", data_dir, "--workdir", tmp_path / "run", *TINY, "--peak_lr", "1e20"]
    status, _, err = run_in_process(capsys, *args, "--seeds", "2", "--seed", "3", *TOGETHER)
    assert status == 1
    # Together (JAX) the first lane's NaN stops both; one after another, seed 3's run alone.
    expected = "seed 3: the training loss" if JAX else "the training loss"
    assert f"error: {expected} became NaN or infinite at epoch 1, step" in err
    assert not (tmp_path / "run").exists()  # nothing written: no folder left behind


@only_jax
@pytest.mark.slow
@pytest.mark.jax  # CI runs the slow tests of JAX in its JAX suite
def test_sigterm_then_resume_gives_every_seed_an_uninterrupted_runs_numbers(
    capsys, data_dir, tmp_path
):
    args = ["--epochs", "8", "--seeds", "2", "--seed", "3", *TOGETHER]  # the last --epochs counts
    train_command(capsys, data_dir, tmp_path / "whole", *args)
    workdir = tmp_path / "interrupted"
    command = [sys.executable, "-m", "tf_resnet9.train", "--data_dir", data_dir, *TINY, *args]
    command += ["--workdir", workdir]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    process = subprocess.Popen(
        command, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    for line in process.stdout:
        if line.strip().startswith("1 "):  # epoch 1's row: every seed's checkpoint is on disk
            break
    process.send_signal(signal.SIGTERM)  # in epoch 2 or soon after (each takes ~0.2 s)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 143, err
    assert "interrupted (SIGTERM): stopped; " in err and "--resume" in err
    assert not glob.glob(str(workdir / "**" / ".tmp-*"), recursive=True)
    train_command(capsys, data_dir, workdir, *args, "--resume")
    keys = ("train_loss", "test_loss", "test_acc")
    for whole, resumed in zip(
        *(read(w / "seeds.json")["seeds"] for w in (tmp_path / "whole", workdir))
    ):
        assert [[e[k] for k in keys] for e in whole["epochs"]] == [
            [e[k] for k in keys] for e in resumed["epochs"]
        ]  # bit for bit on a CPU: the same program on the same values


def on_two_devices(*args) -> subprocess.CompletedProcess:
    """Python with `args` in a process of two forced CPU host devices (XLA reads their
    count when JAX starts)."""
    env = os.environ | {
        "KERAS_BACKEND": "jax",
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
    }
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    command = [sys.executable, *map(str, args)]
    return subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=600)


@only_jax
@pytest.mark.slow
@pytest.mark.jax
def test_seeds_split_over_two_devices_are_the_runs_alone_with_no_communication():
    # Two forced CPU host devices, one seed on each (`backends.seed_parallel`): each
    # device runs the vmapped program on its own seed, so the numbers are the one-device
    # vmapped program's, within its tolerance against runs alone (measured: 1.0e-6 and
    # 1.8e-6 of a tensor's largest weight after 8 steps), and the program has no
    # collective at all (XLA's partitioner, left to itself, gathered the seeds).
    result = on_two_devices("-m", "tests.seeds_parallel_probe")
    assert result.returncode == 0, result.stderr
    probe = json.loads(result.stdout)
    assert probe["devices"] == 2
    # Every array of the stacked state: one seed on device 0, the other on device 1.
    assert all(shards == [[0, 1], [1, 1]] for shards in probe["shards"])
    assert probe["collectives"] == []
    (alone_acc, together_acc), (alone_loss, together_loss) = probe["test_acc"], probe["train_loss"]
    assert together_acc == alone_acc
    np.testing.assert_allclose(together_loss, alone_loss, rtol=1e-5)
    assert max(probe["weights"]) <= 2e-5
    assert probe["between_seeds"] > 1e-2  # two independent runs, not one seed twice


@only_jax
@pytest.mark.slow
@pytest.mark.jax
def test_a_run_of_seeds_over_two_devices_gives_the_one_device_numbers(capsys, data_dir, tmp_path):
    args = ["--data_dir", data_dir, *TINY, "--seeds", "2", "--seed", "3", *TOGETHER]
    split = tmp_path / "split"
    result = on_two_devices("-m", "tf_resnet9.train", *args, "--devices", 2, "--workdir", split)
    assert result.returncode == 0, result.stderr
    assert "2 seeds together, split over 2 devices" in result.stdout
    train_command(capsys, data_dir, tmp_path / "one", "--seeds", "2", "--seed", "3", *TOGETHER)
    # The maths is the probe's above (weights within 2e-5 after 8 steps); this run checks
    # the wiring. Each device runs the mapped program on one seed, which XLA may compile
    # as plain convolutions, one device on two seeds as grouped ones: another summation
    # order, which 12 steps at the recipe's lr (peak 0.4) on random images amplify
    # (measured 1.7e-4 relative in epoch 1's mean loss, 4.2e-4 in epoch 2's, on an AMD
    # EPYC). 2e-3 allows that; the two seeds' losses differ by more (checked), so a run
    # that trained a seed's data with another's state fails.
    losses = {}
    for seed in SEEDS:
        got = read(split / f"seed-{seed}" / "results.json")
        expected = read(tmp_path / "one" / f"seed-{seed}" / "results.json")
        assert got["config"]["devices"] == 2 and expected["config"]["devices"] == 1
        assert [e["test_acc"] for e in got["epochs"]] == [e["test_acc"] for e in expected["epochs"]]
        losses[seed] = [e["train_loss"] for e in expected["epochs"]]
        np.testing.assert_allclose(
            [e["train_loss"] for e in got["epochs"]], losses[seed], rtol=2e-3
        )
        assert (split / f"seed-{seed}" / "checkpoints" / "epoch-0002.npz").is_file()
    apart = np.abs(np.subtract(*losses.values())) / np.abs(losses[SEEDS[0]])
    assert apart.max() > 2e-3
