"""What a run prints: the line that says what trains where (`announce`), the progress of
each epoch (`ProgressLine`, `ProgressTable`: Keras callbacks of the epoch loop,
`tf_resnet9.training.loop`), and the summaries at the end (`summarise`, `summarise_seeds`).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

import keras

from tf_resnet9.config import TrainConfig
from tf_resnet9.config.settings import RunSettings
from tf_resnet9.data import cifar
from tf_resnet9.data.splits import Splits
from tf_resnet9.outputs.results import RunResults
from tf_resnet9.training.records import EpochEnd

QUICK_CHECK = "--width 0.25 --epochs 2 --train_limit 4096"

TABLE_HEADER = "epoch        lr  train loss  train acc  test loss  test acc  epoch s  total s"
VALIDATION_COLUMNS = "  val loss   val acc"  # after "train acc", with a validation set


class ProgressTable(keras.callbacks.Callback):
    """Prints a header, then a row per epoch: the lr of its last step, train (validation)
    and test loss and accuracy, the epoch's time and the training time so far.

    Args:
        out: Text stream (default: stdout at the time of printing).
        validation: Show the validation set's columns.
    """

    def __init__(self, out=None, validation: bool = False):
        super().__init__()
        self.out = out
        self.validation = validation

    def _print(self, text: str) -> None:
        print(text, file=self.out or sys.stdout, flush=True)

    def on_train_begin(self, logs=None):
        header = TABLE_HEADER
        if self.validation:
            at = header.index("  test loss")
            header = header[:at] + VALIDATION_COLUMNS + header[at:]
        self._print(header)

    def on_epoch_end(self, epoch, logs=None):
        r = EpochEnd.of_logs(logs).record
        validation = f"  {r.val_loss:8.4f}  {r.val_acc:8.2%}" if self.validation else ""
        # lr to 3 significant digits: Adam's 1e-3 .. 1e-6 as well as SGD's 0.4
        self._print(
            f"{r.epoch:5d}  {r.lr:8.3g}  {r.train_loss:10.4f}  {r.train_acc:9.2%}{validation}"
            f"  {r.test_loss:9.4f}  {r.test_acc:8.2%}  {r.epoch_time_s:7.1f}  "
            f"{r.training_time_s:7.1f}"
        )


class ProgressLine(keras.callbacks.Callback):
    """Within an epoch, on a terminal: one line, rewritten in place, with the steps done,
    images/s and the time left of the epoch. Off a terminal (a log, CI) it writes nothing.

    It reads no result of the device: the steps counted are those dispatched, which on a
    CPU is those done; on a GPU an epoch is one compiled call, so the line is the table's.

    Args:
        steps_per_epoch: Steps in an epoch.
        batch_size: Images per step.
        out: Text stream (default: stdout at the time of printing).
        every_s: Seconds between rewrites at most.
    """

    def __init__(self, steps_per_epoch: int, batch_size: int, out=None, every_s: float = 0.5):
        super().__init__()
        self.steps_per_epoch, self.batch_size = steps_per_epoch, batch_size
        self.out, self.every_s = out, every_s
        self._shown = False

    def _stream(self):
        return self.out or sys.stdout

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch, self.start, self.last = epoch + 1, time.perf_counter(), 0.0

    def on_train_batch_end(self, batch, logs=None):
        stream, now = self._stream(), time.perf_counter()
        if not stream.isatty() or now - self.last < self.every_s:
            return
        done, elapsed = int(logs["steps"]), now - self.start
        left = elapsed / done * (self.steps_per_epoch - done)
        stream.write(
            f"\repoch {self.epoch}: {done}/{self.steps_per_epoch} steps, "
            f"{done * self.batch_size / elapsed:,.0f} images/s, {left:.0f} s left   "
        )
        stream.flush()
        self.last, self._shown = now, True

    def on_epoch_end(self, epoch, logs=None):
        if self._shown:  # make room for the epoch's row
            self._stream().write("\r\033[K")
            self._shown = False


def announce(config: TrainConfig, settings: RunSettings, splits: Splits, seeds: int, out) -> None:
    """The lines before a run: a CPU's warning, the data, device and what was decided."""
    if settings.device.kind == "cpu":
        print(cpu_warning(config, settings.device.name), file=out)
    split_batches = settings.devices > 1 and not settings.seeds_together
    if split_batches and config.ghost_bn_splits % settings.devices and config.ghost_bn_splits > 1:
        print(
            f"warning: ghost_bn_splits={config.ghost_bn_splits} is not a multiple of the "
            f"{settings.devices} devices: its sub-batches span devices, whose BatchNorm "
            "statistics then need communication at every layer.",
            file=out,
        )
    if settings.stream:
        print(f"training set: streamed from the host each epoch ({settings.placement})", file=out)
    held_out = f", {len(splits.val[1])} validation" if splits.val else ""
    # CIFAR's source is a path or an archive ("folder ..."): name the data set too
    named = f"{config.dataset} from " if isinstance(splits.source, cifar.Source) else ""
    print(
        f"{config.model} by the {config.recipe} recipe; data: {named}{splits.source} "
        f"({len(splits.train[1])} train{held_out}, {len(splits.test[1])} test images); "
        f"device: {settings.device.name}; backend: {settings.backend}; precision: "
        f"{settings.precision}; augmentation: {settings.augment}; XLA: "
        f"{'on' if settings.jit else 'off'}" + _devices_note(settings, seeds),
        file=out,
    )
    if "image_size_from" in splits.read:  # a class folder's or a tfds set's: what was made
        print(read_note(splits.read), file=out)


