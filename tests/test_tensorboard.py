"""The TensorBoard callback: the tags and steps in its event files, read back.

The writer is tensorboardX on both backends; the event files are read with the Event
protocol buffer of tensorboard where it is installed (else tensorboardX's own), so the same
checks run in both test environments.
"""

import glob
import io
import os
import struct
import sys

import numpy as np
import pytest
from PIL import Image

from tests.test_report import CIFAR10_NAMES, GROUPS, fake_epoch_end, fake_epoch_logs
from tf_resnet9.models.resnet9 import resnet9
from tf_resnet9.outputs.report import confusion_image
from tf_resnet9.outputs.tensorboard import (
    EPOCH_SCALARS,
    PACKAGE,
    EventFile,
    TensorBoard,
    write_weight_histograms,
)

STEPS_PER_EPOCH = 4
GRAD_LOG_EVERY = 3


def event_proto():
    """The Event message class: tensorboard's where installed, else tensorboardX's."""
    try:
        from tensorboard.compat.proto import event_pb2
    except ImportError:
        event_pb2 = pytest.importorskip("tensorboardX.proto.event_pb2")
    return event_pb2.Event


def read_records(path: str):
    """The records of a TFRecord file: u64 length, u32 its CRC, the data, u32 its CRC."""
    with open(path, "rb") as file:
        data = file.read()
    position = 0
    while position < len(data):
        (length,) = struct.unpack("<Q", data[position : position + 8])
        yield data[position + 12 : position + 12 + length]
        position += 12 + length + 4


def summary_value(value) -> tuple[str, object]:
    """(kind, content) of a summary value as tensorboardX writes it: scalars give their
    float32 value, images their PNG bytes, histograms their count."""
    field = value.WhichOneof("value")
    if field == "simple_value":
        return "scalar", np.float32(value.simple_value)
    if field == "image":
        return "image", value.image.encoded_image_string
    if field == "histo":
        return "histogram", int(value.histo.num)
    raise AssertionError(f"unexpected summary for {value.tag!r}: {field}")


def read_events(logdir) -> dict[str, dict[int, tuple[str, object]]]:
    """tag -> {step: (kind, content)} of every summary in the event files in `logdir`."""
    event_class = event_proto()
    paths = glob.glob(os.path.join(logdir, "events.out.tfevents.*"))
    assert paths and all(os.path.getsize(path) > 0 for path in paths)
    tags = {}
    for path in paths:
        for record in read_records(path):
            event = event_class.FromString(record)
            for value in event.summary.value:
                assert event.step not in tags.get(value.tag, {}), "written twice"
                tags.setdefault(value.tag, {})[event.step] = summary_value(value)
    return tags


@pytest.fixture(scope="module")
def model():
    return resnet9(width=0.0625)


@pytest.fixture
def callback(tmp_path, model):
    pytest.importorskip(PACKAGE)
    callback = TensorBoard(
        str(tmp_path), CIFAR10_NAMES, GROUPS, GRAD_LOG_EVERY, steps_per_epoch=STEPS_PER_EPOCH
    )
    callback.set_model(model)
    return callback


