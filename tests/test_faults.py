"""A run's folder is its own (README.org, "What a run promises"): faults injected one at a
time, each answered in one line that names the file and the cause, with what was written
before kept whole and nothing partial left. The command runs in this process
(`run_in_process`); a full disk is a write that raises ENOSPC, injected where the file is
opened (`disk_full`), so the run's own code meets it as it would on a full file system."""

import builtins
import contextlib
import errno
import fnmatch
import glob
import importlib.abc
import os
import random
import signal
import subprocess
import sys
import time

import keras
import pytest

from tests.cifar_files import fake_cifar10, write_folder
from tests.commands import ROOT
from tests.test_train_cli import assert_same_numbers, run_in_process
from tf_resnet9.outputs import tensorboard

TINY = ["--width", "0.0625", "--batch_size", "16", "--epochs", "2"]
BACKEND = keras.backend.backend()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    # 5 x 20 = 100 training images (6 steps of 16), 20 test images.
    return write_folder(tmp_path_factory.mktemp("cifar"), fake_cifar10(20, 20))


def train(capsys, data_dir, workdir, *args) -> tuple[int, str, str]:
    return run_in_process(capsys, "--data_dir", data_dir, "--workdir", workdir, *TINY, *args)


def contents(folder) -> dict[str, bytes]:
    """Every file under `folder` and its bytes."""
    return {
        os.path.relpath(path, folder): open(path, "rb").read()
        for path in glob.glob(os.path.join(folder, "**", "*"), recursive=True)
        if os.path.isfile(path)
    }


def temporary(folder) -> list[str]:
    """What a half-done write left: the temporary files and folders."""
    return glob.glob(os.path.join(folder, "**", ".tmp-*"), recursive=True)


class _FullDisk:
    """A file opened for writing on a full disk: every write fails with `code`."""

    def __init__(self, file, code: int):
        self._file, self._code = file, code

    def write(self, data):
        raise OSError(self._code, os.strerror(self._code))

    def __getattr__(self, name):
        return getattr(self._file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self._file.close()
        return False


@contextlib.contextmanager
def disk_full(pattern: str, code: int = errno.ENOSPC):
    """Writes to files whose name matches `pattern` fail with `code` while inside (every
    writer of a run opens its files with `open`: ours, Keras', numpy's, tensorboardX's)."""
    real_open = builtins.open

    def faulty(file, mode="r", *args, **kwargs):
        opened = real_open(file, mode, *args, **kwargs)
        name = os.path.basename(os.fspath(file)) if isinstance(file, (str, os.PathLike)) else ""
        if set(mode) & set("wax+") and fnmatch.fnmatch(name, pattern):
            return _FullDisk(opened, code)
        return opened

    builtins.open = faulty
    try:
        yield
    finally:
        builtins.open = real_open


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("error:")]


# A finished run is never overwritten.


def test_a_rerun_into_a_finished_run_is_refused_and_changes_nothing(capsys, data_dir, tmp_path):
    workdir = tmp_path / "r1"
    assert train(capsys, data_dir, workdir, "--seed", "1")[0] == 0
    before = contents(workdir)
    status, _, err = train(capsys, data_dir, workdir, "--seed", "3")  # the up-arrow
    assert status == 1
    assert error_lines(err) == [
        f"error: --workdir='{workdir}' is invalid: {workdir} holds another run (results.json, "
        "checkpoints, inference.keras, ...): continue it with --resume, pass another --workdir,"
        " or --overwrite to move it aside."
    ]
    assert contents(workdir) == before  # not one byte changed, nothing added

    status, _, err = train(capsys, data_dir, workdir, "--resume", "--overwrite")
    assert status == 1
    assert error_lines(err) == [
        "error: --overwrite=True is invalid: --resume continues the run in --workdir and "
        "--overwrite moves it aside: pass one of them."
    ]
    assert contents(workdir) == before

    status, out, err = train(capsys, data_dir, workdir, "--seed", "3", "--overwrite")
    assert status == 0, err
    (aside,) = glob.glob(f"{workdir}.replaced-*")
    assert f"--overwrite: moved the earlier run to {aside}" in out
    assert contents(aside) == before  # the earlier run, whole, beside the new one
    assert '"seed": 3' in (workdir / "results.json").read_text()


# One writer per workdir.


