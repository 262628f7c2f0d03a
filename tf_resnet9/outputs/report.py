"""A picture of a finished run: loss, accuracy and learning rate per epoch, and the last
epoch's confusion matrix, written as one PNG (`draw_report`), and the confusion matrix
alone as a picture for TensorBoard (`confusion_image`).

Matplotlib is imported inside the functions that draw: it takes about a second to import,
and the command line should not pay for it unless it draws.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from tf_resnet9.outputs.files import write_atomic
from tf_resnet9.training.records import EpochRecord

PACKAGE = "matplotlib"  # what drawing needs

# Up to this many classes the confusion matrix shows each cell's count; beyond it the
# digits no longer fit in a readable cell.
MAX_CLASSES_WITH_COUNTS = 10
# Each class gets this much of the confusion matrix's side (inches), so that its name fits
# beside its row at the font size below; 10 classes need the minimum side instead.
INCHES_PER_CLASS = 0.13
MIN_CONFUSION_INCHES = 5.5
# Pixels per inch: the saved report is for reading zoomed in (the 5-point names of 100
# classes need 150); the TensorBoard picture, one per epoch, stays smaller.
REPORT_DPI = 150
IMAGE_DPI = 100


def _confusion_inches(classes: int) -> float:
    return max(MIN_CONFUSION_INCHES, INCHES_PER_CLASS * classes)


def _label_fontsize(classes: int) -> float:
    # 9 points for CIFAR-10's names; smaller for many classes, to fit INCHES_PER_CLASS.
    return 9.0 if classes <= MAX_CLASSES_WITH_COUNTS else 5.0


def _check_confusion(confusion, class_names: Sequence[str]) -> np.ndarray:
    confusion = np.asarray(confusion)
    classes = len(class_names)
    if confusion.shape != (classes, classes):
        raise ValueError(
            f"confusion has shape {confusion.shape}, but there are {classes} class_names: "
            f"it must be ({classes}, {classes}), rows the true class."
        )
    return confusion


def _draw_confusion(figure, ax, confusion: np.ndarray, class_names: Sequence[str]) -> None:
    """Draws the confusion matrix on `ax`, rows the true class, with a colour bar."""
    from matplotlib.colors import PowerNorm
    from matplotlib.ticker import MaxNLocator

    classes = len(class_names)
    fontsize = _label_fontsize(classes)
    # A square-root colour scale: on a linear one the diagonal (hundreds of images) washes
    # out the errors (tens), which are what the picture is for.
    image = ax.imshow(
        confusion, cmap="Blues", norm=PowerNorm(0.5, vmin=0, vmax=max(int(confusion.max()), 1))
    )
    ticks = np.arange(classes)
    if classes <= MAX_CLASSES_WITH_COUNTS:  # slanted names, each ending under its column
        slant = {"rotation": 45, "ha": "right", "rotation_mode": "anchor"}
    else:  # upright: slanted ones would run under their neighbours' columns
        slant = {"rotation": 90}
    ax.set_xticks(ticks, labels=list(class_names), fontsize=fontsize, **slant)
    ax.set_yticks(ticks, labels=list(class_names), fontsize=fontsize)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(f"confusion matrix ({int(confusion.sum())} test images)")
    if classes <= MAX_CLASSES_WITH_COUNTS:
        for (row, column), count in np.ndenumerate(confusion):
            dark = image.norm(count) > 0.6  # white text on the darker blues, black elsewhere
            ax.text(
                column,
                row,
                str(int(count)),
                ha="center",
                va="center",
                fontsize=fontsize - 1,
                color="white" if dark else "black",
            )
    colorbar = figure.colorbar(image, ax=ax, fraction=0.046, pad=0.02, label="images")
    # Few ticks: on the square-root scale the default ones crowd at the top.
    colorbar.locator = MaxNLocator(nbins=5, integer=True)


def confusion_image(confusion, class_names: Sequence[str]) -> np.ndarray:
    """Renders a confusion matrix as a picture (for TensorBoard).

    Args:
        confusion: (classes, classes) counts, rows the true class, columns the predicted.
        class_names: The name of each class, in the order of the rows.

    Returns:
        The picture as uint8 RGB, (height, width, 3).

    Raises:
        ValueError: `confusion` is not (len(class_names), len(class_names)).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    confusion = _check_confusion(confusion, class_names)
    side = _confusion_inches(len(class_names)) + 1.5  # room for the labels and colour bar
    figure = Figure(figsize=(side, side), dpi=IMAGE_DPI, layout="constrained")
    canvas = FigureCanvasAgg(figure)
    _draw_confusion(figure, figure.add_subplot(), confusion, class_names)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()  # (H, W, 3); drops alpha