def test_two_epochs_give_the_tags_at_their_steps(tmp_path, model, callback):
    ends = {epoch: fake_epoch_end(epoch, steps=STEPS_PER_EPOCH) for epoch in (1, 2)}
    callback.on_train_begin()
    callback.on_epoch_end(0, ends[1].logs())
    # Flushed at the end of the epoch: epoch 1 is readable while training goes on.
    assert read_events(tmp_path)["loss/train"].keys() == {1}
    callback.on_epoch_end(1, ends[2].logs())
    callback.on_train_end()
    write_weight_histograms(str(tmp_path), model, 2)
    tags = read_events(tmp_path)

    # Scalars are stored as float32: exactly the float32 rounding of the logged value.
    scalars = {tag: field for tag, field in EPOCH_SCALARS.items() if "val" not in tag}
    for tag, field in scalars.items():
        logged = {e: ("scalar", np.float32(getattr(ends[e].record, field))) for e in (1, 2)}
        assert tags[tag] == logged, tag
    assert tags["loss/train"] == {1: ("scalar", 2.0), 2: ("scalar", 1.0)}

    # Global steps 1..8; every 3rd is logged: step 3 (epoch 1, row 2), step 6 (epoch 2, row 1).
    for column, group in enumerate(GROUPS):
        assert tags[f"grad_norm/{group}"] == {
            3: ("scalar", ends[1].grad_norms[2, column]),
            6: ("scalar", ends[2].grad_norms[1, column]),
        }

    expected_shape = confusion_image(ends[1].confusion, CIFAR10_NAMES).shape
    assert tags["confusion_matrix"].keys() == {1, 2}
    for kind, png in tags["confusion_matrix"].values():
        with Image.open(io.BytesIO(png)) as image:
            assert kind == "image" and np.asarray(image.convert("RGB")).shape == expected_shape

    # Histograms of the weights at the last epoch, counting every value of the variable.
    weights = {f"weights/{v.path}": int(np.prod(v.shape)) for v in model.trainable_variables}
    for tag, size in weights.items():
        assert tags[tag] == {2: ("histogram", size)}, tag

    grad_tags = {f"grad_norm/{group}" for group in GROUPS}
    assert tags.keys() == set(scalars) | grad_tags | {"confusion_matrix"} | set(weights)


def test_tensorboard_itself_reads_the_summaries(tmp_path, model, callback):
    """TensorBoard's own loader files each tag under the plugin that draws it."""
    accumulator = pytest.importorskip(
        "tensorboard.backend.event_processing.plugin_event_accumulator"
    )
    callback.on_train_begin()
    callback.on_epoch_end(0, fake_epoch_logs(1, steps=STEPS_PER_EPOCH))
    callback.on_train_end()
    write_weight_histograms(str(tmp_path), model, 1)
    events = accumulator.EventAccumulator(str(tmp_path))
    events.Reload()
    plugins = events.PluginTagToContent
    assert set(plugins("scalars")) >= {"loss/train", "learning_rate", "grad_norm/layer1"}
    assert set(plugins("images")) == {"confusion_matrix"}
    assert "weights/prep_conv/kernel" in set(plugins("histograms"))


def test_grad_norms_of_another_shape_are_rejected(callback):
    callback.on_train_begin()
    logs = fake_epoch_logs(1, steps=STEPS_PER_EPOCH + 1)
    with pytest.raises(ValueError, match=r"grad_norms has shape \(5, 5\).*\(up to 4, 5\)"):
        callback.on_epoch_end(0, logs)


@pytest.mark.parametrize("argument", ["grad_log_every", "steps_per_epoch"])
def test_step_counts_below_one_are_rejected(tmp_path, argument):
    counts = {"grad_log_every": 1, "steps_per_epoch": 1} | {argument: 0}
    with pytest.raises(ValueError, match=f"{argument}=0 is invalid"):
        TensorBoard(str(tmp_path), CIFAR10_NAMES, GROUPS, **counts)


def test_missing_writer_package_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, PACKAGE, None)  # makes importing it fail
    with pytest.raises(ImportError, match=f"pip install {PACKAGE}"):
        EventFile(str(tmp_path))


def test_two_writers_opened_in_the_same_second_keep_both_files(tmp_path, monkeypatch, model):
    # tensorboardX names an event file by the second and the host: the weight histograms'
    # writer, opened right after the epochs' was closed, once truncated the epochs' file.
    pytest.importorskip(PACKAGE)
    import time

    monkeypatch.setattr(time, "time", lambda: 1_800_000_000.25)  # one second for both
    epochs = EventFile(str(tmp_path))
    epochs.scalar("loss/train", 2.0, 1)
    epochs.close()
    write_weight_histograms(str(tmp_path), model, 1)
    tags = read_events(tmp_path)
    assert tags["loss/train"] == {1: ("scalar", 2.0)}
    assert any(kind == "histogram" for steps in tags.values() for kind, _ in steps.values())
