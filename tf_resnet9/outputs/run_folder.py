"""A run's folder (`--workdir`): what goes where in it, its default name, and the rules that
keep it the user's: one writer at a time (`FolderLock`), never over another run's files
without being told (`claimed`), nothing half-written left after a stop. (No Keras here: the
command line's Ctrl-C handler uses it.)

A run of one seed writes into the workdir itself; a run of several seeds writes each seed's
run into WORKDIR/seed-<n> (an ordinary run's folder) and their summary beside them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import fcntl
import glob
import os
import socket
from collections.abc import Iterator, Sequence

from tf_resnet9.errors import CheckpointError, ConfigError
from tf_resnet9.outputs.files import TEMPORARY_PREFIX

RESULTS_FILE = "results.json"
REPORT_FILE = "report.png"
TENSORBOARD_FOLDER = "tensorboard"
CHECKPOINT_FOLDER = "checkpoints"  # what a file in it is called: `tf_resnet9.outputs.checkpoints`
# A run of several seeds (--seeds): a run folder per seed, and their summary beside them.
SEEDS_FILE = "seeds.json"
SEEDS_PLOT = "seeds.png"
SEED_FOLDER = "seed-{seed}"
LOCK_FILE = ".lock"  # held (flock) by the process writing the folder; who it is, inside
# What shows that a folder holds a run: its results, its checkpoints, its models, a
# summary of seeds, seeds' folders.
_RUN_FILES = (RESULTS_FILE, SEEDS_FILE, CHECKPOINT_FOLDER, "*.keras", "seed-[0-9]*")


def model_file(model: str) -> str:
    """The trained model's file name: the network's name, e.g. resnet9.keras."""
    return f"{model}.keras"


def timestamp(now: datetime.datetime | None = None) -> str:
    """The local time as names of runs and result files use it, e.g. 20261202-031507 (no
    colons: they are not allowed in Windows file names)."""
    return (now or datetime.datetime.now()).strftime("%Y%m%d-%H%M%S")


def default_workdir(model: str, recipe: str, now: datetime.datetime | None = None) -> str:
    """runs/<model>-<recipe>-<time>: TensorBoard's list of runs then says what each was."""
    return os.path.join("runs", f"{model}-{recipe}-{timestamp(now)}")


def seed_folder(workdir: str | os.PathLike, seed: int) -> str:
    """Seed `seed`'s run folder in the workdir of a run of several seeds."""
    return os.path.join(os.fspath(workdir), SEED_FOLDER.format(seed=seed))


@dataclasses.dataclass(frozen=True)
class RunFolders:
    """Where a run's files go.

    Attributes:
        workdir: The run's folder (`--workdir`); None: nothing is written.
        runs: Each seed's run folder, in the order of the seeds: the workdir itself for a
            run of one seed (None each without a workdir).
        writes: Whether this process writes them (of several processes, the first does;
            the others read the checkpoints they resume from).
    """

    workdir: str | None
    runs: tuple[str | None, ...]
    writes: bool = True

    @classmethod
    def of(
        cls, workdir: str | os.PathLike | None, seeds: Sequence[int], writes: bool = True
    ) -> RunFolders:
        if workdir is None:
            return cls(None, (None,) * len(seeds), writes)
        workdir = os.fspath(workdir)
        if len(seeds) == 1:
            return cls(workdir, (workdir,), writes)
        return cls(workdir, tuple(seed_folder(workdir, seed) for seed in seeds), writes)

    @property
    def written(self) -> tuple[str | None, ...]:
        """Each seed's run folder where this process writes it, else None."""
        return self.runs if self.writes else (None,) * len(self.runs)

    @property
    def folders(self) -> list[str]:
        """Every folder the run writes: the workdir first, then each seed's."""
        return list(dict.fromkeys(f for f in (self.workdir, *self.runs) if f is not None))


def missing_folders(path: str | os.PathLike) -> list[str]:
    """`path` and those of its parents that do not exist yet, deepest first: what making it
    creates, and what `remove_if_empty` may take away again."""
    missing, path = [], os.path.abspath(os.fspath(path))
    while not os.path.exists(path):
        missing.append(path)
        path = os.path.dirname(path)
    return missing


