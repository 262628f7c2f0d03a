"""A sweep end to end (`run_sweep`): its workdir checked against the sweep it holds, the runs
that finished before read back (not run again), the others queued, each run's HParams for
TensorBoard, and the summary: the table, sweep.csv, sweep.png."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Sequence

from tf_resnet9.outputs import run_folder
from tf_resnet9.outputs.files import write_atomic, write_json_atomic
from tf_resnet9.outputs.results import RunResults
from tf_resnet9.sweeps import hparams, summary
from tf_resnet9.sweeps.grid import SPEC_FILE, Combination, Grid, GridError, spec_differences
from tf_resnet9.sweeps.jobs import DIVERGED_FILE, LOG_FILE, Diverged, Job, Outcome, finished


@dataclasses.dataclass(frozen=True)
class SweepResults:
    """What a sweep gave.

    Attributes:
        rows: A row per combination, in the grid's order.
        outcomes: Run name (`<combination>/seed-<n>`) -> its results (or `Diverged`).
        trained: The run names trained by this call (the others had finished before).
        table: The text table printed.
    """

    rows: list[summary.Row]
    outcomes: dict[str, Outcome]
    trained: list[str]
    table: str


def default_workdir() -> str:
    """runs/sweep-<date>-<time>."""
    return os.path.join("runs", f"sweep-{run_folder.timestamp()}")


def check_workdir(workdir: str | os.PathLike, grid: Grid, data_dir) -> None:
    """Checks that `workdir` can be the sweep's: a new or empty folder, or one holding a
    sweep (sweep.json) with the same fixed settings, swept names and data (more values or
    seeds add runs). Writes nothing.

    Raises:
        GridError: it holds another sweep (the error names what differs) or other files.
    """
    path = os.path.join(workdir, SPEC_FILE)
    if os.path.exists(path):
        with open(path) as f:
            differences = spec_differences(json.load(f), grid.spec(data_dir))
        if differences:
            raise GridError(
                f"--workdir {workdir} holds a sweep with other settings ({'; '.join(differences)})"
                ": resume it with its own flags, or use another --workdir."
            )
    elif os.path.isdir(workdir) and set(os.listdir(workdir)) - {run_folder.LOCK_FILE}:
        raise GridError(
            f"--workdir {workdir} holds files but no {SPEC_FILE}: it is not a sweep's folder; "
            "use another --workdir."
        )


def prepare(workdir: str | os.PathLike, grid: Grid, data_dir) -> None:
    """Makes `workdir` the sweep's (`check_workdir`), writing its spec, sweep.json.

    Raises:
        GridError: it holds another sweep or other files.
        ConfigError: it cannot be created.
    """
    check_workdir(workdir, grid, data_dir)
    run_folder.make_folder(workdir)
    write_json_atomic(os.path.join(workdir, SPEC_FILE), grid.spec(data_dir))


def run_sweep(
    grid: Grid,
    combinations: Sequence[Combination],
    data_dir: str | os.PathLike | None,
    workdir: str | os.PathLike,
    queue,
    out=None,
) -> SweepResults:
    """Trains every run of the grid that has not finished before, on `queue`, then writes
    the summary (sweep.csv, sweep.png, sweep.txt) and the HParams into `workdir`.

    Args:
        grid: The grid (`tf_resnet9.sweeps.grid.Grid`).
        combinations: `grid.combinations()`.
        data_dir: Where CIFAR-10 is (as every machine that trains sees it).
        workdir: The sweep's folder; each run's is `<combination>/seed-<n>` in it.
        queue: Where the runs train (`tf_resnet9.sweeps.queues`).
        out: Text stream for progress and the table (default stdout).

    Raises:
        GridError: `workdir` holds another sweep (`prepare`).
        What a run raises (but a diverged run, which is a result).
    """
    out = out or sys.stdout
    workdir = os.fspath(workdir)
    run_folder.make_folder(workdir)
    lock = run_folder.FolderLock(workdir)  # one sweep at a time in it
    lock.acquire()
    try:
        return _run(grid, combinations, data_dir, workdir, queue, out)
    finally:
        lock.release()


def _run(grid, combinations, data_dir, workdir: str, queue, out) -> SweepResults:
    prepare(workdir, grid, data_dir)
    data_dir = None if data_dir is None else os.path.abspath(os.path.expanduser(data_dir))
    outcomes: dict[str, Outcome] = {}
    jobs, kept = _pending_jobs(combinations, workdir, data_dir, outcomes)
    runs = len(combinations) * grid.seeds
    todo = sum(len(job.seeds) for job in jobs)
    print(
        f"sweep: {len(combinations)} combination{'s' * (len(combinations) != 1)} x "
        f"{grid.seeds} seed{'s' * (grid.seeds != 1)} = {runs} runs in {workdir}: "
        + (f"{todo} to train" if todo else "nothing to train, every run finished before"),
        file=out,
        flush=True,
    )
    for line in kept:
        print(line, file=out)
    trained = _train(jobs, workdir, queue, outcomes, out) if jobs else []
    return _summarise(grid, combinations, workdir, outcomes, trained, out)


def _pending_jobs(combinations, workdir, data_dir, outcomes) -> tuple[list[Job], list[str]]:
    """A job per combination with seeds still to train, and a line per run that finished
    before (its outcome read back into `outcomes`)."""
    jobs, kept = [], []
    for combination in combinations:
        seeds, run_dirs = [], []
        for config in combination.configs:
            name = combination.run_name(config.seed)
            run_dir = os.path.abspath(os.path.join(workdir, name))
            before = finished(run_dir)
            if before is None:
                seeds.append(config.seed)
                run_dirs.append(run_dir)
                continue
            outcomes[name] = before
            file = DIVERGED_FILE if isinstance(before, Diverged) else run_folder.RESULTS_FILE
            kept.append(f"{name}: finished before ({file}), not run again")
        if seeds:
            config = combination.configs[0]
            jobs.append(Job(combination.name, config, tuple(seeds), tuple(run_dirs), data_dir))
    return jobs, kept


def _train(jobs: Sequence[Job], workdir: str, queue, outcomes: dict, out) -> list[str]:
    todo = sum(len(job.seeds) for job in jobs)
    print(f"runs: {queue.description}; each run's output in its folder's {LOG_FILE}", file=out)
    trained = []

    def name_of(run_dir: str) -> str:
        return os.path.relpath(run_dir, os.path.abspath(workdir))

    def started(run_dir: str) -> None:
        print(f"training {name_of(run_dir)} ...", file=out, flush=True)

    def done(run_dir: str, outcome: Outcome) -> None:
        name = name_of(run_dir)
        outcomes[name] = outcome
        trained.append(name)
        print(f"[{len(trained)}/{todo}] {name}: {describe(outcome)}", file=out, flush=True)

    queue.run(jobs, started, done)
    return trained


def describe(outcome: Outcome) -> str:
    """One run's result in a few words."""
    if isinstance(outcome, Diverged):
        return f"diverged ({outcome.message})"
    text = f"test accuracy {outcome.test_accuracy:.2%}, training {outcome.training_time_s:.1f} s"
    if outcome.unwritten:
        text += f" (not written: {', '.join(outcome.unwritten)})"
    return text


