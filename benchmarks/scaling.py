r"""Data parallel training over 1, 2, 4, ... devices (Keras on JAX): what each count costs
and gains, and that it trains the same numbers.

    KERAS_BACKEND=jax python -m benchmarks.scaling --devices 1,2,4,8
    KERAS_BACKEND=jax python -m benchmarks.scaling --devices 1,2,4 --cpu_devices 4 --width 0.25

Per device count: the compile time (XLA, and the first call), the steady epoch time (the
second timed epoch), images/s, the speed-up and efficiency against one device, the
all-reduces in the training program (read from its optimised HLO), the peak memory per
device (where the device reports it: GPUs do, CPUs do not), and the largest difference of
any weight from the one-device run after one epoch from the same initial weights, on the
same batches. `--cpu_devices N` splits this machine's CPU into N XLA host devices
(XLA_FLAGS=--xla_force_host_platform_device_count=N, before JAX starts): the program and
the numbers are then those of N devices, but the N devices share the CPU's cores, so the
speed-up is not a figure of real hardware. benchmarks/README.md says which figures need
real multi-GPU hardware.
"""

from __future__ import annotations

import datetime
import os
import re
import sys
import time

import numpy as np
from absl import app, flags

from tf_resnet9 import commands
from tf_resnet9.config.flags import config_from_flags, define_config_flags

CONFIG_FLAGS = define_config_flags(only=("model", "width", "batch_size", "precision", "seed"))
flags.DEFINE_list("devices", ["1", "2", "4"], "Device counts to measure, the first the base.")
flags.DEFINE_integer(
    "cpu_devices", None, "Split the CPU into this many XLA host devices (before JAX starts)."
)
flags.DEFINE_integer("images", 1024, "Synthetic training images in an epoch.")
flags.DEFINE_string("out", None, "JSON path. Unset: benchmarks/results/scaling-<time>.json.")
FLAGS = flags.FLAGS


def all_reduces(program: str) -> int:
    """All-reduce operations in an optimised HLO program (synchronous or started)."""
    return len(re.findall(r"= [^=]*\ball-reduce(?:-start)?\(", program))


def peak_memory() -> int | None:
    """The largest peak of memory in use over the devices, where they report one."""
    import jax

    peaks = [(d.memory_stats() or {}).get("peak_bytes_in_use") for d in jax.local_devices()]
    return max(peaks) if all(p is not None for p in peaks) else None


def measure(count: int, images, labels) -> tuple[dict, list[np.ndarray]]:
    """The figures of `count` devices, and the weights after the first epoch."""
    from tf_resnet9 import backends
    from tf_resnet9.build import build_training
    from tf_resnet9.config.settings import resolve
    from tf_resnet9.data.splits import Splits
    from tf_resnet9.training import loop

    config = config_from_flags(CONFIG_FLAGS, devices=str(count), tensorboard=False)
    settings = resolve(config, len(labels), len(labels))
    training = build_training(config, settings, Splits.of_arrays((images, labels)), [config.seed])
    steps = training.steps
    train_input, _ = training.inputs()
    start = time.perf_counter()
    state, _ = loop.run_epoch(training, steps.initial_state(), train_input)  # compiles
    compile_s = time.perf_counter() - start
    weights = [value for name, value in steps.arrays(state).items() if name.startswith("model/")]
    epochs_s = []
    for number in (2, 3):
        start = time.perf_counter()
        state, _ = loop.run_epoch(training, state, train_input, number)  # waits for its totals
        epochs_s.append(time.perf_counter() - start)
    program = steps.train_fn(train_input.batches).program(
        state, *loop.first_call(training, train_input)
    )
    trained = settings.steps_per_epoch * config.batch_size
    figures = {
        "devices": count,
        "compile_and_first_epoch_s": compile_s,
        "epoch_s": epochs_s[-1],
        "images_per_s": trained / epochs_s[-1],
        "all_reduces_per_call": all_reduces(program),
        "steps_per_call": settings.steps_per_call,
        "peak_memory_per_device_bytes": peak_memory(),
        "backend_devices": backends.local_device_count(),
    }
    return figures, weights


def main(argv):
    del argv
    commands.prepare_environment()
    if FLAGS.cpu_devices:
        os.environ["XLA_FLAGS"] = " ".join(
            [
                os.environ.get("XLA_FLAGS", ""),
                f"--xla_force_host_platform_device_count={FLAGS.cpu_devices}",
            ]
        ).strip()
    from tf_resnet9.backends.device import current_device
    from tf_resnet9.outputs.files import write_json_atomic
    from tf_resnet9.outputs.results import library_versions
    from tf_resnet9.outputs.run_folder import timestamp

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (FLAGS.images, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, FLAGS.images)
    rows, base_weights = [], None
    for count in map(int, FLAGS.devices):
        figures, weights = measure(count, images, labels)
        if base_weights is None:
            base_weights, base_rate = weights, figures["images_per_s"]
        differences = [float(np.abs(a - b).max()) for a, b in zip(weights, base_weights)]
        figures["speed_up"] = figures["images_per_s"] / base_rate
        figures["efficiency"] = figures["speed_up"] * int(FLAGS.devices[0]) / count
        figures["largest_weight_difference_after_one_epoch"] = max(differences)
        rows.append(figures)
        print(
            f"{count} devices: {figures['images_per_s']:9.1f} images/s, speed-up "
            f"{figures['speed_up']:.2f}, {figures['all_reduces_per_call']} all-reduces a "
            f"call, weights within {max(differences):.1e} of {FLAGS.devices[0]} device(s)",
            flush=True,
        )
    device = current_device()
    report = {
        "benchmark": "scaling",
        "command": " ".join(["python -m benchmarks.scaling", *sys.argv[1:]]),
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": {"kind": device.kind, "name": device.name, "count": device.count},
        "forced_cpu_devices": FLAGS.cpu_devices,
        "versions": library_versions(),
        "config": {name: FLAGS[name].value for name in CONFIG_FLAGS} | {"images": FLAGS.images},
        "rows": rows,
    }
    out = FLAGS.out or f"benchmarks/results/scaling-{timestamp()}.json"
    write_json_atomic(out, report)
    print(f"results: {out}")


if __name__ == "__main__":
    app.run(main)