def make_folder(path: str | os.PathLike) -> list[str]:
    """Creates `path` and its missing parents now, so that a bad path fails before a run.

    Returns:
        The directories created, deepest first (for `remove_if_empty`).

    Raises:
        ConfigError: it cannot be created; the error names it.
    """
    created = missing_folders(path)
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise ConfigError("workdir", os.fspath(path), f"cannot be created ({e}).") from None
    return created


def remove_if_empty(created: Sequence[str]) -> None:
    """Removes what `make_folder` created, deepest first, as far as it is still empty (a
    lock file left by a killed run counts as nothing): a run that fails leaves no empty
    folder behind, and never deletes a file."""
    for directory in created:
        with contextlib.suppress(OSError):
            if os.listdir(directory) == [LOCK_FILE]:
                os.remove(os.path.join(directory, LOCK_FILE))
        try:
            os.rmdir(directory)
        except OSError:
            return  # not empty, or gone: keep it and everything above it


def remove_empty_folders(folder: str | os.PathLike) -> None:
    """Removes the empty folders inside `folder` (a failed run's checkpoint or TensorBoard
    folder that got nothing), deepest first; never a file."""
    for path, _, _ in sorted(os.walk(folder), key=lambda entry: -len(entry[0])):
        if path != os.fspath(folder):
            with contextlib.suppress(OSError):
                os.rmdir(path)


def run_folders(workdir: str | os.PathLike) -> list[str]:
    """The workdir and, where it holds a run of several seeds, each seed's run folder."""
    seeds = glob.glob(os.path.join(glob.escape(os.fspath(workdir)), "seed-[0-9]*"))
    return [os.fspath(workdir), *sorted(path for path in seeds if os.path.isdir(path))]


def checkpoint_folder(run_folder: str | os.PathLike) -> str:
    return os.path.join(os.fspath(run_folder), CHECKPOINT_FOLDER)


def kept_checkpoints(workdir: str | os.PathLike) -> list[str]:
    """The checkpoint files in the workdir and its seeds' folders, oldest name first."""
    found = []
    for folder in run_folders(workdir):
        pattern = os.path.join(glob.escape(checkpoint_folder(folder)), "[!.]*")
        found += sorted(glob.glob(pattern))
    return found


def remove_temporary(workdir: str | os.PathLike) -> None:
    """Removes what interrupted writes left (`tf_resnet9.outputs.files`' temporary files
    and folders) in the workdir, its checkpoint folder and each seed's; the finished files
    stay."""
    import shutil

    for folder in run_folders(workdir):
        for place in (folder, checkpoint_folder(folder)):
            for path in glob.glob(os.path.join(glob.escape(place), TEMPORARY_PREFIX + "*")):
                if os.path.isdir(path):
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    os.remove(path)


def earlier_run(folder: str | os.PathLike) -> list[str]:
    """The files and folders in `folder` that show a run wrote there (results, checkpoints,
    models, seeds' folders), by name; empty where none does."""
    found = []
    for pattern in _RUN_FILES:
        found += sorted(glob.glob(os.path.join(glob.escape(os.fspath(folder)), pattern)))
    return [os.path.basename(path) for path in found if _holds_something(path)]


def _holds_something(path: str) -> bool:
    if not os.path.isdir(path):
        return True
    return any(not name.startswith(".") for _, _, files in os.walk(path) for name in files)


