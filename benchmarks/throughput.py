r"""Steady-state throughput: the compiled training step, and the tf.data input pipeline.

    python -m benchmarks.throughput --width 1.0 --steps 20 --out benchmarks/results/x.json

Training: synthetic batches (one random batch repeated, so the input costs nothing), the
recipe's model, optimizer and precision; `--warmup_steps` compile and warm up, then `--steps`
are timed and the device is synchronised before the clock stops. Pipeline: one full epoch
of the augmented tf.data pipeline over synthetic uint8 images, after a warm-up epoch. Not a
test: numbers depend on the machine, so the JSON records the device and library versions.
"""

from __future__ import annotations

import dataclasses
import datetime
import time

import numpy as np
import tensorflow as tf
from absl import app, flags

from tf_resnet9 import hardware, pipeline
from tf_resnet9.callbacks import wait_for_device
from tf_resnet9.config import PRECISIONS, TrainConfig
from tf_resnet9.results import library_versions, write_json_atomic
from tf_resnet9.schedule import PiecewiseLinear
from tf_resnet9.training import compile_model

flags.DEFINE_integer("batch_size", 512, "Images per step.")
flags.DEFINE_float("width", 1.0, "Channel multiplier of ResNet9.")
flags.DEFINE_integer("steps", 20, "Timed training steps.")
flags.DEFINE_integer("warmup_steps", 5, "Untimed steps first (compilation, autotuning).")
flags.DEFINE_integer("pipeline_images", 50_000, "Images in the pipeline benchmark's epoch.")
flags.DEFINE_integer("pipeline_epochs", 5, "Timed pipeline epochs (the median is reported).")
flags.DEFINE_enum("precision", None, PRECISIONS, "Unset: the device's default.")
flags.DEFINE_boolean("jit", True, "XLA-compile the training step.")
flags.DEFINE_string("out", None, "JSON path. Unset: benchmarks/results/throughput-<time>.json.")
FLAGS = flags.FLAGS


def training_images_per_s(config: TrainConfig, precision: str, steps: int, warmup: int) -> float:
    """Images per second of the compiled train step on one repeated synthetic batch."""
    model = compile_model(config, precision, PiecewiseLinear([0, 5, 24], [0, 0.4, 0], 97))
    rng = np.random.default_rng(0)
    images = rng.normal(size=(config.batch_size, 32, 32, 3)).astype(np.float32)
    labels = rng.integers(0, 10, config.batch_size).astype(np.int32)
    batches = tf.data.Dataset.from_tensors((images, labels)).repeat()
    model.fit(batches, steps_per_epoch=warmup, epochs=1, shuffle=False, verbose=0)
    wait_for_device(model)
    start = time.perf_counter()
    model.fit(batches, steps_per_epoch=steps, epochs=1, shuffle=False, verbose=0)
    wait_for_device(model)
    return steps * config.batch_size / (time.perf_counter() - start)


def pipeline_images_per_s(count: int, batch_size: int, epochs: int) -> list[float]:
    """Images per second of each of `epochs` epochs of the augmented training pipeline.

    One untimed epoch first (tracing, thread pools, autotuning). Epochs vary (on 2 cores by
    up to 1.5x, with thread scheduling), hence several.
    """
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
    train_rate = training_images_per_s(config, precision, FLAGS.steps, FLAGS.warmup_steps)
    print(f"training step: {train_rate:,.0f} images/s")
    pipeline_rates = pipeline_images_per_s(
        FLAGS.pipeline_images, FLAGS.batch_size, FLAGS.pipeline_epochs
    )
    pipeline_rate = float(np.median(pipeline_rates))
    print(
        f"tf.data pipeline: {pipeline_rate:,.0f} images/s (median of {len(pipeline_rates)} epochs)"
    )
    stamp = datetime.datetime.now(datetime.timezone.utc)
    results = {
        "benchmark": "throughput",
        "command": "python -m benchmarks.throughput "
        + " ".join(
            f"--{name}={FLAGS[name].value}"
            for name in (
                "batch_size",
                "width",
                "steps",
                "warmup_steps",
                "pipeline_images",
                "pipeline_epochs",
                "jit",
            )
        ),
        "date_utc": stamp.isoformat(timespec="seconds"),
        "precision": precision,
        "training_images_per_s": train_rate,
        "pipeline_images_per_s": pipeline_rate,
        "pipeline_images_per_s_each_epoch": pipeline_rates,
        "device": dataclasses.asdict(device),
        "versions": library_versions(),
    }
    out = FLAGS.out or f"benchmarks/results/throughput-{stamp:%Y%m%d-%H%M%S}.json"
    write_json_atomic(out, results)
    print(f"results: {out}")


if __name__ == "__main__":
    app.run(main)
