"""What a run of several seeds (`--seeds K`) writes beside each seed's own run folder
(WORKDIR/seed-<n>, an ordinary run's): WORKDIR/seeds.json, every seed's epochs and test
accuracy with their summary, and WORKDIR/seeds.png, the spread of the seeds' per-epoch test
accuracy."""

from __future__ import annotations

import dataclasses
import os
import statistics
from collections.abc import Sequence

from tf_resnet9.config import TrainConfig
from tf_resnet9.config.recipes import RECIPES
from tf_resnet9.outputs.files import write_atomic, write_json_atomic
from tf_resnet9.outputs.results import RunResults


def summary(accuracies: Sequence[float], target: float | None) -> dict:
    """Median, min and max of the seeds' final test accuracies, and the share of seeds that
    reach `target` (None without one)."""
    at_target = None if target is None else sum(a >= target for a in accuracies) / len(accuracies)
    return {
        "runs": len(accuracies),
        "median_test_accuracy": statistics.median(accuracies),
        "min_test_accuracy": min(accuracies),
        "max_test_accuracy": max(accuracies),
        "target": target,
        "share_at_target": at_target,
    }


@dataclasses.dataclass(frozen=True)
class SeedsResults:
    """The seeds' results (`runs`, in seed order) and their summary, as seeds.json holds it.

    Attributes:
        config: The settings of the whole run (`seeds`, and `seed`, the first of them).
        runs: Each seed's results, as its own results.json holds them.
        run_dirs: Each seed's run folder (None without a workdir).
        together: Whether the seeds trained together in one compiled program (JAX's vmap),
            or one after another.
        unwritten: {file: why} of the files not written, over every seed's and seeds.png.
    """

    config: TrainConfig
    runs: tuple[RunResults, ...]
    run_dirs: tuple[str | None, ...]
    together: bool
    unwritten: dict = dataclasses.field(default_factory=dict)

    @property
    def target(self) -> float | None:
        """The test accuracy the recipe's source reports for the model, if any."""
        return RECIPES[self.config.recipe].reported.get(self.config.model)

    @property
    def summary(self) -> dict:
        return summary([run.test_accuracy for run in self.runs], self.target) | {
            "reported": dict(RECIPES[self.config.recipe].reported),
            "reported_note": RECIPES[self.config.recipe].note,
        }

    def as_dict(self) -> dict:
        seeds = [
            {
                "seed": run.seed,
                "run_dir": run_dir,
                "test_accuracy": run.test_accuracy,
                "training_time_s": run.training_time_s,
                "epochs": [record.as_dict() for record in run.epochs],
            }
            for run, run_dir in zip(self.runs, self.run_dirs)
        ]
        return {
            "config": dataclasses.asdict(self.config),
            "together": self.together,
            "seeds": seeds,
            "summary": self.summary,
        }

    def write(self, path: str | os.PathLike) -> None:
        write_json_atomic(path, self.as_dict())


def draw_spread(runs: Sequence[RunResults], target: float | None, path) -> None:
    """Writes seeds.png: every seed's test accuracy after each epoch, one line a seed, and
    the target as a dashed line where the accuracies come within 5 points of it (far above
    them, as after a short run, it would squash the lines into a corner)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    figure = Figure(figsize=(7.0, 4.5), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for run in runs:
        epochs = [record.epoch for record in run.epochs]
        axes.plot(
            epochs, [record.test_acc for record in run.epochs], "o-", label=f"seed {run.seed}"
        )
    accuracies = [run.test_accuracy for run in runs]
    if target is not None and target - max(accuracies) <= 0.05:
        axes.axhline(target, linestyle="--", color="gray", label=f"target {target:.0%}")
    axes.set(xlabel="epoch", ylabel="test accuracy")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    axes.set_title(
        f"{len(runs)} seeds: final test accuracy median {statistics.median(accuracies):.2%} "
        f"(min {min(accuracies):.2%}, max {max(accuracies):.2%})"
    )
    if len(runs) <= 10:
        axes.legend(fontsize=8)
    write_atomic(path, lambda f: figure.savefig(f, format="png"))
