"""The report of a DAWNBench-style benchmark: accuracy over seeds against a target, time (to
the target, and in all), FLOP use, JSON."""

from __future__ import annotations

import datetime
import statistics
import sys

from tf_resnet9.outputs.files import write_json_atomic
from tf_resnet9.outputs.run_folder import timestamp

TARGET_ACCURACY = 0.94

# Dense bf16 tensor-core peaks (no sparsity), FLOP/s, from NVIDIA's data sheets. The first
# pattern found in the device name wins, so the PCIe H100 comes before the SXM one.
BF16_PEAK_FLOPS = (
    ("H100 PCIe", 756e12),
    ("H100", 989.4e12),
    ("H200", 989.4e12),
    ("A100", 312e12),
    ("L4", 121e12),
)

# Forward FLOPs (2 per multiply-add) of ResNet9 at width 1.0 per 32x32 image, conv by conv:
# prep 3->64 at 32x32, layer1 64->128 at 32x32, res1 2 x 128->128 at 16x16,
# layer2 128->256 at 16x16, layer3 256->512 at 8x8, res3 2 x 512->512 at 4x4, linear 512->10.
RESNET9_FORWARD_FLOPS = 2 * (
    32 * 32 * 9 * 3 * 64
    + 32 * 32 * 9 * 64 * 128
    + 2 * 16 * 16 * 9 * 128 * 128
    + 16 * 16 * 9 * 128 * 256
    + 8 * 8 * 9 * 256 * 512
    + 2 * 4 * 4 * 9 * 512 * 512
    + 512 * 10
)
# A training step costs about three forward passes (forward, and backward for activations
# and weights), the usual convention for model FLOP utilisation.
RESNET9_TRAIN_FLOPS_PER_IMAGE = 3 * RESNET9_FORWARD_FLOPS


def bf16_peak(device_name: str) -> float | None:
    """The GPU's dense bf16 peak in FLOP/s, or None when the table does not know it."""
    for pattern, peak in BF16_PEAK_FLOPS:
        if pattern in device_name:
            return peak
    return None


def accuracy_statistics(accuracies: list[float], target: float | None) -> dict:
    """airbench's evidence for a recipe: the mean test accuracy and its standard deviation
    over the runs, and the p-value of a one-sided t-test of "the mean exceeds `target`"
    (the probability of a mean this high or higher if the true mean were the target; None
    with fewer than 2 runs, no target, or without scipy, a test extra)."""
    mean = statistics.fmean(accuracies)
    std = statistics.stdev(accuracies) if len(accuracies) > 1 else None
    p_value = None
    if target is not None and std is not None:
        try:
            from scipy import stats
        except ImportError:
            stats = None
        if stats is not None and std > 0:
            test = stats.ttest_1samp(accuracies, target, alternative="greater")
            p_value = float(test.pvalue)
    return {"mean_test_accuracy": mean, "std_test_accuracy": std, "p_mean_above_target": p_value}


def summarize(
    runs: list[dict],
    device_name: str,
    width: float = 1.0,
    target: float | None = TARGET_ACCURACY,
    model: str = "resnet9",
) -> dict:
    """Median accuracy, share of runs reaching `target` (None: no published target), the mean,
    its standard deviation and a t-test against the target (`accuracy_statistics`), median
    training time (and to the target, where runs record `time_to_target_s`), FLOP
    utilisation.

    Each run needs `test_accuracy`, `training_time_s` and `images_per_s`; where every run
    has `airbench_time_s` (the package's), their median too. Utilisation is only given for
    ResNet9 at width 1.0, where the FLOP count above holds.
    """
    accuracies = [run["test_accuracy"] for run in runs]
    reached = [run["time_to_target_s"] for run in runs if run.get("time_to_target_s")]
    summary = {
        "runs": len(runs),
        **accuracy_statistics(accuracies, target),
        "median_test_accuracy": statistics.median(accuracies),
        "min_test_accuracy": min(accuracies),
        "max_test_accuracy": max(accuracies),
        "target_test_accuracy": target,
        "fraction_at_target": (
            None if target is None else sum(a >= target for a in accuracies) / len(runs)
        ),
        "median_time_to_target_s": statistics.median(reached) if reached else None,
        "median_training_time_s": statistics.median(run["training_time_s"] for run in runs),
        "median_images_per_s": statistics.median(run["images_per_s"] for run in runs),
        "bf16_peak_flops": bf16_peak(device_name),
        "model_flop_utilization": None,
    }
    if all("airbench_time_s" in run for run in runs):  # the package's runs: airbench's clock
        summary["median_airbench_time_s"] = statistics.median(r["airbench_time_s"] for r in runs)
    if summary["bf16_peak_flops"] and width == 1.0 and model == "resnet9":
        achieved = summary["median_images_per_s"] * RESNET9_TRAIN_FLOPS_PER_IMAGE
        summary["model_flop_utilization"] = achieved / summary["bf16_peak_flops"]
    return summary


