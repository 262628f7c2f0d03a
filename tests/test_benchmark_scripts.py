"""The benchmark scripts end to end on tiny data: they run and their reports compare field for
field. Their figures are measured in benchmarks/, never here."""

import json

import keras
import numpy as np
import pytest

from benchmarks.runs import RUN_FIELDS, time_to_target
from tests.cifar_files import fake_cifar10, write_folder
from tests.commands import run_module
from tf_resnet9.recipes import RECIPES

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


def test_dawnbench_writes_a_report(data_dir, tmp_path):
    check_report(run_benchmark("dawnbench", data_dir, tmp_path / "dawnbench.json"), "dawnbench")


def test_he2016_targets_are_the_papers():
    # The script itself is benchmarks.dawnbench's loop (run above) with the recipe's settings.
    assert RECIPES["he2016"].reported["resnet20"] == 0.9125  # Table 6: 8.75% error
    assert RECIPES["he2016"].reported["resnet56"] == 0.9303  # 6.97%


def test_time_to_target_is_the_first_epoch_reaching_it():
    records = [
        {"test_acc": 0.5, "training_time_s": 1.0},
        {"test_acc": 0.93, "training_time_s": 2.0},
        {"test_acc": 0.92, "training_time_s": 3.0},
    ]
    assert time_to_target(records, 0.93) == 2.0
    assert time_to_target(records, 0.94) is None and time_to_target(records, None) is None


class TestReferenceTorch:
    torch = pytest.importorskip("torch")

    def test_writes_a_report_like_dawnbench(self, data_dir, tmp_path):
        report = run_benchmark("reference_torch", data_dir, tmp_path / "reference.json")
        check_report(report, "reference_torch")
        assert report["config"]["precision"] == "float32"  # the CPU default

    def test_the_faster_recipe_trains_and_evaluates_its_average(self):
        # In-process and tiny (the benchmark's loop is the one run above): a step of
        # FastResNet9 on its groups, the average moved, flip-averaged logits.
        from reference import torch_fast_recipe as fast
        from reference import torch_recipe as reference

        torch = self.torch
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
        ema.update(model, 5)  # the 5th update moves the average
        moved = [not torch.equal(a, b) for a, b in zip(before, ema.model.parameters())]
        assert any(moved)
        model.eval()
        assert fast.tta_logits(model, images).shape == (32, 10)

    def test_batched_augment_equals_the_reference_image_by_image(self):
        from reference import torch_recipe as reference

        generator = self.torch.Generator().manual_seed(0)
        images = np.random.default_rng(0).integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
        padded = reference.reflect_pad(reference.normalise(images))
        draws = reference.draw(len(images), generator)
        # 64 draws cover both flips and crop and cutout offsets at their extremes often
        # enough that a transposed or off-by-one index shows; the equality is exact.
        expected = reference.augment(padded, draws)
        self.torch.testing.assert_close(
            reference.batched_augment(padded, draws), expected, rtol=0, atol=0
        )


def test_throughput_writes_its_figures(tmp_path):
    out = tmp_path / "throughput.json"
    flags = {"width": 0.0625, "batch_size": 16, "steps": 2, "pipeline_images": 256}
    result = run_module(
        "benchmarks.throughput", "--out", out, *(f"--{name}={v}" for name, v in flags.items())
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    rates = report["training_images_per_s"]
    assert set(rates) == {
        "prepared_batches",
        "device_augmentation",
        "prepared_batches_without_grad_norms",
    }
    assert all(rate > 0 for rate in rates.values())
    # tf.data, and so its figure, exists on the TensorFlow backend only.
    has_pipeline = keras.backend.backend() == "tensorflow"
    assert ("pipeline_images_per_s" in report) == has_pipeline
    if has_pipeline:
        assert len(report["pipeline_images_per_s_each_epoch"]) == 5
