r"""Steady-state throughput of the compiled training steps and of the tf.data pipeline.

    python -m benchmarks.throughput --width 1.0 --steps 10 --out benchmarks/results/x.json

Training, two ways, each an "epoch" of `--steps` steps on synthetic data in compiled calls of
`--steps_per_call`, timed after an identical untimed epoch (compilation, autotuning) and
with the device synchronised before the clock stops:
  - `prepared batches`: images already normalised and augmented (input costs nothing);
  - `device augmentation`: uint8 images on the device, shuffled batches gathered, cropped,
    flipped and cut out inside the compiled step, as `--augment device` trains.
Pipeline (TensorFlow only): epochs of the augmented tf.data pipeline over synthetic uint8
images, after an untimed epoch; the median is reported. Not a test: the figures depend on
the machine, so the JSON records the device and the library versions.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.util
import time

import keras
import numpy as np
from absl import app, flags

from tf_resnet9 import hardware
from tf_resnet9.builders import build_steps, learning_rate
from tf_resnet9.config import PRECISIONS, TrainConfig
from tf_resnet9.inputs import DeviceInput, chunk_lengths
from tf_resnet9.loop import run_epoch
from tf_resnet9.results import library_versions, write_json_atomic
from tf_resnet9.settings import default_steps_per_call
from tf_resnet9.steps import CompiledSteps

flags.DEFINE_integer("batch_size", 512, "Images per step.")
flags.DEFINE_float("width", 1.0, "Channel multiplier of ResNet9.")
flags.DEFINE_integer("steps", 10, "Steps in the timed epoch.")
flags.DEFINE_integer(
    "steps_per_call", None, "Steps per compiled call. Unset: as training (--steps on a GPU)."
)
flags.DEFINE_integer("repeats", 1, "Timed epochs of each kind of training (median).")
flags.DEFINE_integer("pipeline_images", 50_000, "Images in the pipeline benchmark's epoch.")
flags.DEFINE_integer("pipeline_epochs", 5, "Timed pipeline epochs (the median is reported).")
flags.DEFINE_enum("precision", None, PRECISIONS, "Unset: the device's default.")
flags.DEFINE_boolean("jit", True, "XLA-compile the training steps.")
flags.DEFINE_string("out", None, "JSON path. Unset: benchmarks/results/throughput-<time>.json.")
FLAGS = flags.FLAGS


class PreparedInput:
    """Host-path input whose batches cost nothing: the same random batches every epoch."""

    def __init__(self, steps: int, batch_size: int, steps_per_call: int):
        rng = np.random.default_rng(0)
        self.steps, self.steps_per_call = steps, steps_per_call
        self.chunks = [
            (
                keras.ops.convert_to_tensor(
                    rng.normal(size=(length, batch_size, 32, 32, 3)).astype("float32")
                ),
                keras.ops.convert_to_tensor(
                    rng.integers(0, 10, (length, batch_size)).astype("int32")
                ),
            )
            for length in chunk_lengths(steps, steps_per_call)
        ]

    @staticmethod
    def step_fn(steps: CompiledSteps):
        return steps.host_steps

    def epoch(self, number: int):
        del number  # the same batches every epoch
        yield from self.chunks


def epoch_seconds(compiled: CompiledSteps, train_input) -> float:
    """Seconds of an epoch of `train_input`, after an untimed one (compilation, autotuning)."""
    state, _ = run_epoch(compiled, compiled.initial_state(), train_input)
    start = time.perf_counter()
    run_epoch(compiled, state, train_input)  # reads the totals: waits for the device
    return time.perf_counter() - start


def training_images_per_s(
    config: TrainConfig, precision: str, steps: int, steps_per_call: int
) -> dict[str, float]:
    """Images per second of the compiled steps: on prepared batches, augmenting on the
    device, and on prepared batches without the gradient norms TensorBoard logs (what
    --notensorboard runs). The three alternate `repeats` times; the median of each."""
    batch = config.batch_size
    schedule = learning_rate(config, steps_per_epoch=97)  # the recipe's, as in a full run
    compiled = build_steps(config, precision, schedule)
    without_norms = build_steps(dataclasses.replace(config, tensorboard=False), precision, schedule)
    images = np.random.default_rng(0).integers(0, 256, (steps * batch, 32, 32, 3), np.uint8)
    prepared = PreparedInput(steps, batch, steps_per_call)
    runs = {
        "prepared_batches": (compiled, prepared),
        "device_augmentation": (
            compiled,
            DeviceInput(images, images[:, 0, 0, 0] % 10, batch, steps_per_call, seed=0),
        ),
        "prepared_batches_without_grad_norms": (without_norms, prepared),
    }
    rates = {name: [] for name in runs}
    for _ in range(FLAGS.repeats):  # alternating: a slow spell of the machine hits all alike
        for name, (steps_fn, train_input) in runs.items():
            rates[name].append(steps * batch / epoch_seconds(steps_fn, train_input))
    return {name: float(np.median(values)) for name, values in rates.items()}


def pipeline_images_per_s(count: int, batch_size: int, epochs: int) -> list[float]:
    """Images per second of each of `epochs` epochs of the augmented tf.data pipeline.

    One untimed epoch first (tracing, thread pools, autotuning). Epochs vary (on 2 cores by
    up to 1.5x, with thread scheduling), hence several.
    """
    from tf_resnet9 import pipeline

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)
    train = pipeline.TrainPipeline(images, rng.integers(0, 10, count), batch_size)
    for _ in train.epoch(0):
        pass
    rates = []
    for seed in range(1, epochs + 1):
        start = time.perf_counter()
        produced = sum(int(labels.shape[0]) for _, labels in train.epoch(seed))
        rates.append(produced / (time.perf_counter() - start))
    return rates


def main(argv):
    del argv
    device = hardware.current_device()
    precision = FLAGS.precision or hardware.default_precision(device)
    config = TrainConfig(batch_size=FLAGS.batch_size, width=FLAGS.width, jit=FLAGS.jit)
    steps_per_call = FLAGS.steps_per_call or default_steps_per_call("device", device, FLAGS.steps)
    results = {
        "benchmark": "throughput",
        "command": "python -m benchmarks.throughput "
        + " ".join(
            f"--{name}={FLAGS[name].value}"
            for name in (
                "batch_size",
                "width",
                "steps",
                "steps_per_call",
                "pipeline_images",
                "pipeline_epochs",
                "repeats",
                "jit",
            )
        ),
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "precision": precision,
        "steps_per_call": steps_per_call,
        "training_images_per_s": training_images_per_s(
            config, precision, FLAGS.steps, steps_per_call
        ),
    }
    for mode, rate in results["training_images_per_s"].items():
        print(f"training, {mode.replace('_', ' ')}: {rate:,.0f} images/s")
    if keras.backend.backend() == "tensorflow" and importlib.util.find_spec("tensorflow"):
        rates = pipeline_images_per_s(
            FLAGS.pipeline_images, FLAGS.batch_size, FLAGS.pipeline_epochs
        )
        results["pipeline_images_per_s"] = float(np.median(rates))
        results["pipeline_images_per_s_each_epoch"] = rates
        print(f"tf.data pipeline: {results['pipeline_images_per_s']:,.0f} images/s (median)")
    results |= {"device": dataclasses.asdict(device), "versions": library_versions()}
    out = FLAGS.out or f"benchmarks/results/throughput-{results['date_utc']}.json"
    write_json_atomic(out, results)
    print(f"results: {out}")


if __name__ == "__main__":
    app.run(main)
