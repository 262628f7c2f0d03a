r"""Training images per second of each way to feed and compile the steps, on this machine.

    python -m benchmarks.throughput --width 0.5 --batch_size 256 --images 4096 --repeats 3

Each way is a `TrainConfig` choice: where augmentation runs (`--augment device`, and `host`,
tf.data, on TensorFlow) and whether the steps are XLA-compiled (`--jit`), and, with the
defaults, the steps without the gradient norms TensorBoard logs (what `--notensorboard`
trains). Each is timed as an epoch of `--images` synthetic images through
the real training input and steps, after an identical untimed epoch (compilation,
autotuning), the device synchronised before the clock stops; the ways alternate `--repeats`
times so that a slow spell of the machine hits all alike, and the median is reported. The
package's defaults per device (`tf_resnet9.config.settings`) follow these figures. Not a
test: the figures depend on the machine, so the JSON records it and the library versions.
"""

from __future__ import annotations

import datetime
import statistics
import sys
import time

import numpy as np
from absl import app, flags

from tf_resnet9 import backends
from tf_resnet9.build import build_training
from tf_resnet9.config.flags import config_from_flags, define_config_flags
from tf_resnet9.config.settings import resolve
from tf_resnet9.data.splits import Splits
from tf_resnet9.outputs.files import write_json_atomic
from tf_resnet9.outputs.results import library_versions
from tf_resnet9.outputs.run_folder import timestamp
from tf_resnet9.training.loop import run_epoch

CONFIG_FLAGS = define_config_flags(
    only=("model", "width", "batch_size", "precision", "steps_per_call", "seed")
)
flags.DEFINE_integer("images", 4096, "Synthetic training images in each timed epoch.")
flags.DEFINE_integer("repeats", 3, "Timed epochs of each way (the median is reported).")
flags.DEFINE_string("out", None, "JSON path. Unset: benchmarks/results/throughput-<time>.json.")
FLAGS = flags.FLAGS


def ways() -> dict[str, dict]:
    """The settings of each way to train, by name."""
    inputs = ["device", "host"] if backends.HOST_AUGMENT else ["device"]
    named = {
        f"augment {augment}, XLA {'on' if jit else 'off'}": {"augment": augment, "jit": jit}
        for augment in inputs
        for jit in (True, False)
    }
    return named | {"the defaults, no grad norms": {"tensorboard": False}}


def epoch_seconds(training, train_input, state) -> tuple[float, object]:
    """Seconds of one epoch (it reads the totals, so the device has finished) and the state."""
    start = time.perf_counter()
    state, _ = run_epoch(training, state, train_input)
    return time.perf_counter() - start, state


def prepare(way: dict, images, labels):
    """(training, input, state after an untimed epoch, settings) of one way."""
    config = config_from_flags(CONFIG_FLAGS, **way)
    settings = resolve(config, len(images), len(images))
    training = build_training(config, settings, Splits.of_arrays((images, labels)), [config.seed])
    train_input, _ = training.inputs()
    _, state = epoch_seconds(training, train_input, training.steps.initial_state())
    return training, train_input, state, settings


def main(argv):
    del argv
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (FLAGS.images, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, FLAGS.images)
    prepared = {name: prepare(way, images, labels) for name, way in ways().items()}
    seconds = {name: [] for name in prepared}
    for _ in range(FLAGS.repeats):
        for name, (training, train_input, state, _) in prepared.items():
            taken, state = epoch_seconds(training, train_input, state)
            prepared[name] = (training, train_input, state, prepared[name][3])
            seconds[name].append(taken)
    settings = next(iter(prepared.values()))[3]
    trained = settings.steps_per_epoch * config_from_flags(CONFIG_FLAGS).batch_size
    rates = {name: trained / statistics.median(s) for name, s in seconds.items()}
    for name, rate in rates.items():
        print(f"{name:40} {rate:10.1f} images/s")
    report = {
        "benchmark": "throughput",
        "command": " ".join(["python -m benchmarks.throughput", *sys.argv[1:]]),
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": {"kind": settings.device.kind, "name": settings.device.name},
        "versions": library_versions(),
        "config": {name: FLAGS[name].value for name in CONFIG_FLAGS}
        | {"precision": settings.precision, "steps_per_call": settings.steps_per_call},
        "images_per_epoch": trained,
        "images_per_s": rates,
        "seconds_each_epoch": seconds,
        "fastest": max(rates, key=rates.get),
    }
    out = FLAGS.out or f"benchmarks/results/throughput-{timestamp()}.json"
    write_json_atomic(out, report)
    print(f"results: {out}")


if __name__ == "__main__":
    app.run(main)
