r"""Steady-state throughput of the compiled training steps and of the tf.data pipeline.

    python -m benchmarks.throughput --width 1.0 --steps 10 --out benchmarks/results/x.json

Training, two ways, each one compiled call of `--steps` steps on synthetic data, timed after
an identical untimed call (compilation, autotuning) and with the device synchronised before
the clock stops:
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

from tf_resnet9 import backends, hardware
from tf_resnet9.config import PRECISIONS, TrainConfig
from tf_resnet9.inputs import DeviceInput
from tf_resnet9.results import library_versions, write_json_atomic
from tf_resnet9.schedule import PiecewiseLinear
from tf_resnet9.trainer import Trainer
from tf_resnet9.training import build_trainer

flags.DEFINE_integer("batch_size", 512, "Images per step.")
flags.DEFINE_float("width", 1.0, "Channel multiplier of ResNet9.")
flags.DEFINE_integer("steps", 10, "Steps in the timed call.")
flags.DEFINE_integer("pipeline_images", 50_000, "Images in the pipeline benchmark's epoch.")
flags.DEFINE_integer("pipeline_epochs", 5, "Timed pipeline epochs (the median is reported).")
flags.DEFINE_enum("precision", None, PRECISIONS, "Unset: the device's default.")
flags.DEFINE_boolean("jit", True, "XLA-compile the training steps.")
flags.DEFINE_string("out", None, "JSON path. Unset: benchmarks/results/throughput-<time>.json.")
FLAGS = flags.FLAGS


def timed_call(trainer: Trainer, step_fn, args) -> float:
    """Seconds of step_fn(state, *args), called after an identical untimed call."""
    backends.wait(trainer.run_discarding_updates(step_fn, *args))
    start = time.perf_counter()
    backends.wait(step_fn(trainer.initial_state(), *args))
    return time.perf_counter() - start


def training_images_per_s(config: TrainConfig, precision: str, steps: int) -> dict[str, float]:
    """Images per second of the compiled steps, on prepared batches and augmenting on device."""
    batch = config.batch_size
    schedule = PiecewiseLinear([0, 5, 24], [0, 0.4, 0], steps_per_epoch=97)
    trainer = build_trainer(config, precision, schedule)
    rng = np.random.default_rng(0)
    prepared = (
        keras.ops.convert_to_tensor(rng.normal(size=(steps, batch, 32, 32, 3)).astype("float32")),
        keras.ops.convert_to_tensor(rng.integers(0, 10, (steps, batch)).astype("int32")),
    )
    images = rng.integers(0, 256, (steps * batch, 32, 32, 3), dtype=np.uint8)
    device_input = DeviceInput(images, images[:, 0, 0, 0] % 10, batch, steps, seed=0)
    (device_args,) = list(device_input.epoch())
    return {
        "prepared_batches": steps * batch / timed_call(trainer, trainer.host_steps, prepared),
        "device_augmentation": steps
        * batch
        / timed_call(trainer, trainer.device_steps, device_args),
    }


def pipeline_images_per_s(count: int, batch_size: int, epochs: int) -> list[float]:
    """Images per second of each of `epochs` epochs of the augmented tf.data pipeline.

    One untimed epoch first (tracing, thread pools, autotuning). Epochs vary (on 2 cores by
    up to 1.5x, with thread scheduling), hence several.
    """
    from tf_resnet9 import pipeline

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)
    dataset = pipeline.train_dataset(images, rng.integers(0, 10, count), batch_size, seed=0)
    for _ in dataset:
        pass
    rates = []
    for _ in range(epochs):
        start = time.perf_counter()
        produced = sum(int(labels.shape[0]) for _, labels in dataset)
        rates.append(produced / (time.perf_counter() - start))
    return rates


def main(argv):
    del argv
    device = hardware.current_device()
    precision = FLAGS.precision or hardware.default_precision(device)
    config = TrainConfig(batch_size=FLAGS.batch_size, width=FLAGS.width, jit=FLAGS.jit)
    results = {
        "benchmark": "throughput",
        "command": "python -m benchmarks.throughput "
        + " ".join(
            f"--{name}={FLAGS[name].value}"
            for name in (
                "batch_size",
                "width",
                "steps",
                "pipeline_images",
                "pipeline_epochs",
                "jit",
            )
        ),
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "precision": precision,
        "training_images_per_s": training_images_per_s(config, precision, FLAGS.steps),
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