def _draw_curves(figure, grid, records: Sequence[EpochRecord], top5: bool) -> None:
    """Loss, accuracy (top-5 too with `top5`) and learning rate per epoch, in the left
    column of `grid`; the validation set's curves where the records have them."""
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    series = {
        f.name: [getattr(r, f.name) for r in records] for f in dataclasses.fields(EpochRecord)
    }
    epochs = series["epoch"]
    loss_ax = figure.add_subplot(grid[0, 0])
    accuracy_ax = figure.add_subplot(grid[1, 0], sharex=loss_ax)
    lr_ax = figure.add_subplot(grid[2, 0], sharex=loss_ax)
    splits = ["train", "test"] + (["val"] if records[0].val_loss is not None else [])
    for split in splits:
        loss_ax.plot(epochs, series[f"{split}_loss"], marker=".", label=split)
        accuracy_ax.plot(epochs, series[f"{split}_acc"], marker=".", label=split)
    if top5:  # top-5 of 10 classes says little
        accuracy_ax.plot(epochs, series["test_top5_acc"], marker=".", label="test top-5")
    loss_ax.set(ylabel="loss", title="loss per epoch")
    accuracy_ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    accuracy_ax.set(ylabel="accuracy", title="accuracy per epoch")
    lr_ax.plot(epochs, series["lr"], marker=".", color="tab:purple")
    lr_ax.set(ylabel="learning rate", title="learning rate at the end of each epoch")
    lr_ax.set_xlabel("epoch")
    lr_ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in (loss_ax, accuracy_ax, lr_ax):
        ax.grid(alpha=0.3)
    for ax in (loss_ax, accuracy_ax):
        ax.legend()
        ax.tick_params(labelbottom=False)  # the shared epoch axis is labelled at the bottom


def draw_report(
    records: Sequence[EpochRecord], confusion, class_names: Sequence[str], path
) -> None:
    """Writes the run's picture to `path` (PNG), replacing it atomically.

    Args:
        records: One per epoch.
        confusion: The last epoch's (classes, classes) confusion matrix, rows the true class.
        class_names: The name of each class, in the order of the rows.
        path: Where the PNG goes; its folder must exist.

    Raises:
        ValueError: no records, or `confusion` does not match `class_names`.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not records:
        raise ValueError("records is empty: there is no epoch to report.")
    confusion = _check_confusion(confusion, class_names)
    classes = len(class_names)
    # Three line plots stacked on the left, the confusion matrix on the right, as tall as
    # the three: with 100 classes it needs the room.
    height = _confusion_inches(classes) + 2.0
    figure = Figure(figsize=(height + 6.0, height), dpi=REPORT_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    grid = figure.add_gridspec(3, 2, width_ratios=(1.0, 1.6))
    _draw_curves(figure, grid, records, top5=classes > MAX_CLASSES_WITH_COUNTS)
    _draw_confusion(figure, figure.add_subplot(grid[:, 1]), confusion, class_names)
    last = records[-1]
    top5 = f", top-5 {last.test_top5_acc:.2%}" if classes > MAX_CLASSES_WITH_COUNTS else ""
    figure.suptitle(
        f"final test accuracy {last.test_acc:.2%}{top5} after epoch {last.epoch}",
        fontsize=14,
    )
    write_atomic(path, lambda f: figure.savefig(f, format="png"))
