"""The data side's programs end to end on tiny data: the JPEG copy written as a class folder
and checked against the pickled files, and the streaming benchmark. Their figures are
measured in benchmarks/, never here."""

import json

import pytest

from benchmarks import cifar_jpeg_folder
from tests.commands import run_module
from tests.image_folders import pickled_like_the_converter, write_cifar_npz


@pytest.fixture(scope="module")
def copies(tmp_path_factory):
    """(a class folder of a tiny JPEG copy, the pickled files made from the same JPEGs)."""
    root = tmp_path_factory.mktemp("jpeg-copy")
    npz = write_cifar_npz(root / "copy.npz", {"train": 10, "test": 3})
    cifar_jpeg_folder.write_jpeg_folder(root / "copy.npz", root / "folder")
    return root, pickled_like_the_converter(root / "pickled", npz)


def test_the_check_finds_the_two_copies_identical(copies):
    root, pickled = copies
    findings = cifar_jpeg_folder.check(str(root / "folder"), pickled)
    assert all(findings["identical"].values()) and set(findings["identical"]) == {
        "train_images", "train_labels", "test_images", "test_labels", "class_names",
        "normalization",
    }  # fmt: skip
    assert (findings["train_images"], findings["test_images"]) == (100, 30)


@pytest.mark.slow
def test_the_writer_and_its_check_run_as_a_command(copies, tmp_path):
    root, pickled = copies
    out = tmp_path / "check.json"
    result = run_module(
        "benchmarks.cifar_jpeg_folder", tmp_path / "f", "--npz", root / "copy.npz",
        "--check", pickled, "--out", out,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "wrote" in result.stdout and f"results: {out}" in result.stdout
    report = json.loads(out.read_text())
    assert report["benchmark"] == "cifar_jpeg_folder" and all(report["identical"].values())
    assert "pillow" in report["versions"]


@pytest.mark.slow
def test_the_streaming_benchmark_writes_a_report(copies, tmp_path):
    root, _ = copies
    out = tmp_path / "streaming.json"
    result = run_module(
        "benchmarks.streaming", "--data_dir", root / "folder", "--dataset", "folder",
        "--cache_dir", tmp_path / "cache", "--images", 64, "--batch_size", 16,
        "--width", 0.0625, "--repeats", 1, "--loader_repeats", 1, "--out", out,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["benchmark"] == "streaming"
    ways = set(report["loader_images_per_s"])
    assert "grain, from memory" in ways and "grain, from disk (memory-mapped)" in ways
    assert set(report["training_images_per_s"]) >= {"in memory (DeviceInput)", "streamed (grain)"}
    assert all(rate > 0 for rate in report["training_images_per_s"].values())
