"""What a sweep gave, a row per combination (`Row`: the test accuracy's median, min and max
over the seeds, the median training time, the share of seeds at the recipe's published
target): as a text table, sweep.csv and sweep.png."""

from __future__ import annotations

import csv
import dataclasses
import io
import statistics
from collections.abc import Mapping, Sequence

from tf_resnet9.config.recipes import RECIPES
from tf_resnet9.config.values import format_value
from tf_resnet9.outputs.files import write_atomic
from tf_resnet9.sweeps.grid import Combination
from tf_resnet9.sweeps.jobs import Diverged, Outcome

CSV_FILE = "sweep.csv"
PNG_FILE = "sweep.png"
TABLE_FILE = "sweep.txt"


@dataclasses.dataclass(frozen=True)
class Row:
    """One combination's results over its seeds.

    Attributes:
        settings: The swept settings' values.
        label: The settings as a person reads them.
        folder: The combination's folder in the sweep's workdir.
        accuracies: Test accuracy of each seed that finished (a fraction), in seed order.
        training_times_s: Their training times (DAWNBench's, seconds).
        diverged: Seeds whose training diverged (NaN or infinite loss).
        target: The test accuracy the recipe's source reports for the model, or None.
    """

    settings: Mapping[str, object]
    label: str
    folder: str
    accuracies: tuple[float, ...]
    training_times_s: tuple[float, ...]
    diverged: int
    target: float | None

    @property
    def seeds(self) -> int:
        return len(self.accuracies)

    def _of(self, reduce, values):
        return reduce(values) if values else None

    @property
    def median(self) -> float | None:
        return self._of(statistics.median, self.accuracies)

    @property
    def low(self) -> float | None:
        return self._of(min, self.accuracies)

    @property
    def high(self) -> float | None:
        return self._of(max, self.accuracies)

    @property
    def median_training_time_s(self) -> float | None:
        return self._of(statistics.median, self.training_times_s)

    @property
    def at_target(self) -> float | None:
        """The share of the seeds (diverged ones included) at or above the target."""
        runs = self.seeds + self.diverged
        if self.target is None or not runs:
            return None
        return sum(acc >= self.target for acc in self.accuracies) / runs


def rows(combinations: Sequence[Combination], outcomes: Mapping[str, Outcome]) -> list[Row]:
    """A row per combination, from the outcomes of its runs (run name -> outcome)."""
    table = []
    for combination in combinations:
        seeds = [config.seed for config in combination.configs]
        ran = [outcomes[combination.run_name(seed)] for seed in seeds]
        finished = [outcome for outcome in ran if not isinstance(outcome, Diverged)]
        config = combination.configs[0]
        table.append(
            Row(
                settings=combination.settings,
                label=combination.label,
                folder=combination.name,
                accuracies=tuple(results.test_accuracy for results in finished),
                training_times_s=tuple(results.training_time_s for results in finished),
                diverged=len(ran) - len(finished),
                target=RECIPES[config.recipe].reported.get(config.model),
            )
        )
    return table


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


def _columns(table: Sequence[Row]) -> list[tuple[str, list[str]]]:
    """(header, cells) of each column of the text table."""
    names = list(table[0].settings) if table else []
    columns = [(name, [format_value(row.settings[name]) for row in table]) for name in names]
    columns += [
        ("median", [_percent(row.median) for row in table]),
        ("min", [_percent(row.low) for row in table]),
        ("max", [_percent(row.high) for row in table]),
        ("seeds", [str(row.seeds) for row in table]),
        (
            "training s",
            [
                "-" if row.median_training_time_s is None else f"{row.median_training_time_s:.1f}"
                for row in table
            ],
        ),
    ]
    if any(row.target is not None for row in table):
        columns.append(("target", [_percent(row.target) for row in table]))
        at = [
            "-"
            if row.at_target is None
            else f"{round(row.at_target * (row.seeds + row.diverged))}/{row.seeds + row.diverged}"
            for row in table
        ]
        columns.append(("at target", at))
    if any(row.diverged for row in table):
        columns.append(("diverged", [str(row.diverged) for row in table]))
    return columns


def text_table(table: Sequence[Row]) -> str:
    """The rows as aligned text, under a line saying what the figures are."""
    columns = _columns(table)
    widths = [max(len(header), *(len(cell) for cell in cells)) for header, cells in columns]
    lines = ["  ".join(header.ljust(width) for (header, _), width in zip(columns, widths)).rstrip()]
    for i in range(len(table)):
        cells = [cells[i].ljust(width) for (_, cells), width in zip(columns, widths)]
        lines.append("  ".join(cells).rstrip())
    caption = (
        "test accuracy over the seeds (median, min, max), median training time (s), "
        "per combination:"
    )
    return "\n".join([caption, *lines])


