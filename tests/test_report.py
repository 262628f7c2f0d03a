"""The run report: a PNG written once, at the end of training, and the confusion picture."""

import os

import numpy as np
import pytest
from PIL import Image

from tf_resnet9.data import class_names
from tf_resnet9.report import RunReport, confusion_image

CIFAR10_NAMES = class_names("cifar10")
GROUPS = ("prep", "layer1", "layer2", "layer3", "linear")


def fake_epoch_logs(epoch: int, classes: int = 10, steps: int = 4) -> dict:
    """The logs `tf_resnet9.loop` gives `on_epoch_end` for 1-based `epoch`, made up."""
    rng = np.random.default_rng(epoch)
    # Mostly right, more so every epoch: a diagonal of ~90 images per class, a few errors.
    confusion = rng.integers(0, 4, size=(classes, classes)).astype(np.int64)
    np.fill_diagonal(confusion, 80 + 5 * epoch)
    return {
        "epoch": epoch,
        "lr": 0.4 / epoch,
        "train_loss": 2.0 / epoch,
        "train_acc": 1.0 - 0.5 / epoch,
        "test_loss": 2.2 / epoch,
        "test_acc": 1.0 - 0.6 / epoch,
        "test_top5_acc": 1.0 - 0.1 / epoch,
        "epoch_time_s": 1.0,
        "training_time_s": float(epoch),
        "confusion_matrix": confusion,
        "grad_norms": rng.uniform(0.1, 2.0, size=(steps, len(GROUPS))).astype(np.float32),
        "eval_time_s": 0.1 * epoch,
        "hooks_time_s": 0.0,
    }


def run_report(path, class_names, epochs: int = 3) -> RunReport:
    """Drives a RunReport through `epochs` fake epochs, as the loop would."""
    report = RunReport(path, class_names)
    report.on_train_begin()
    for epoch in range(1, epochs + 1):
        report.on_epoch_end(epoch - 1, fake_epoch_logs(epoch, len(class_names)))
        assert not os.listdir(os.path.dirname(path)), "written before the end of training"
    report.on_train_end(fake_epoch_logs(epochs, len(class_names)))
    return report


def test_report_is_a_png_written_at_train_end_only(tmp_path):
    path = tmp_path / "report.png"
    run_report(str(path), CIFAR10_NAMES)
    # Only the report: the temporary file it was saved to has been renamed.
    assert os.listdir(tmp_path) == ["report.png"]
    with Image.open(path) as image:
        assert image.format == "PNG"
        width, height = image.size
    # Three plots beside a confusion matrix, at 150 dpi: wider than tall, ~2000 x 1100.
    assert 1200 <= width <= 3000 and 700 <= height <= 2000 and width > height


def test_report_with_100_classes_has_room_for_their_names(tmp_path):
    path = tmp_path / "report.png"
    names = [f"class_{index:02d}" for index in range(100)]
    run_report(str(path), names)
    with Image.open(path) as image:
        width, height = image.size
    # 100 names down the side need more room than 10: taller than the 10-class report.
    assert height > 2000 and width > height


def test_report_without_epochs_writes_nothing(tmp_path):
    report = RunReport(str(tmp_path / "report.png"), CIFAR10_NAMES)
    report.on_train_begin()
    report.on_train_end()
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("classes", [10, 100])
def test_confusion_image_is_rgb_uint8(classes):
    names = [f"c{index}" for index in range(classes)]
    image = confusion_image(fake_epoch_logs(1, classes)["confusion_matrix"], names)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert min(image.shape[:2]) >= 300
    # Not blank: the Blues colour map puts dark pixels on the diagonal.
    assert image.min() < 100 and image.max() == 255


def test_confusion_image_rejects_a_mismatched_matrix():
    with pytest.raises(ValueError, match=r"confusion has shape \(3, 3\).*10 class_names"):
        confusion_image(np.eye(3, dtype=np.int64), CIFAR10_NAMES)


def test_empty_class_names_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="class_names=.*empty"):
        RunReport(str(tmp_path / "report.png"), [])