def hold_lock(folder) -> subprocess.Popen:
    """Another process that holds `folder`'s lock until killed."""
    program = (
        "import sys, time; from tf_resnet9.outputs.run_folder import FolderLock; "
        "FolderLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(600)"
    )
    os.makedirs(folder, exist_ok=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", program, str(folder)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_busy_workdir_stops_a_second_run_at_once_naming_the_holder(capsys, data_dir, tmp_path):
    workdir = tmp_path / "busy"
    holder = hold_lock(workdir)
    try:
        start = time.perf_counter()
        status, _, err = train(capsys, data_dir, workdir)
        took = time.perf_counter() - start
    finally:
        holder.kill()  # as -9 would: the kernel drops the lock
        holder.wait()
    assert status == 1
    (line,) = error_lines(err)
    assert f"another run is writing it (pid {holder.pid} on " in line
    assert "wait for it to end, or pass another --workdir." in line
    assert took < 10  # stopped before reading the data or compiling
    # The holder killed with -9 leaves its lock file, but not its lock: the next run goes.
    status, _, err = train(capsys, data_dir, workdir)
    assert status == 0, err
    assert not (workdir / ".lock").exists()  # a run leaves no lock file behind


@pytest.mark.slow
def test_two_runs_started_into_one_workdir_one_trains_the_other_stops(data_dir, tmp_path):
    workdir = tmp_path / "race"
    command = [sys.executable, "-m", "tf_resnet9.train", "--data_dir", str(data_dir)]
    command += ["--workdir", str(workdir), *TINY]
    runs = [
        subprocess.Popen(
            [*command, "--seed", str(seed)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in (1, 2)
    ]
    results = [(run.pid, *run.communicate(timeout=300), run.returncode) for run in runs]
    finished = [r for r in results if r[3] == 0]
    stopped = [r for r in results if r[3] != 0]
    assert len(finished) == 1 and len(stopped) == 1, results
    pid, _, err, status = stopped[0]
    assert status == 1 and len(error_lines(err)) == 1
    # It found the folder locked, or (starting later) the other's finished run in it.
    assert "another run is writing it (pid" in err or "holds another run" in err
    seed = 1 if finished[0][0] == runs[0].pid else 2
    assert f'"seed": {seed}' in (workdir / "results.json").read_text()  # the winner's alone


# Every write failure is one line and loses nothing written before.


def test_a_full_disk_at_a_checkpoint_keeps_the_ones_before_and_resumes(capsys, data_dir, tmp_path):
    workdir = tmp_path / "full"
    with disk_full("*epoch-0002.npz*"):
        status, out, err = train(capsys, data_dir, workdir)
    assert status == 1
    (line,) = error_lines(err)
    assert line.startswith(f"error: {workdir / 'checkpoints' / 'epoch-0002.npz'} not written: ")
    assert "No space left on device (it needs about " in line and " free)" in line
    assert sorted(os.listdir(workdir / "checkpoints")) == ["epoch-0001.npz"]
    assert not temporary(workdir) and not (workdir / "results.json").exists()
    # Room again: the run resumes from the epoch it kept and finishes.
    status, out, err = train(capsys, data_dir, workdir, "--resume")
    assert status == 0, err
    assert "resuming from" in out and (workdir / "results.json").is_file()


@pytest.mark.parametrize("name", ["results.json", "resnet9.keras"])
def test_a_full_disk_at_the_results_keeps_the_checkpoints_and_resume_writes_them(
    capsys, data_dir, tmp_path, name
):
    workdir = tmp_path / "full"
    with disk_full(f"*{name}*"):
        status, _, err = train(capsys, data_dir, workdir)
    assert status == 1
    (line,) = error_lines(err)
    assert line.startswith(f"error: {workdir / name} not written: No space left on device")
    assert line.endswith(
        f"the checkpoints are kept: once it can be written, resume with --workdir {workdir} "
        "--resume to write the results."
    )
    assert sorted(os.listdir(workdir / "checkpoints")) == ["epoch-0001.npz", "epoch-0002.npz"]
    assert not temporary(workdir) and not (workdir / name).exists()
    kept = contents(workdir)
    status, out, err = train(capsys, data_dir, workdir, "--resume")
    assert status == 0, err
    assert "compiling" not in out  # training had finished: only the files are written
    assert (workdir / "results.json").is_file() and (workdir / "resnet9.keras").is_file()
    assert all(contents(workdir)[path] == data for path, data in kept.items())


EXTRAS = ["report.png", "inference.keras"] + (["saved_model"] if BACKEND == "tensorflow" else [])


@pytest.mark.parametrize("name", EXTRAS)
def test_a_full_disk_at_an_extra_is_one_line_and_the_rest_is_written(
    capsys, monkeypatch, data_dir, tmp_path, name
):
    workdir = tmp_path / "full"
    if name == "saved_model":  # TensorFlow writes it itself, not through Python's files

        def full(self, *args, **kwargs):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(keras.Model, "export", full)
    with disk_full(f"*{name}*"):
        status, out, err = train(capsys, data_dir, workdir)
    assert status == 1  # a file the run should have written is missing
    (line,) = error_lines(out)
    assert line.startswith(f"error: {name} not written: No space left on device (")
    written = set(os.listdir(workdir))
    assert {"results.json", "resnet9.keras", "checkpoints"} <= written
    assert name not in written and not temporary(workdir)


def test_a_full_disk_for_tensorboard_stops_its_logs_not_the_run(capsys, data_dir, tmp_path):
    workdir = tmp_path / "full"
    with disk_full("events.out.tfevents*"):
        status, out, err = train(capsys, data_dir, workdir)
    assert status == 0, err  # TensorBoard is an extra: the run finishes
    warnings = [line for line in out.splitlines() if line.startswith("warning:")]
    assert warnings[0].startswith(f"warning: TensorBoard logging stopped: {workdir}")
    assert warnings[0].endswith("could not be written (No space left on device); training goes on.")
    assert len([w for w in warnings if "logging stopped" in w]) == 1  # said once
    assert error_lines(out + err) == []
    assert {"results.json", "resnet9.keras", "report.png"} <= set(os.listdir(workdir))


def test_a_read_only_file_system_is_named_too(capsys, data_dir, tmp_path):
    workdir = tmp_path / "ro"
    with disk_full("*results.json*", errno.EROFS):
        status, _, err = train(capsys, data_dir, workdir)
    assert status == 1
    (line,) = error_lines(err)
    assert f"{workdir / 'results.json'} not written: Read-only file system; " in line


# Optional packages: checked by importing them, before the data is read; what fails of
# them during training is a warning.


class _Broken(importlib.abc.MetaPathFinder):
    """Makes importing `package` fail as a build against another NumPy does."""

    def __init__(self, package: str):
        self.package = package

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == self.package:
            raise ImportError("numpy.core.multiarray failed to import")
        return None


@pytest.mark.parametrize(
    "package, needs",
    [("matplotlib", "report.png and TensorBoard's confusion matrices"),
     ("tensorboardX", "TensorBoard logs (or pass --notensorboard)")],
)  # fmt: skip
def test_a_package_that_is_installed_but_does_not_import_is_named_first(
    capsys, monkeypatch, tmp_path, package, needs
):
    for name in [m for m in sys.modules if m.split(".")[0] == package]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [_Broken(package), *sys.meta_path])
    # No data there: a data error would come first if the data were read.
    status, _, err = train(capsys, tmp_path / "no data", tmp_path / "run")
    assert status == 1
    assert error_lines(err) == [
        f"error: {package} is installed but does not import (ImportError: numpy.core.multiarray "
        f"failed to import): {needs} need it. Reinstall it: pip install --force-reinstall "
        f"{package}"
    ]
    assert not (tmp_path / "run").exists()


def test_tensorboard_extras_that_fail_during_training_are_warnings(
    capsys, monkeypatch, data_dir, tmp_path
):
    def broken(*args, **kwargs):
        raise RuntimeError("matplotlib cannot draw")

    monkeypatch.setattr(tensorboard, "confusion_image", broken)
    monkeypatch.setattr(tensorboard, "write_weight_histograms", broken)
    status, out, err = train(capsys, data_dir, tmp_path / "run")
    assert status == 0, err
    assert out.count("warning: TensorBoard's confusion matrices left out: RuntimeError") == 1
    assert "warning: TensorBoard's weight histograms not written: RuntimeError" in out
    assert error_lines(out + err) == []
    assert glob.glob(str(tmp_path / "run" / "tensorboard" / "events.out.tfevents*"))


# A run killed at any moment resumes to the uninterrupted run's numbers.


@pytest.mark.slow
def test_kill_9_at_random_moments_then_resume_gives_the_uninterrupted_numbers(
    capsys, data_dir, tmp_path
):
    args = ["--data_dir", str(data_dir), *TINY, "--epochs", "4"]
    command = [sys.executable, "-m", "tf_resnet9.train", *args]
    whole = tmp_path / "whole"
    start = time.perf_counter()
    subprocess.run([*command, "--workdir", str(whole)], cwd=ROOT, check=True, capture_output=True)
    wall = time.perf_counter() - start  # the moments spread over a whole run's time
    for moment in random.Random(27).sample(range(5, 100), 3):  # percent of it
        workdir = tmp_path / f"killed-{moment}"
        process = subprocess.Popen(
            [*command, "--workdir", str(workdir)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(wall * moment / 100)
        process.send_signal(signal.SIGKILL)
        process.wait()
        again = ["--resume"] if glob.glob(str(workdir / "checkpoints" / "epoch-*.npz")) else []
        status, _, err = run_in_process(capsys, *args, "--workdir", workdir, *again)
        assert status == 0, (moment, err)
        assert_same_numbers(workdir, whole)