def format_table(title: str, runs: list[dict], summary: dict) -> str:
    """Runs and their summary as a plain-text table."""
    lines = [
        title,
        f"{'seed':>6}  {'test acc':>8}  {'train s':>8}  {'compile s':>9}  {'wall s':>7}  "
        f"{'images/s':>9}",
    ]
    for run in runs:
        lines.append(
            f"{run['seed']:>6}  {run['test_accuracy']:>8.2%}  {run['training_time_s']:>8.2f}  "
            f"{run['compile_time_s']:>9.1f}  {run['wall_time_s']:>7.1f}  "
            f"{run['images_per_s']:>9,.0f}"
        )
    mfu, target = summary["model_flop_utilization"], summary["target_test_accuracy"]
    at_target = "" if target is None else f" >= {target:.2%}: {summary['fraction_at_target']:.0%};"
    std, p = summary["std_test_accuracy"], summary["p_mean_above_target"]
    if std is not None:  # airbench's figures: mean, std, and the t-test against the target
        spread = f"mean {summary['mean_test_accuracy']:.2%}, std {std:.2%}"
        lines.append(spread + ("" if p is None else f"; one-sided t-test mean > target: p={p:.2g}"))
    clock = summary.get("median_airbench_time_s")
    lines.append(
        f"median {summary['median_test_accuracy']:.2%} (min {summary['min_test_accuracy']:.2%}, "
        f"max {summary['max_test_accuracy']:.2%}) of {summary['runs']};{at_target} median "
        f"training {summary['median_training_time_s']:.2f} s; "
        + ("" if clock is None else f"airbench's clock {clock:.2f} s; ")
        + f"MFU {'n/a' if mfu is None else f'{mfu:.1%}'}"
    )
    return "\n".join(lines)


def write_report(
    benchmark: str,
    title: str,
    runs: list[dict],
    device: dict,
    config: dict,
    out: str | None,
    target: float | None = TARGET_ACCURACY,
) -> dict:
    """Summarises `runs`, prints the table and writes the JSON report; returns the report.

    Args:
        benchmark: The module name under benchmarks/, e.g. "dawnbench".
        title: The table's first line.
        runs: One dict per run (see `summarize` and `format_table`).
        device: {"kind", "name"} of the device the runs used.
        config: The settings shared by the runs (with "width", and "model" unless ResNet9).
        out: JSON path; None: benchmarks/results/<benchmark>-<UTC time>.json.
        target: The test accuracy the recipe's source reports (None: it reports none).
    """
    width, model = config.get("width", 1.0), config.get("model", "resnet9")
    summary = summarize(runs, device["name"], width, target, model)
    stamp = datetime.datetime.now(datetime.timezone.utc)
    report = {
        "benchmark": benchmark,
        "command": " ".join([f"python -m benchmarks.{benchmark}", *sys.argv[1:]]),
        "date_utc": stamp.isoformat(timespec="seconds"),
        "device": device,
        "config": config,
        "summary": summary,
        "runs": runs,
    }
    print(format_table(title, runs, summary))
    out = out or f"benchmarks/results/{benchmark}-{timestamp()}.json"
    write_json_atomic(out, report)
    print(f"results: {out}")
    return report
