r"""Images per second of the streamed training set (`tf_resnet9.data.streaming`) against the
set placed on the device (`DeviceInput`), on this machine.

    python -m benchmarks.streaming --data_dir DIR --dataset folder --cache_dir CACHE \
        --images 8192 --width 0.25 --batch_size 512 --repeats 3

Two figures per way:
- loader: the batches alone, an epoch of `StreamingInput.epoch` drained on the host (the
  gather and the loader's threads, no training): what the loader can feed. From the set in
  memory and from its memory-mapped copy on disk (`--cache_dir`, which the class-folder
  reader writes; after the first epoch the operating system's page cache holds it, as it
  would on a machine with the memory to spare: the cache is not dropped, other work shares
  this machine).
- training: an epoch of the compiled steps fed by each input, after an untimed epoch
  (compilation), the device synchronised before the clock stops; the ways alternate
  `--repeats` times and the median is reported.

The data: `--train_limit`-style, the first `--images` of a class-balanced subset of the
data set (`load_splits`). Writes the JSON (--out, default benchmarks/results/streaming-
<backend>-<time>.json) with the machine's load before and after, the library versions and
the command.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import statistics
import sys
import time

import numpy as np
from absl import app, flags

from tf_resnet9 import backends
from tf_resnet9.build import build_training
from tf_resnet9.config.flags import config_from_flags, define_config_flags
from tf_resnet9.config.settings import resolve
from tf_resnet9.data.splits import Splits, load_splits
from tf_resnet9.data.streaming import LOADERS, StreamingInput
from tf_resnet9.outputs.files import write_json_atomic
from tf_resnet9.outputs.results import library_versions
from tf_resnet9.outputs.run_folder import timestamp
from tf_resnet9.training.loop import run_epoch

CONFIG_FLAGS = define_config_flags(
    only=("model", "width", "batch_size", "precision", "steps_per_call", "seed")
)
flags.DEFINE_string("data_dir", None, "The data set's folder (see --dataset).")
flags.DEFINE_string("dataset", "folder", "cifar10, cifar100, folder or tfds:NAME.")
flags.DEFINE_string("cache_dir", None, "Where the memory-mapped copy goes (a class folder).")
flags.DEFINE_integer("images", 4096, "Training images per epoch (the loaders: all of them).")
flags.DEFINE_integer("repeats", 3, "Timed training epochs of each way (the median is reported).")
flags.DEFINE_integer("loader_repeats", 5, "Timed loader epochs of each way (the median).")
flags.DEFINE_list("loaders", None, "Loaders to time; unset: grain, and tf.data on TensorFlow.")
flags.DEFINE_boolean("train", True, "Time training epochs too (not only the loaders).")
flags.DEFINE_string("out", None, "JSON path. Unset: benchmarks/results/streaming-<time>.json.")
FLAGS = flags.FLAGS


def loader_seconds(streaming: StreamingInput, number: int) -> float:
    """Seconds to drain epoch `number`'s chunks on the host (no device work)."""
    start = time.perf_counter()
    for images, labels, _ in streaming.epoch(number):
        np.asarray(images), np.asarray(labels)  # a tf.data tensor is read here
    return time.perf_counter() - start


def training_seconds(training, train_input, state) -> tuple[float, object]:
    """Seconds of one training epoch (it reads the totals: the device has finished)."""
    start = time.perf_counter()
    state, _ = run_epoch(training, state, train_input)
    return time.perf_counter() - start, state


def median_rate(images: int, seconds: list[float]) -> float:
    return images / statistics.median(seconds)


def streaming(source, labels, config, run, loader: str) -> StreamingInput:
    return StreamingInput(
        source, labels, config.batch_size, run.steps_per_call, config.seed,
        pad=config.pad, cutout=config.cutout, loader=loader,
    )  # fmt: skip


