"""`train_and_evaluate` in-process: CIFAR-100, callbacks get every epoch, subsets represent
the data."""

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
def class_sorted_cifar100(tmp_path_factory):
    """CIFAR-100 files sorted by class, as some copies are: 400 training images (4 of each
    class), 200 test images (2 of each)."""
    rng = np.random.default_rng(0)
    batches = {
        name: (rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8), np.repeat(range(100), per))
        for name, count, per in (("train", 400, 4), ("test", 200, 2))
    }
    return write_folder(tmp_path_factory.mktemp("sorted"), batches, dataset="cifar100")


def test_a_cifar100_run_its_callbacks_and_balanced_subsets(class_sorted_cifar100, tmp_path):
    config = TrainConfig(
        dataset="cifar100",
        epochs=2,
        batch_size=16,
        width=0.0625,
        augment="device",
        train_limit=300,
        test_limit=100,
    )
    recorder = Recorder()
    results = train_and_evaluate(
        config, class_sorted_cifar100, tmp_path / "run", out=io.StringIO(), callbacks=(recorder,)
    )
    kinds = [event[0] for event in recorder.events]
    assert kinds == ["train_begin"] + ["epoch_begin", "epoch_end"] * 2 + ["train_end"]
    assert [event[1] for event in recorder.events if event[0] == "epoch_begin"] == [0, 1]
    ends = [event[2] for event in recorder.events if event[0] == "epoch_end"]
    for logged, record in zip(ends, results["epochs"]):
        assert {k: logged[k] for k in record} == pytest.approx(record)  # the stored record
        assert logged["confusion_matrix"].shape == (100, 100)
        assert logged["confusion_matrix"].sum() == 100  # every test image once
        assert logged["grad_norms"].shape == (18, 5)  # 300 // 16 steps, 5 layer groups
    # The test files hold the classes in order, 2 each: a first-100 subset would be classes
    # 0 to 49; the seeded class-balanced subset takes one of each class.
    assert results["data"]["test_subset"] == {
        "limit": 100,
        "method": "random, class-balanced",
        "seed": 0,
        "per_class": [1] * 100,
    }
    train_counts = results["data"]["train_subset"]["per_class"]
    assert sum(train_counts) == 300 and max(train_counts) - min(train_counts) <= 1
    names = results["class_names"]
    assert len(names) == 100 and names[0] == "apple" and names[-1] == "worm"
    assert len(results["per_class_accuracy"]) == 100
    assert np.asarray(results["confusion_matrix"]).shape == (100, 100)
    assert 0 <= results["test_accuracy"] <= results["test_top5_accuracy"] <= 1
    model = keras.models.load_model(tmp_path / "run" / "resnet9.keras")
    assert model.output.shape[-1] == 100
