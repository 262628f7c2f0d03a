"""The run report (a PNG of the curves and the confusion matrix) and the confusion picture."""

import os

import numpy as np
import pytest
from PIL import Image

from tf_resnet9.data.cifar import class_names
from tf_resnet9.outputs.report import confusion_image, draw_report
from tf_resnet9.training.records import EpochEnd, EpochRecord

CIFAR10_NAMES = class_names("cifar10")
GROUPS = ("prep", "layer1", "layer2", "layer3", "linear")


def fake_epoch_end(epoch: int, classes: int = 10, steps: int = 4) -> EpochEnd:
    """What `tf_resnet9.training.loop` hands its callbacks for 1-based `epoch`, made up."""
    rng = np.random.default_rng(epoch)
    # Mostly right, more so every epoch: a diagonal of ~90 images per class, a few errors.
    confusion = rng.integers(0, 4, size=(classes, classes)).astype(np.int64)
    np.fill_diagonal(confusion, 80 + 5 * epoch)
    record = EpochRecord(
        epoch=epoch,
        lr=0.4 / epoch,
        train_loss=2.0 / epoch,
        train_acc=1.0 - 0.5 / epoch,
        test_loss=2.2 / epoch,
        test_acc=1.0 - 0.6 / epoch,
        test_top5_acc=1.0 - 0.1 / epoch,
        epoch_time_s=1.0,
        training_time_s=float(epoch),
    )
    norms = rng.uniform(0.1, 2.0, size=(steps, len(GROUPS))).astype(np.float32)
    return EpochEnd(record, confusion, norms, 0.1 * epoch, 0.0, dict, lambda: None)


def fake_epoch_logs(epoch: int, classes: int = 10, steps: int = 4) -> dict:
    """The Keras logs `tf_resnet9.training.loop` gives `on_epoch_end`, made up."""
    return fake_epoch_end(epoch, classes, steps).logs()


def draw(path, class_names, epochs: int = 3) -> None:
    ends = [fake_epoch_end(epoch, len(class_names)) for epoch in range(1, epochs + 1)]
    draw_report([end.record for end in ends], ends[-1].confusion, class_names, path)


def test_report_is_a_png(tmp_path):
    path = tmp_path / "report.png"
    draw(str(path), CIFAR10_NAMES)
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
    draw(str(path), names)
    with Image.open(path) as image:
        width, height = image.size
    # 100 names down the side need more room than 10: taller than the 10-class report.
    assert height > 2000 and width > height


def test_report_without_epochs_writes_nothing(tmp_path):
    with pytest.raises(ValueError, match="records is empty"):
        draw_report([], np.eye(10), CIFAR10_NAMES, tmp_path / "report.png")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("classes", [10, 100])
def test_confusion_image_is_rgb_uint8(classes):
    names = [f"c{index}" for index in range(classes)]
    image = confusion_image(fake_epoch_end(1, classes).confusion, names)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert min(image.shape[:2]) >= 300
    # Not blank: the Blues colour map puts dark pixels on the diagonal.
    assert image.min() < 100 and image.max() == 255


def test_confusion_image_rejects_a_mismatched_matrix():
    with pytest.raises(ValueError, match=r"confusion has shape \(3, 3\).*10 class_names"):
        confusion_image(np.eye(3, dtype=np.int64), CIFAR10_NAMES)


def test_class_names_must_match_the_matrix(tmp_path):
    records = [fake_epoch_end(1).record]
    with pytest.raises(ValueError, match=r"confusion has shape \(3, 3\), but there are 10"):
        draw_report(records, np.eye(3), CIFAR10_NAMES, tmp_path / "report.png")