def _summarise(grid, combinations, workdir, outcomes, trained, out) -> SweepResults:
    finished_runs = [
        (c.run_name(config.seed), c.settings, config.seed, outcomes[c.run_name(config.seed)])
        for c in combinations
        for config in c.configs
        if isinstance(outcomes[c.run_name(config.seed)], RunResults)
    ]
    hparams.log_runs(os.path.join(workdir, hparams.FOLDER), finished_runs)
    rows = summary.rows(combinations, outcomes)
    table = summary.text_table(rows)
    medians = [row.median for row in rows if row.median is not None]
    best = [row for row in rows if medians and row.median == max(medians)]
    if len(best) == 1 and len(rows) > 1:  # a tie names no best
        table += f"\nbest median: {best[0].label} ({best[0].median:.2%})"
    summary.write_csv(rows, os.path.join(workdir, summary.CSV_FILE))
    summary.draw(rows, os.path.join(workdir, summary.PNG_FILE), title(grid, combinations))
    write_atomic(
        os.path.join(workdir, summary.TABLE_FILE), lambda f: f.write((table + "\n").encode())
    )
    print(table, file=out)
    written = (summary.CSV_FILE, summary.PNG_FILE, summary.TABLE_FILE, hparams.FOLDER + "/")
    print(f"written: {', '.join(os.path.join(workdir, name) for name in written)}", file=out)
    return SweepResults(rows, outcomes, trained, table)


def title(grid: Grid, combinations: Sequence[Combination]) -> str:
    """What the runs share, for sweep.png's title: the model, recipe, epochs, width and
    data subsets where not swept, and the seeds."""
    config = combinations[0].configs[0]
    swept = set(grid.names)
    parts = [
        f"{name} {getattr(config, name)}"
        for name in ("model", "recipe", "epochs", "width", "train_limit")
        if name not in swept and getattr(config, name) is not None
    ]
    seeds = grid.seed_values
    many = grid.seeds > 1
    parts.append(f"seeds {seeds.start}..{seeds.stop - 1}" if many else f"seed {seeds.start}")
    return ", ".join(parts)
