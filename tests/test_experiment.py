"""`train_and_evaluate` in-process: CIFAR-100, callbacks get every epoch, subsets represent
the data; and a run that never loses its results."""

import io
import json
import sys

import keras
import numpy as np
import pytest

from tests.cifar_files import fake_cifar10, write_folder
from tests.test_train_cli import run_in_process
from tf_resnet9.config import TrainConfig
from tf_resnet9.errors import MissingPackage
from tf_resnet9.experiment import train_and_evaluate
from tf_resnet9.outputs import report
from tf_resnet9.training.records import EpochEnd


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


@pytest.mark.slow
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
    for logged, record in zip(ends, results.epochs):
        # Keras' own callbacks read the record's figures under their names.
        assert {k: logged[k] for k in record.as_dict()} == pytest.approx(record.as_dict())
        end = EpochEnd.of_logs(logged)
        assert end.record == record  # the stored record
        assert end.confusion.shape == (100, 100)
        assert end.confusion.sum() == 100  # every test image once
        assert end.grad_norms.shape == (18, 5)  # 300 // 16 steps, 5 layer groups
    # The test files hold the classes in order, 2 each: a first-100 subset would be classes
    # 0 to 49; the seeded class-balanced subset takes one of each class.
    assert results.data["test_subset"] == {
        "limit": 100,
        "method": "random, class-balanced",
        "seed": 0,
        "per_class": [1] * 100,
    }
    train_counts = results.data["train_subset"]["per_class"]
    assert sum(train_counts) == 300 and max(train_counts) - min(train_counts) <= 1
    names = results.class_names
    assert len(names) == 100 and names[0] == "apple" and names[-1] == "worm"
    assert len(results.per_class_accuracy) == 100
    assert results.confusion_matrix.shape == (100, 100)
    assert 0 <= results.test_accuracy <= results.test_top5_accuracy <= 1
    model = keras.models.load_model(tmp_path / "run" / "resnet9.keras")
    assert model.output.shape[-1] == 100


# A run never loses its results: packages checked first, results.json and the model written
# before the extras, each extra on its own, and a finished run's missing files written again.


@pytest.fixture(scope="module")
def cifar10_dir(tmp_path_factory):
    # 5 x 20 = 100 training images (6 steps of 16), 20 test images.
    return write_folder(tmp_path_factory.mktemp("cifar10"), fake_cifar10(20, 20))


TINY = dict(epochs=1, batch_size=16, width=0.0625, augment="device", tensorboard=False)


def test_a_missing_package_is_named_before_any_data_is_read(monkeypatch, tmp_path):
    for module in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, module, None)  # importing it fails: not installed
    # The data folder does not exist: a data error would come first if the data were read.
    with pytest.raises(MissingPackage, match="matplotlib is not installed: report.png .*"):
        train_and_evaluate(TrainConfig(**TINY), tmp_path / "absent", tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_failing_extra_loses_nothing_else_and_resuming_writes_it(
    capsys, monkeypatch, cifar10_dir, tmp_path
):
    def broken(*args, **kwargs):
        raise RuntimeError("no room on the device")

    monkeypatch.setattr(report, "draw_report", broken)
    workdir = tmp_path / "run"
    flags = ["--epochs=1", "--batch_size=16", "--width=0.0625", "--augment=device"]
    flags += ["--notensorboard", f"--data_dir={cifar10_dir}", f"--workdir={workdir}"]
    status, out, _ = run_in_process(capsys, *flags)
    assert status == 1  # something the run should have written is missing
    assert "error: report.png not written: RuntimeError: no room on the device" in out
    written = {path.name for path in workdir.iterdir()}
    assert {"results.json", "resnet9.keras", "inference.keras", "classes.json"} <= written
    assert "report.png" not in written
    stored = (workdir / "results.json").read_text()
    checkpoint = sorted((workdir / "checkpoints").iterdir())[-1].read_bytes()

    # Resumed once training has finished: only what is missing is written, nothing trains.
    monkeypatch.undo()
    (workdir / "inference.keras").unlink()
    out = io.StringIO()
    again = train_and_evaluate(TrainConfig(**TINY), cifar10_dir, workdir, out=out, resume=True)
    assert again.unwritten == {} and "compiling" not in out.getvalue()
    assert "written again: report.png, inference.keras" in out.getvalue()
    assert (workdir / "report.png").is_file() and (workdir / "inference.keras").is_file()
    assert (workdir / "results.json").read_text() == stored  # untouched
    assert sorted((workdir / "checkpoints").iterdir())[-1].read_bytes() == checkpoint
    assert [r.as_dict() for r in again.epochs] == json.loads(stored)["epochs"]