class FolderLock:
    """One writer per run folder: an exclusive `flock` on its LOCK_FILE, held while the run
    writes. The kernel drops it when the process ends, however it ends (a run killed with
    -9 leaves nothing stale); the file says who holds it, for the error of the next one.

    Raises (`acquire`):
        ConfigError: another process holds it; the message names that process.
    """

    def __init__(self, folder: str | os.PathLike):
        self.folder = os.fspath(folder)
        self.path = os.path.join(self.folder, LOCK_FILE)
        self._fd = None

    def acquire(self) -> None:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 500).decode(errors="replace").strip() or "another process"
                os.close(fd)
                raise ConfigError(
                    "workdir",
                    self.folder,
                    f"another run is writing it ({holder}): wait for it to end, or pass "
                    "another --workdir.",
                ) from None
            # A run that ended removed the file it held: lock the file at the path, not a
            # removed one that another process may be locking anew.
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        started = datetime.datetime.now().isoformat(sep=" ", timespec="seconds")
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}, since {started}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.remove(self.path)  # while still held: the next run locks a fresh file
        os.close(self._fd)
        self._fd = None


def _move_aside(workdir: str) -> str:
    """Moves everything of the workdir but its lock into a new folder beside it,
    <workdir>.replaced-<time>; returns that folder."""
    aside = f"{workdir.rstrip(os.sep)}.replaced-{timestamp()}"
    base, count = aside, 1
    while os.path.exists(aside):
        count += 1
        aside = f"{base}-{count}"
    os.mkdir(aside)
    for name in os.listdir(workdir):
        if name != LOCK_FILE:
            os.rename(os.path.join(workdir, name), os.path.join(aside, name))
    return aside


def _check_free(folders: RunFolders, resume: bool, overwrite: bool, out) -> None:
    """Refuses run folders that hold another run unless resumed or overwritten; checks that
    a resumed run has checkpoints to resume from."""
    found = {folder: earlier_run(folder) for folder in dict.fromkeys(folders.runs)}
    holding = {folder: names for folder, names in found.items() if names}
    if resume:
        if not any(CHECKPOINT_FOLDER in names for names in holding.values()):
            raise CheckpointError(
                f"{checkpoint_folder(folders.runs[0])}: no checkpoint to resume from (a run "
                "writes one after every epoch); start the run without --resume."
            )
        return
    if not holding:
        return
    if overwrite:
        print(f"--overwrite: moved the earlier run to {_move_aside(folders.workdir)}", file=out)
        return
    folder, names = next(iter(holding.items()))
    shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
    raise ConfigError(
        "workdir",
        folders.workdir,
        f"{folder} holds another run ({shown}): continue it with --resume, pass another "
        "--workdir, or --overwrite to move it aside.",
    )


@contextlib.contextmanager
def claimed(
    folders: RunFolders, resume: bool = False, overwrite: bool = False, out=None
) -> Iterator[RunFolders]:
    """The run's folders, made and locked for this process while the block runs.

    Made now (a bad path fails before the data is read) and locked (`FolderLock`: a second
    run into a busy folder stops at once); a folder holding another run's results or
    checkpoints is refused unless `resume` continues it or `overwrite` moves it aside
    (`<workdir>.replaced-<time>`); what the writes of a run killed before left half-done is
    removed. If the block fails, what interrupted writes left is removed, and the folders
    it made, where still empty; what finished epochs wrote stays.

    Raises:
        ConfigError: a folder cannot be made, is busy, or holds another run; `resume` and
            `overwrite` both asked.
        CheckpointError: `resume` finds no checkpoint.
    """
    if resume and overwrite:  # the one continues the earlier run, the other moves it away
        raise ConfigError(
            "overwrite",
            True,
            "--resume continues the run in --workdir and --overwrite moves it aside: pass "
            "one of them.",
        )
    if folders.workdir is None or not folders.writes:
        yield folders
        return
    created, locks = [], []
    try:
        for folder in folders.folders:
            created += make_folder(folder)
            locks.append(FolderLock(folder))
            locks[-1].acquire()
            if folder == folders.workdir:
                remove_temporary(folder)  # what a run killed while writing left
                _check_free(folders, resume, overwrite, out)
        yield folders
    except BaseException:
        remove_temporary(folders.workdir)
        for folder in folders.folders:
            remove_empty_folders(folder)  # e.g. a checkpoint folder whose first write failed
        raise
    finally:
        for lock in reversed(locks):
            lock.release()
        remove_if_empty(sorted(created, key=len, reverse=True))