def write_csv(table: Sequence[Row], path) -> None:
    """sweep.csv: a row per combination; accuracies as fractions, times in seconds."""
    names = list(table[0].settings) if table else []
    header = [
        *names,
        "test_acc_median",
        "test_acc_min",
        "test_acc_max",
        "seeds",
        "diverged",
        "training_time_s_median",
        "target",
        "at_target",
        "test_acc_per_seed",
        "folder",
    ]
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    for row in table:
        writer.writerow(
            [
                *(format_value(row.settings[name]) for name in names),
                *(_number(v) for v in (row.median, row.low, row.high)),
                row.seeds,
                row.diverged,
                _number(row.median_training_time_s, 2),
                _number(row.target),
                _number(row.at_target),
                " ".join(f"{acc:.4f}" for acc in row.accuracies),
                row.folder,
            ]
        )
    write_atomic(path, lambda f: f.write(text.getvalue().encode()))


def _number(value: float | None, digits: int = 4) -> str:
    return "" if value is None else f"{value:.{digits}f}"


# Inches: each combination's row, and the title and axis around them.
ROW_INCHES, MARGIN_INCHES, WIDTH_INCHES = 0.42, 1.5, 8.0
DPI = 120


def draw(table: Sequence[Row], path, title: str) -> None:
    """sweep.png: a row per combination, its median test accuracy (diamond) with a bar from
    min to max over the seeds and each seed as a dot; the colour is the first swept
    setting's value. The recipe's target is drawn where the accuracies come near it.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import PercentFormatter

    figure = Figure(figsize=(WIDTH_INCHES, MARGIN_INCHES + ROW_INCHES * max(len(table), 1)))
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    colours, first = _colours(table)
    for y, row in enumerate(table):
        colour = colours[y]
        if row.accuracies:
            ax.plot([row.low * 100, row.high * 100], [y, y], color=colour, lw=2, alpha=0.6)
            # Seeds side by side in y, so that equal accuracies stay visible as dots.
            spread = [(i - (row.seeds - 1) / 2) * 0.12 for i in range(row.seeds)]
            dots = [acc * 100 for acc in row.accuracies]
            ax.scatter(dots, [y + s for s in spread], s=14, color=colour, zorder=3)
            ax.scatter(
                [row.median * 100],
                [y],
                marker="D",
                s=50,
                color=colour,
                zorder=4,
                edgecolors="black",
                linewidths=0.6,
            )
    _draw_target(ax, table)
    labels = [row.label + (f" ({row.diverged} diverged)" if row.diverged else "") for row in table]
    ax.set_yticks(range(len(table)), labels, fontsize=9)
    ax.set_ylim(len(table) - 0.5, -0.5)  # the first combination on top, as in the table
    ax.xaxis.set_major_formatter(PercentFormatter(decimals=1))
    ax.set_xlabel("test accuracy (diamond: median over the seeds; bar: min to max; dots: seeds)")
    ax.margins(x=0.06)
    ax.grid(axis="x", alpha=0.3)
    if first is not None:
        handles = [
            ax.scatter([], [], marker="D", color=colour, label=format_value(value))
            for value, colour in first.items()
        ]
        ax.legend(
            handles=handles,
            title=next(iter(table[0].settings)),
            fontsize=8,
            title_fontsize=8,
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),  # beside the rows, never over a dot
        )
    ax.set_title(title, fontsize=10)
    write_atomic(path, lambda f: figure.savefig(f, format="png", dpi=DPI, bbox_inches="tight"))


def _colours(table: Sequence[Row]) -> tuple[list[str], dict | None]:
    """Each row's colour, and {value: colour} of the first swept setting where it has
    several values (else None: one colour)."""
    if not table or len(table[0].settings) < 2:
        return ["tab:blue"] * len(table), None
    name = next(iter(table[0].settings))
    values = list(dict.fromkeys(row.settings[name] for row in table))
    if len(values) < 2:
        return ["tab:blue"] * len(table), None
    palette = [f"C{i % 10}" for i in range(len(values))]
    by_value = dict(zip(values, palette))
    return [by_value[row.settings[name]] for row in table], by_value


def _draw_target(ax, table: Sequence[Row]) -> None:
    # Far above the accuracies (a short run), the target's line would squash them into a
    # corner: then it is left out (the title of the table says it).
    targets = {row.target for row in table if row.target is not None}
    reached = [acc for row in table for acc in row.accuracies]
    if len(targets) != 1 or not reached:
        return
    (target,) = targets
    if target - max(reached) > 0.05:
        return
    ax.axvline(target * 100, color="gray", ls="--", lw=1)
    ax.annotate(
        "target",
        (target * 100, -0.5),
        fontsize=8,
        color="gray",
        ha="center",
        va="bottom",
        annotation_clip=False,
    )