def read_note(read: dict) -> str:
    """A class folder's or a tfds set's reading in one line: the image size and where it
    came from, what was resized, converted and skipped (results.json's "data" has all)."""
    size = read["image_size"]
    parts = [f"images {size}x{size} ({read['image_size_from']})"]
    for key, what in (("resized", "resized"), ("converted_to_rgb", "converted to RGB")):
        done = read.get(key, {})
        if done.get("count"):
            origin = sorted((done.get("from") or {}).items(), key=lambda kn: (-kn[1], kn[0]))
            whence = ", ".join(f"{k}: {n}" for k, n in origin)  # the most first
            parts.append(f"{done['count']} {what}" + (f" (from {whence})" if whence else ""))
    skipped = read.get("skipped_bad_files", {}).get("count")
    if skipped:
        parts.append(f"{skipped} unreadable or odd files skipped")
    return "read: " + "; ".join(parts)


def _devices_note(settings: RunSettings, seeds: int) -> str:
    if seeds > 1:
        how = "together" if settings.seeds_together else "one after another"
        over = f", split over {settings.devices} devices" if settings.devices > 1 else ""
        return f"; {seeds} seeds {how}{over}"
    if settings.devices > 1:
        return f"; data parallel over {settings.devices} devices"
    return ""


def cpu_warning(config: TrainConfig, cpu: str) -> str:
    """What to say when no GPU is found; the quick-check flags only where none of them was
    changed from the full-size defaults."""
    full_size = (config.width, config.epochs, config.train_limit) == (
        TrainConfig.width,
        TrainConfig.epochs,
        None,
    )
    hint = f" For a quick check: {QUICK_CHECK}." if full_size else ""
    return f"No GPU found: training on the CPU ({cpu}), which is slow.{hint}"


def group_start(seeds: Sequence[int], together: bool, all_seeds: Sequence[int], out) -> None:
    """The line before a group of seeds trains (several seeds only)."""
    if together:
        listed = ", ".join(str(seed) for seed in seeds)
        print(f"seeds {listed} trained together; the progress shown is seed {seeds[0]}'s", file=out)
    elif len(all_seeds) > 1:
        number = list(all_seeds).index(seeds[0]) + 1
        print(f"seed {seeds[0]} ({number} of {len(all_seeds)}), one after another", file=out)


def resuming(path: str, epoch: int, out) -> None:
    print(f"resuming from {path} (epoch {epoch})", file=out)


def compiling(jit: bool, out) -> None:
    print(
        f"compiling the training and evaluation steps{' with XLA' if jit else ''} "
        "(once per run; about a minute on a CPU) ...",
        file=out,
        flush=True,
    )


def compiled(seconds: float, out) -> None:
    print(f"compiled in {seconds:.1f} s; training", file=out, flush=True)


def summarise(results: RunResults, out) -> None:
    """The lines after a run: the test accuracy per class and overall, and the times."""
    print(per_class_table(results.class_names, list(results.per_class_accuracy.values())), file=out)
    # airbench's records are on its own clock: the whitening and the last evaluation count
    airbench = results.config.recipe.startswith("airbench")
    clock = f" | airbench's clock {results.airbench_time_s:.1f} s" if airbench else ""
    print(
        f"test accuracy {results.test_accuracy:.2%} | training "
        f"{results.training_time_s:.1f} s (DAWNBench: preprocessing + training, evaluation "
        f"excluded){clock} | compile {results.compile_time_s:.1f} s | wall "
        f"{results.wall_time_s:.1f} s",
        file=out,
    )


def per_class_table(names, accuracies) -> str:
    """Test accuracy per class, in columns."""
    cells = [
        f"{name[:14]:>14} {'-' if acc is None else f'{acc:6.1%}':>6}"
        for name, acc in zip(names, accuracies)
    ]
    rows = [" ".join(cells[i : i + 5]) for i in range(0, len(cells), 5)]
    return "test accuracy per class:\n" + "\n".join(rows)


def summarise_seeds(runs: Sequence[RunResults], summary: dict, out) -> None:
    """The lines after a run of several seeds: each one's test accuracy, and their spread."""
    for run in runs:
        print(f"seed {run.seed}: test accuracy {run.test_accuracy:.2%}", file=out)
    reached = ""
    if summary["target"] is not None:
        reached = f"; {summary['share_at_target']:.0%} reach {summary['target']:.0%}"
    print(
        f"{summary['runs']} seeds: median test accuracy {summary['median_test_accuracy']:.2%} "
        f"(min {summary['min_test_accuracy']:.2%}, max {summary['max_test_accuracy']:.2%})"
        f"{reached}",
        file=out,
    )


def unwritten(name: str, why: str, out) -> None:
    """An end-of-run file that failed, in one line."""
    print(f"error: {name} not written: {why}", file=out)
