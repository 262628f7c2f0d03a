"""Seeds per hour with K seeds trained together (one compiled program, `--seeds K` on JAX)
against the same K seeds one after another, in one invocation: what
`python -m benchmarks.dawnbench --parallel_seeds K` runs.

Both ways run whole `train_and_evaluate` runs on the same settings and seeds. Each way is
timed twice: by DAWNBench training time (preprocessing and training; compilation and
evaluation excluded) and by wall time (the whole call: data, compilation, evaluation,
outputs), so that the figure says what a user of either way waits for.
"""

from __future__ import annotations

import dataclasses
import datetime
import io
import statistics
import sys
import time

from tf_resnet9.config import TrainConfig
from tf_resnet9.outputs.files import write_json_atomic
from tf_resnet9.outputs.run_folder import timestamp


def _timed(config: TrainConfig, data_dir) -> tuple[float, object]:
    from tf_resnet9.experiment import train_and_evaluate  # starts Keras: not for --help

    start = time.perf_counter()
    results = train_and_evaluate(config, data_dir=data_dir, out=io.StringIO())
    return time.perf_counter() - start, results


def _way(runs, wall_s: float, training_s: float, compile_s: float) -> dict:
    """A way's figures: its runs' accuracies, its times and seeds per hour by each."""
    seeds = len(runs)
    return {
        "seeds": [run.seed for run in runs],
        "test_accuracy": [run.test_accuracy for run in runs],
        "median_test_accuracy": statistics.median(run.test_accuracy for run in runs),
        "training_time_s": training_s,
        "compile_time_s": compile_s,
        "wall_time_s": wall_s,
        "seeds_per_hour_training": 3600 * seeds / training_s,
        "seeds_per_hour_wall": 3600 * seeds / wall_s,
    }


def compare(config: TrainConfig, seeds: int, data_dir, out: str | None) -> dict:
    """Trains seeds config.seed ... config.seed + seeds - 1 together, then one after
    another; prints both ways' seeds per hour and writes the JSON report (`out`, default
    benchmarks/results/dawnbench-parallel-seeds-<time>.json)."""
    from tf_resnet9 import backends

    # In one program on JAX; TensorFlow cannot map it: there `--seeds K`, one after another.
    in_one = True if backends.NAME == "jax" else None
    run = dataclasses.replace(config, seeds=seeds, seeds_together=in_one)
    wall, together = _timed(run, data_dir)
    first = together.runs[0]
    if first.settings.seeds_together:  # one program: its times are every seed's
        ways = {"together": _way(together.runs, wall, first.training_time_s, first.compile_time_s)}
    else:
        times = [
            sum(getattr(r, t) for r in together.runs) for t in ("training_time_s", "compile_time_s")
        ]
        ways = {"together": _way(together.runs, wall, *times)}
    alone, walls = [], []
    for k in range(seeds):
        wall, results = _timed(dataclasses.replace(config, seed=config.seed + k), data_dir)
        alone.append(results)
        walls.append(wall)
    training = sum(run.training_time_s for run in alone)
    compiling = sum(run.compile_time_s for run in alone)
    ways["one_after_another"] = _way(alone, sum(walls), training, compiling)
    speedup = {
        f"by_{clock}": ways["together"][f"seeds_per_hour_{clock}"]
        / ways["one_after_another"][f"seeds_per_hour_{clock}"]
        for clock in ("training", "wall")
    }
    report = {
        "benchmark": "dawnbench --parallel_seeds",
        "command": " ".join(["python -m benchmarks.dawnbench", *sys.argv[1:]]),
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": first.device,
        "versions": first.versions,
        "config": dataclasses.asdict(config)
        | {"seed": f"{config.seed} to {config.seed + seeds - 1}"},
        "parallel_seeds": seeds,
        "together_in_one_program": first.settings.seeds_together,
        "ways": ways,
        "together_speedup": speedup,
    }
    for name, way in ways.items():
        print(
            f"{name}: {way['seeds_per_hour_training']:.0f} seeds/h by training time, "
            f"{way['seeds_per_hour_wall']:.0f} by wall time; median test accuracy "
            f"{way['median_test_accuracy']:.2%}"
        )
    print(
        f"together / one after another: {speedup['by_training']:.2f}x (training), "
        f"{speedup['by_wall']:.2f}x (wall)"
    )
    out = out or f"benchmarks/results/dawnbench-parallel-seeds-{timestamp()}.json"
    write_json_atomic(out, report)
    print(f"results: {out}")
    return report