def time_loaders(train, config, run, loaders) -> tuple[dict, dict, int]:
    """({way: images/s}, {way: seconds of each epoch}, threads) of each loader draining
    epochs of the whole training set, from memory and, where the reader wrote one, from
    the memory-mapped copy on disk."""
    on_disk, labels = train
    sources = {"memory": np.array(on_disk)}
    if isinstance(on_disk, np.memmap):
        sources["disk (memory-mapped)"] = on_disk
    ways = {
        f"{loader}, from {where}": streaming(source, labels, config, run, loader)
        for loader in loaders
        for where, source in sources.items()
    }
    for way in ways.values():
        loader_seconds(way, 1)  # untimed: threads started, pages read once
    times = {name: [] for name in ways}
    for repeat in range(FLAGS.loader_repeats):
        for name, way in ways.items():
            times[name].append(loader_seconds(way, 2 + repeat))
    rates = {name: median_rate(loader_images(train, config), s) for name, s in times.items()}
    for name, rate in rates.items():
        print(f"loader {name:40} {rate:12.1f} images/s")
    return rates, times, next(iter(ways.values())).threads


def loader_images(train, config) -> int:
    """Images in a loader epoch: the last partial batch is dropped."""
    return len(train[1]) // config.batch_size * config.batch_size


def time_training(splits, config, run, loaders) -> tuple[dict, dict]:
    """({way: images/s}, {way: seconds of each epoch}) of training epochs fed by the set in
    memory on the device, and by each loader streaming the set as the reader gave it."""
    on_disk, labels = splits.train
    in_memory = Splits.of_arrays((np.array(on_disk), labels), splits.test)
    training = build_training(config, run, in_memory, [config.seed])
    placed, _ = training.inputs()
    inputs = {"in memory (DeviceInput)": placed} | {
        f"streamed ({loader})": streaming(on_disk, labels, config, run, loader)
        for loader in loaders
    }
    # One state passed along (JAX's compiled calls consume the state they are given).
    state = training.steps.initial_state()
    for train_input in inputs.values():  # untimed: compiles each input's program
        _, state = training_seconds(training, train_input, state)
    times = {name: [] for name in inputs}
    for _ in range(FLAGS.repeats):
        for name, train_input in inputs.items():
            taken, state = training_seconds(training, train_input, state)
            times[name].append(taken)
    images = run.steps_per_epoch * config.batch_size
    rates = {name: median_rate(images, s) for name, s in times.items()}
    for name, rate in rates.items():
        print(f"training {name:38} {rate:12.1f} images/s")
    return rates, times


def main(argv):
    del argv
    loaders = FLAGS.loaders or [
        loader for loader in LOADERS if loader != "tf.data" or backends.NAME == "tensorflow"
    ]
    load_before = os.getloadavg()
    whole = load_splits(FLAGS.data_dir, FLAGS.dataset, cache_dir=FLAGS.cache_dir)
    splits = load_splits(
        FLAGS.data_dir, FLAGS.dataset, train_limit=FLAGS.images, cache_dir=FLAGS.cache_dir
    )
    config = config_from_flags(CONFIG_FLAGS)
    run = resolve(config, len(splits.train[1]), len(splits.test[1]))
    loader_rates, loader_times, threads = time_loaders(whole.train, config, run, loaders)
    in_memory = np.array(splits.train[0])  # a copy in memory, whatever the source gave
    training_rates, training_times = {}, {}
    if FLAGS.train:
        training_rates, training_times = time_training(splits, config, run, loaders)

    report = {
        "benchmark": "streaming",
        "command": " ".join(["python -m benchmarks.streaming", *sys.argv[1:]]),
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": {"kind": run.device.kind, "name": run.device.name},
        "cpu_cores": os.cpu_count(),
        "load_average_1_5_15_min": {"before": load_before, "after": os.getloadavg()},
        "versions": library_versions() | _versions("grain", "pillow"),
        "data": {"loaders": whole.results_record, "training": splits.results_record},
        "config": {name: FLAGS[name].value for name in CONFIG_FLAGS}
        | {"precision": run.precision, "steps_per_call": run.steps_per_call, "jit": run.jit},
        "loader_threads": threads,
        "loader_images_per_epoch": loader_images(whole.train, config),
        "training_images_per_epoch": run.steps_per_epoch * config.batch_size,
        "bytes_per_image": int(np.prod(in_memory.shape[1:])),
        "loader_images_per_s": loader_rates,
        "loader_seconds_each_epoch": loader_times,
        "training_images_per_s": training_rates,
        "training_seconds_each_epoch": training_times,
    }
    out = FLAGS.out or f"benchmarks/results/streaming-{backends.NAME}-{timestamp()}.json"
    write_json_atomic(out, report)
    print(f"results: {out}")


def _versions(*packages: str) -> dict[str, str]:
    found = {}
    for package in packages:
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


if __name__ == "__main__":
    app.run(main)
