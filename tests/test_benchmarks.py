"""The benchmark summaries: FLOP count, peaks, medians."""

import math

import keras
import pytest

from benchmarks.report import RESNET9_FORWARD_FLOPS, bf16_peak, format_table, summarize
from tf_resnet9.models.resnet9 import resnet9


def test_forward_flops_match_the_model_layers():
    model = resnet9()
    counted = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            height, width, _ = layer.output.shape[1:]
            counted += 2 * height * width * math.prod(layer.kernel.shape)
        elif isinstance(layer, keras.layers.Dense):
            counted += 2 * math.prod(layer.kernel.shape)
    assert counted == RESNET9_FORWARD_FLOPS == 758_523_904


def test_peak_lookup_prefers_the_specific_name():
    assert bf16_peak("NVIDIA H100 80GB HBM3") == 989.4e12
    assert bf16_peak("NVIDIA H100 PCIe") == 756e12
    assert bf16_peak("AMD EPYC, 2 cores") is None


def test_summary_of_runs():
    runs = [
        {
            "seed": s,
            "test_accuracy": a,
            "training_time_s": t,
            "images_per_s": 1_191_936 / t,
            "compile_time_s": 1.0,
            "wall_time_s": t + 2,
        }
        for s, a, t in [(0, 0.9412, 10.0), (1, 0.9391, 12.0), (2, 0.9405, 11.0)]
    ]
    summary = summarize(runs, "NVIDIA H100 80GB HBM3")
    assert summary["median_test_accuracy"] == 0.9405
    assert summary["target_test_accuracy"] == 0.94
    assert summary["fraction_at_target"] == pytest.approx(2 / 3)
    assert summary["median_time_to_target_s"] is None  # the runs do not record it
    assert summary["median_training_time_s"] == 11.0
    # 1,191,936 images / 11 s x 3 x 758.5 MFLOP / 989.4 TFLOP/s = 24.9%.
    assert summary["model_flop_utilization"] == pytest.approx(0.2492, abs=1e-4)
    assert "median 94.05%" in format_table("t", runs, summary)
    assert summarize(runs, "NVIDIA H100 80GB HBM3", width=0.5)["model_flop_utilization"] is None
    other = summarize(runs, "NVIDIA H100 80GB HBM3", target=None, model="resnet20")
    assert other["fraction_at_target"] is None and other["model_flop_utilization"] is None
    runs[0]["time_to_target_s"], runs[2]["time_to_target_s"] = 8.0, 9.0
    assert summarize(runs, "NVIDIA H100 80GB HBM3")["median_time_to_target_s"] == 8.5
    assert "median_airbench_time_s" not in summary  # none of the runs has airbench's clock
    for run, clock in zip(runs, (3.0, 5.0, 4.0)):
        run["airbench_time_s"] = clock
    airbench = summarize(runs, "NVIDIA H100 80GB HBM3", target=0.9401, model="airbench94")
    assert airbench["median_airbench_time_s"] == 4.0
    assert "airbench's clock 4.00 s" in format_table("t", runs, airbench)


def test_airbench_statistics_mean_std_and_t_test():
    from benchmarks.report import accuracy_statistics

    figures = accuracy_statistics([0.9412, 0.9391, 0.9405], 0.94)
    # Mean 0.940267, sample std 0.001069: t = 0.000267 / (0.001069 / sqrt 3) = 0.432, 2
    # degrees of freedom: one-sided p = 0.354 (scipy.stats.t.sf(0.432, 2)).
    assert figures["mean_test_accuracy"] == pytest.approx(0.9402667, abs=1e-7)
    assert figures["std_test_accuracy"] == pytest.approx(0.0010693, abs=1e-7)
    assert figures["p_mean_above_target"] == pytest.approx(0.354, abs=1e-3)
    single = accuracy_statistics([0.95], 0.94)
    assert single["std_test_accuracy"] is None and single["p_mean_above_target"] is None
    assert accuracy_statistics([0.9, 0.91], None)["p_mean_above_target"] is None
