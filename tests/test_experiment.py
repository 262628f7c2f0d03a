"""`train_and_evaluate` in-process: callbacks get every epoch, subsets represent the data."""

import io

import keras
import numpy as np
import pytest

from tests.cifar_files import write_folder
from tf_resnet9.config import TrainConfig
from tf_resnet9.experiment import train_and_evaluate


class Recorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.events = []

    def on_train_begin(self, logs=None):
        self.events.append(("train_begin", None))

    def on_epoch_begin(self, epoch, logs=None):
        self.events.append(("epoch_begin", epoch))

    def on_epoch_end(self, epoch, logs=None):
        self.events.append(("epoch_end", epoch, dict(logs)))

    def on_train_end(self, logs=None):
        self.events.append(("train_end", dict(logs)))


@pytest.fixture(scope="module")
def class_sorted_data(tmp_path_factory):
    """CIFAR-10 files sorted by class, as some copies are: 5 x 40 training images, 50 test."""
    rng = np.random.default_rng(0)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)]:
        labels = np.sort(rng.integers(0, 10, 40))
        batches[name] = (rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8), labels)
    labels = np.repeat(np.arange(10), 5)
    batches["test_batch"] = (rng.integers(0, 256, (50, 32, 32, 3), dtype=np.uint8), labels)
    return write_folder(tmp_path_factory.mktemp("sorted"), batches)


def test_callbacks_see_every_epoch_and_subsets_are_balanced(class_sorted_data, tmp_path):
    config = TrainConfig(
        epochs=2, batch_size=16, width=0.0625, augment="device", train_limit=64, test_limit=20
    )
    recorder = Recorder()
    results = train_and_evaluate(
        config, class_sorted_data, tmp_path / "run", out=io.StringIO(), callbacks=(recorder,)
    )
    kinds = [event[0] for event in recorder.events]
    assert kinds == ["train_begin"] + ["epoch_begin", "epoch_end"] * 2 + ["train_end"]
    assert [event[1] for event in recorder.events if event[0] == "epoch_begin"] == [0, 1]
    ends = [event[2] for event in recorder.events if event[0] == "epoch_end"]
    for logged, record in zip(ends, results["epochs"]):
        assert logged == pytest.approx(record)  # the epoch's record, as stored
    # The test files hold classes 0..9 in order, 5 each: a first-20 subset would be
    # classes 0 to 3 only; the seeded class-balanced subset takes 2 of each class.
    test_subset = results["data"]["test_subset"]
    assert test_subset == {
        "limit": 20,
        "method": "random, class-balanced",
        "seed": 0,
        "per_class": [2] * 10,
    }
    train_counts = results["data"]["train_subset"]["per_class"]
    assert sum(train_counts) == 64 and results["data"]["train_images"] == 64
    assert max(train_counts) - min(train_counts) <= 1
    assert results["steps_per_epoch"] == 4
