"""The benchmark scripts end to end on tiny data: they run and their reports compare field for
field. Their figures are measured in benchmarks/, never here."""

import importlib.util
import json

import keras
import numpy as np
import pytest

from benchmarks.runs import RUN_FIELDS, time_to_target
from tests.cifar_files import fake_cifar10, write_folder
from tests.commands import run_module
from tf_resnet9.training.records import EpochRecord

# One seed: each seed is a whole run (compiled anew); summaries over several seeds are
# tested in test_benchmarks.py.
TINY = ["--seeds", "1", "--epochs", "1", "--batch_size", "32", "--width", "0.0625"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    # 5 x 20 = 100 training images (3 steps of 32), 20 test images.
    return write_folder(tmp_path_factory.mktemp("cifar"), fake_cifar10(train_per_batch=20, test=20))


def run_benchmark(module: str, data_dir: str, out) -> dict:
    result = run_module(f"benchmarks.{module}", "--data_dir", data_dir, "--out", out, *TINY)
    assert result.returncode == 0, result.stderr
    assert "seed" in result.stdout and f"results: {out}" in result.stdout
    return json.loads(out.read_text())


def check_report(report: dict, benchmark: str) -> None:
    assert report["benchmark"] == benchmark
    assert [run["seed"] for run in report["runs"]] == [0]
    for run in report["runs"]:
        assert {"seed", *RUN_FIELDS} <= run.keys()
        assert 0.0 <= run["test_accuracy"] <= 1.0
        assert run["training_time_s"] > 0 and run["images_per_s"] > 0
    summary = report["summary"]
    assert summary["runs"] == 1
    assert summary["min_test_accuracy"] <= summary["median_test_accuracy"]
    assert summary["model_flop_utilization"] is None  # no bf16 peak for a CPU, and narrow


@pytest.mark.slow
def test_dawnbench_writes_a_report(data_dir, tmp_path):
    check_report(run_benchmark("dawnbench", data_dir, tmp_path / "dawnbench.json"), "dawnbench")


def test_time_to_target_is_the_first_epoch_reaching_it():
    figures = dict(lr=0.1, train_loss=1.0, train_acc=0.5, test_loss=1.0, test_top5_acc=0.99)
    records = [
        EpochRecord(epoch=e, test_acc=acc, epoch_time_s=1.0, training_time_s=float(e), **figures)
        for e, acc in ((1, 0.5), (2, 0.93), (3, 0.92))
    ]
    assert time_to_target(records, 0.93) == 2.0
    assert time_to_target(records, 0.94) is None and time_to_target(records, None) is None


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="needs torch")
class TestReferenceTorch:
    @pytest.mark.slow
    def test_writes_a_report_like_dawnbench(self, data_dir, tmp_path):
        report = run_benchmark("reference_torch", data_dir, tmp_path / "reference.json")
        check_report(report, "reference_torch")
        import torch

        # The device's default: bf16 autocast on a GPU, float32 on a CPU.
        default = "bfloat16" if torch.cuda.is_available() else "float32"
        assert report["config"]["precision"] == default

    @pytest.mark.slow
    def test_an_airbench_recipe_writes_a_report_with_its_statistics(self, data_dir, tmp_path):
        out = tmp_path / "airbench.json"
        args = ["--data_dir", data_dir, "--out", out, *TINY, "--seeds", "2"]
        result = run_module("benchmarks.reference_torch", *args, "--recipe", "airbench94")
        assert result.returncode == 0, result.stderr
        report = json.loads(out.read_text())
        assert [run["seed"] for run in report["runs"]] == [0, 1]
        assert report["config"]["epochs"] == 1.0 and report["config"]["model"] == "airbench94"
        assert report["summary"]["target_test_accuracy"] == 0.94
        assert report["summary"]["std_test_accuracy"] is not None
        assert "mean " in result.stdout and ", std " in result.stdout  # airbench's figures

    @pytest.mark.parametrize("recipe", ["airbench94", "airbench94_muon", "airbench96"])
    def test_the_airbench_transcription_trains_and_evaluates(self, recipe):
        # In-process and tiny (the command's loop is the slow test's): 100 images in
        # batches of 32, 1.5 epochs: 3 steps per epoch, ceil(4.5) = 5 updates.
        import dataclasses

        import torch

        from reference import torch_airbench

        torch.set_num_threads(1)
        rng = np.random.default_rng(0)
        train = (rng.integers(0, 256, (100, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, 100))
        test = (rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, 20))
        narrow = dataclasses.replace(torch_airbench.RECIPES[recipe], batch_size=32)
        result = torch_airbench.train(narrow, train, test, seed=0, width=0.0625, epochs=1.5)
        assert result["updates"] == 5
        assert 0.0 <= result["test_accuracy"] <= 1.0 and result["time_s"] > 0

    def test_the_faster_recipe_trains_and_evaluates_its_average(self):
        # In-process and tiny (the benchmark's loop is the one run above): a step of
        # FastResNet9 on its groups, the average moved, flip-averaged logits.
        import torch

        from reference import torch_fast_recipe as fast
        from reference import torch_recipe as reference

        torch.manual_seed(0)
        images = torch.randn(32, 3, 32, 32)
        model = fast.FastResNet9(fast.whitening_filters(images), width=0.0625)
        optimizer = reference.RecipeSGD(fast.param_groups(model))
        ema = fast.EMA(model)
        fast.set_lr(optimizer, 1.0, 32)
        assert [g["lr"] for g in optimizer.param_groups] == [1.0 / 32, 64.0 / 32]
        before = [p.clone() for p in ema.model.parameters()]
        fast.summed_loss(model(images), torch.zeros(32, dtype=torch.long)).backward()
        optimizer.step()
        ema.update(model, 0)  # the first update of an epoch moves the average
        moved = [not torch.equal(a, b) for a, b in zip(before, ema.model.parameters())]
        assert any(moved)
        model.eval()
        assert fast.tta_logits(model, images).shape == (32, 10)

    def test_batched_augment_equals_the_reference_image_by_image(self):
        import torch

        from reference import torch_recipe as reference

        generator = torch.Generator().manual_seed(0)
        images = np.random.default_rng(0).integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
        padded = reference.reflect_pad(reference.normalise(images))
        draws = reference.draw(len(images), generator)
        # 64 draws cover both flips and crop and cutout offsets at their extremes often
        # enough that a transposed or off-by-one index shows; the equality is exact.
        expected = reference.augment(padded, draws)
        torch.testing.assert_close(
            reference.batched_augment(padded, draws), expected, rtol=0, atol=0
        )


@pytest.mark.slow
def test_throughput_writes_its_figures(tmp_path):
    out = tmp_path / "throughput.json"
    flags = {"width": 0.0625, "batch_size": 16, "images": 32, "repeats": 1}
    result = run_module(
        "benchmarks.throughput", "--out", out, *(f"--{name}={v}" for name, v in flags.items())
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    ways = {"augment device, XLA on", "augment device, XLA off"}
    if keras.backend.backend() == "tensorflow":  # tf.data, the host input, needs TensorFlow
        ways |= {"augment host, XLA on", "augment host, XLA off"}
    rates = report["images_per_s"]
    assert set(rates) == ways | {"the defaults, no grad norms"}
    assert all(rate > 0 for rate in rates.values()) and report["fastest"] in rates
    assert report["images_per_epoch"] == 32
