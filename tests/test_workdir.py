"""The run's folder: made up front, removed after a failure only while empty."""

import os

import pytest

from tf_resnet9.errors import ConfigError
from tf_resnet9.outputs.run_folder import (
    LOCK_FILE,
    FolderLock,
    RunFolders,
    claimed,
    make_folder,
    remove_if_empty,
    remove_temporary,
)


def test_removes_what_it_created_and_nothing_else(tmp_path):
    (tmp_path / "runs").mkdir()
    created = make_folder(tmp_path / "runs" / "a" / "b")
    assert created == [str(tmp_path / "runs" / "a" / "b"), str(tmp_path / "runs" / "a")]
    remove_if_empty(created)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]
    assert list((tmp_path / "runs").iterdir()) == []


def test_keeps_a_folder_with_files(tmp_path):
    created = make_folder(tmp_path / "run")
    (tmp_path / "run" / "results.json").write_text("{}")
    remove_if_empty(created)
    assert (tmp_path / "run" / "results.json").exists()


def test_an_existing_folder_is_never_removed(tmp_path):
    assert make_folder(tmp_path) == []


def test_a_path_that_cannot_be_a_folder_is_named(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="workdir=.*file/run.* cannot be created"):
        make_folder(tmp_path / "file" / "run")


def test_an_interrupted_write_leaves_nothing_after_a_clean_stop(tmp_path):
    for folder in (tmp_path, tmp_path / "checkpoints"):
        folder.mkdir(exist_ok=True)
        (folder / ".tmp-abc123").write_bytes(b"half")
        (folder / "kept.json").write_text("{}")
    (tmp_path / ".tmp-saved_model").mkdir()  # a folder half-written
    remove_temporary(tmp_path)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["checkpoints", "kept.json", "kept.json"]


def test_a_clean_stop_of_several_seeds_cleans_every_seeds_folder(tmp_path):
    for folder in (tmp_path / "seed-3", tmp_path / "seed-4" / "checkpoints"):
        folder.mkdir(parents=True)
        (folder / ".tmp-abc123").write_bytes(b"half")
        (folder / "kept.json").write_text("{}")
    remove_temporary(tmp_path)
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    assert left == [
        "seed-3",
        "seed-3/kept.json",
        "seed-4",
        "seed-4/checkpoints",
        "seed-4/checkpoints/kept.json",
    ]


def test_a_seeds_folder_that_holds_a_run_refuses_the_run_of_seeds(tmp_path):
    # Only seed 4's folder holds a run: the run of seeds 3 and 4 is refused, naming it.
    folders = RunFolders.of(tmp_path / "run", [3, 4])
    (tmp_path / "run" / "seed-4").mkdir(parents=True)
    (tmp_path / "run" / "seed-4" / "results.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"seed-4 holds another run \(results.json\)"):
        with claimed(folders):
            pass
    assert not (tmp_path / "run" / "seed-3").exists()  # made for the run, removed again


def test_a_busy_seeds_folder_stops_the_run_of_seeds(tmp_path):
    folders = RunFolders.of(tmp_path / "run", [3, 4])
    (tmp_path / "run" / "seed-4").mkdir(parents=True)
    holder = FolderLock(tmp_path / "run" / "seed-4")
    holder.acquire()
    try:
        with pytest.raises(ConfigError, match="another run is writing it"):
            with claimed(folders):
                pass
    finally:
        holder.release()
    with claimed(folders):  # free again, and now this process holds it
        held = (tmp_path / "run" / "seed-4" / LOCK_FILE).read_text()
        assert held.startswith(f"pid {os.getpid()} on ")
