"""The files a run writes at its end, and the packages they need, checked before the data is
read: results.json and the trained model first (the run's result), then each extra on its
own (the report, the model for inference, the SavedModel, TensorBoard's weight histograms),
so that one that fails loses nothing else; for several seeds, their summary."""

from __future__ import annotations

import dataclasses
import importlib
import os
from collections.abc import Callable
from typing import NamedTuple

import keras

from tf_resnet9.config import TrainConfig
from tf_resnet9.errors import MissingPackage, OutputError
from tf_resnet9.outputs import console, export, report, run_folder, tensorboard
from tf_resnet9.outputs.results import RunResults
from tf_resnet9.outputs.seeds_summary import SeedsResults, draw_spread

# What each optional package is imported as where it is used (a build that installs but
# does not import, say against another NumPy, fails on these).
_MODULES = {
    report.PACKAGE: ("matplotlib.figure", "matplotlib.backends.backend_agg"),
    tensorboard.PACKAGE: ("tensorboardX",),
}


def check_packages(config: TrainConfig) -> None:
    """Raises MissingPackage, naming it, what needs it and the import's own error, for a
    package the outputs of a run with `config` will need and that does not import: checked
    before any data is read."""
    needed = {report.PACKAGE: "report.png and TensorBoard's confusion matrices"}
    if config.tensorboard:
        needed[tensorboard.PACKAGE] = "TensorBoard logs (or pass --notensorboard)"
    for package, needs in needed.items():
        for module in _MODULES[package]:
            try:
                importlib.import_module(module)
            except Exception as error:  # noqa: BLE001 - a broken build raises anything
                raise MissingPackage(_import_failure(package, needs, error)) from None


def _import_failure(package: str, needs: str, error: Exception) -> str:
    if isinstance(error, ModuleNotFoundError) and (error.name or "").split(".")[0] == package:
        return f"{package} is not installed: {needs} need it. pip install {package}"
    lines = str(error).strip().splitlines()
    first = lines[0] if lines else ""
    return (
        f"{package} is installed but does not import ({type(error).__name__}: {first}): "
        f"{needs} need it. Reinstall it: pip install --force-reinstall {package}"
    )


class Output(NamedTuple):
    """A file (or folder) a run writes at its end."""

    name: str  # its name in the run folder
    write: Callable[[str], object]  # writes it, given its path
    redo: bool = True  # a finished run resumed writes it again if it is missing
    optional: bool = False  # one that fails is a warning, not a failed run


def outputs(results: RunResults, model: keras.Model, folder: str) -> tuple[list, list]:
    """(what a run's result is: results.json and the trained model; the extras: report.png,
    the model for inference, the SavedModel, TensorBoard's weight histograms)."""
    names, epochs = results.class_names, results.epochs
    stats = results.settings.normalization
    essential = [
        Output(run_folder.RESULTS_FILE, results.write),
        Output(run_folder.model_file(results.config.model), lambda p: export.save_model(model, p)),
    ]
    extras = [
        Output(
            run_folder.REPORT_FILE,
            lambda p: report.draw_report(epochs, results.confusion_matrix, names, p),
        ),
        Output(
            export.INFERENCE_FILE,
            lambda p: export.save_inference_model(model, names, folder, stats),
        ),
    ]
    if results.settings.backend == "tensorflow":
        saved = lambda p: export.export_saved_model(model, names, folder, stats)  # noqa: E731
        extras.append(Output(export.SAVED_MODEL_DIR, saved))
    if results.config.tensorboard:
        logdir = os.path.join(folder, run_folder.TENSORBOARD_FOLDER)
        write = lambda p: tensorboard.write_weight_histograms(logdir, model, len(epochs))  # noqa: E731
        # Inside the event files, beside the epochs' logs: nothing to tell missing.
        extras.append(Output("TensorBoard's weight histograms", write, redo=False, optional=True))
    return essential, extras


def write_outputs(
    results: RunResults, model: keras.Model, folder: str, out, only_missing: bool = False
) -> dict[str, str]:
    """Writes results.json and the trained model, then each extra on its own: one that fails
    is named on `out` with why (a warning for an optional one), and the others are still
    written.

    Args:
        only_missing: Write only the files that are not there (a finished run resumed).

    Returns:
        {name: why} of the extras not written (optional ones left out).

    Raises:
        OutputError: results.json or the model could not be written; the message says
            that the checkpoints are kept and how to write the results again.
    """
    essential, extras = outputs(results, model, folder)
    wanted = [
        output
        for output in essential + extras
        if not only_missing
        or (output.redo and not os.path.exists(os.path.join(folder, output.name)))
    ]
    unwritten = {}
    for output in wanted:
        path = os.path.join(folder, output.name)
        if output in essential:  # not isolated: without these the run has no result
            try:
                output.write(path)
            except OutputError as error:
                raise OutputError(
                    error.path,
                    f"{error.cause}; the checkpoints are kept: once it can be written, resume "
                    f"with --workdir {results_folder(folder)} --resume to write the results.",
                ) from None
            continue
        try:
            output.write(path)
        except Exception as e:  # noqa: BLE001 - each extra's failure is reported, not fatal
            why = _why(e)
            if output.optional:
                print(f"warning: {output.name} not written: {why}", file=out)
                continue
            unwritten[output.name] = why
            console.unwritten(output.name, why, out)
    if only_missing:
        done = [output.name for output in wanted if output.name not in unwritten]
        print(f"written again: {', '.join(done) or 'nothing (none was missing)'}", file=out)
    return unwritten


def _why(error: Exception) -> str:
    """An extra's failure in a few words."""
    return error.cause if isinstance(error, OutputError) else f"{type(error).__name__}: {error}"


def results_folder(folder: str) -> str:
    """The workdir a run folder's results are resumed from (a seed's folder's parent)."""
    parent = os.path.dirname(os.path.abspath(folder))
    seed = os.path.basename(os.path.abspath(folder))
    return parent if seed.startswith("seed-") else folder


def write_seeds_summary(results: SeedsResults, workdir: str | None, out) -> SeedsResults:
    """seeds.json and seeds.png (an extra) into the workdir of a run of several seeds;
    returns `results` with every file not written, the seeds' own included."""
    unwritten = {
        f"{os.path.basename(run_dir)}/{name}": why
        for run, run_dir in zip(results.runs, results.run_dirs)
        for name, why in run.unwritten.items()
    }
    if workdir is not None:
        results.write(os.path.join(workdir, run_folder.SEEDS_FILE))
        path = os.path.join(workdir, run_folder.SEEDS_PLOT)
        try:
            draw_spread(results.runs, results.target, path)
        except Exception as e:  # noqa: BLE001 - an extra, as each run's report.png is
            unwritten[run_folder.SEEDS_PLOT] = _why(e)
            console.unwritten(run_folder.SEEDS_PLOT, unwritten[run_folder.SEEDS_PLOT], out)
    return dataclasses.replace(results, unwritten=unwritten)
