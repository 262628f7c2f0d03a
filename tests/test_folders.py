"""Class folders: the layout, the image rules (colour, size, order), every kind of bad file,
the decoded copy on disk, and a class-folder copy of CIFAR read as the pickled files made
from the same JPEGs."""

import json
import os
import re

import numpy as np
import pytest
from PIL import Image

from benchmarks.cifar_jpeg_folder import write_jpeg_folder
from tests.image_folders import (
    pattern,
    pickled_like_the_converter,
    rgb_file,
    save,
    write_cifar_npz,
    write_class_folder,
)
from tf_resnet9.data import folders
from tf_resnet9.data.folders import read_class_folder, split_order
from tf_resnet9.data.splits import load_splits
from tf_resnet9.errors import ConfigError, DatasetError
from tf_resnet9.outputs.console import read_note

# A folder of two sizes, four modes and four formats; the file order (class by class,
# sorted, nested folders included) is what the reader lists before its fixed shuffle.
TRAIN = {
    "ant": [
        {"name": "a.png"},
        {"name": "b.bmp", "mode": "L"},
        {"name": "c.gif", "mode": "P"},
        {"name": "d.jpg", "format": "JPEG"},
        {"name": "sub/e.png", "mode": "RGBA"},
    ],
    "cat": [
        {"name": "a.png", "mode": "L"},
        {"name": "b.png", "size": (12, 6)},
        {"name": "c.png", "size": (16, 16)},
    ],
    "dog": [{"name": "a.png", "mode": "P"}, {"name": "b.PNG"}],
}
TEST = {"ant": [{"name": "a.png"}], "cat": [{"name": "a.png", "size": (16, 16)}]}


def expected_pixels(path: str, size: int) -> np.ndarray:
    """The rule, spelled with Pillow directly: RGB by convert, BICUBIC to size x size."""
    with Image.open(path) as image:
        rgb = image.convert("RGB")
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(rgb)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    root = tmp_path_factory.mktemp("mixed")
    train = write_class_folder(root, "train", TRAIN)
    test = write_class_folder(root, "test", TEST)
    for ignored in ("train/dog/notes.txt", "train/dog/.hidden.png", "train/README.md"):
        with open(root / ignored, "w") as f:
            f.write("not an image")
    rgb_file(root / "train" / ".ipynb_checkpoints" / "x.png")  # a hidden folder: no class
    return root, train, test


def test_a_mixed_folder_reads_by_the_rules(mixed):
    root, train_files, test_files = mixed
    data = read_class_folder(root)
    assert data.class_names == ("ant", "cat", "dog")  # sorted folder names
    assert data.source.path == str(root) and str(data.source) == f"class folder {root}"
    (x_train, y_train), (x_test, y_test) = data.train, data.test
    # 8x8 is the most common size: every image is made 8x8, the 12x6 and 16x16 resized.
    assert x_train.shape == (10, 8, 8, 3) and x_train.dtype == np.uint8
    assert y_train.dtype == np.int32 and x_test.shape == (2, 8, 8, 3)
    train_order, test_order = split_order([10, 2])
    listed_labels = np.array([0] * 5 + [1] * 3 + [2] * 2)
    np.testing.assert_array_equal(y_train, listed_labels[train_order])
    np.testing.assert_array_equal(y_test, np.array([0, 1])[test_order])
    for k, i in enumerate(train_order):
        np.testing.assert_array_equal(x_train[k], expected_pixels(train_files[i], 8))
    for k, i in enumerate(test_order):
        np.testing.assert_array_equal(x_test[k], expected_pixels(test_files[i], 8))
    record = data.record
    assert record["files"] == {"train": 10, "test": 2}
    assert record["image_size"] == 8
    assert record["image_size_from"] == "the most common size of train/'s images"
    assert record["resized"] == {"count": 3, "from": {"16x16": 2, "12x6": 1}}
    assert record["converted_to_rgb"] == {"count": 5, "from": {"L": 2, "P": 2, "RGBA": 1}}
    assert record["ignored_files"]["count"] == 3
    assert set(record["ignored_files"]["examples"]) == {
        "train/README.md", "train/dog/.hidden.png", "train/dog/notes.txt",
    }  # fmt: skip
    assert record["test_classes_missing"] == ["dog"]
    assert record["skipped_bad_files"]["count"] == 0
    json.dumps(record)  # results.json can hold it
    assert read_note(record) == (  # the run's console line
        "read: images 8x8 (the most common size of train/'s images); 3 resized (from 16x16: "
        "2, 12x6: 1); 5 converted to RGB (from L: 2, P: 2, RGBA: 1)"
    )


def test_grey_is_copied_to_three_channels_and_alpha_is_dropped(tmp_path):
    pixels = pattern((4, 4), seed=1)
    grey = Image.fromarray(pixels).convert("L")
    rgba = np.concatenate([pixels, np.zeros((4, 4, 1), np.uint8)], axis=-1)  # transparent
    save(tmp_path / "train" / "a" / "grey.png", grey)
    save(tmp_path / "train" / "b" / "rgba.png", Image.fromarray(rgba, "RGBA"))
    data = read_class_folder(tmp_path)
    by_label = {int(y): x for x, y in zip(*data.train)}
    np.testing.assert_array_equal(by_label[0], np.repeat(np.asarray(grey)[..., None], 3, -1))
    np.testing.assert_array_equal(by_label[1], pixels)  # the colour under the alpha, kept


def test_the_image_size_given_resizes_every_image(mixed):
    root, train_files, _ = mixed
    data = read_class_folder(root, image_size=6)
    assert data.train[0].shape == (10, 6, 6, 3) and data.record["image_size_from"] == "given"
    assert data.record["resized"]["count"] == 12  # none is 6x6
    (order, _) = split_order([10, 2])
    np.testing.assert_array_equal(data.train[0][0], expected_pixels(train_files[order[0]], 6))


def test_a_most_common_size_that_is_not_square_asks_for_image_size(tmp_path):
    for k in range(2):
        rgb_file(tmp_path / "train" / f"c{k}" / "a.png", size=(12, 6))
    with pytest.raises(DatasetError, match="most common image size is 12x6 .* --image_size"):
        read_class_folder(tmp_path)
    assert read_class_folder(tmp_path, image_size=4).train[0].shape == (2, 4, 4, 3)


def test_an_animated_gif_gives_its_first_frame(tmp_path):
    frames = [Image.fromarray(pattern((8, 8), seed=s)).convert("P") for s in (1, 2, 3)]
    path = tmp_path / "train" / "a" / "anim.gif"
    os.makedirs(path.parent)
    frames[0].save(path, save_all=True, append_images=frames[1:])
    rgb_file(tmp_path / "train" / "b" / "still.png")
    data = read_class_folder(tmp_path)
    assert data.record["animated_first_frame"] == 1
    first = data.train[0][data.train[1] == 0][0]
    np.testing.assert_array_equal(first, np.asarray(frames[0].convert("RGB")))


# The layout.


def test_a_missing_folder_or_one_without_train_is_named(tmp_path):
    with pytest.raises(DatasetError, match=f"^{re.escape(str(tmp_path / 'none'))}: no such"):
        read_class_folder(tmp_path / "none")
    rgb_file(tmp_path / "cat" / "a.png")  # class folders, but not under train/
    with pytest.raises(DatasetError, match="no train/ folder: a class folder holds train/<"):
        read_class_folder(tmp_path)


def test_one_class_is_refused(tmp_path):
    rgb_file(tmp_path / "train" / "cat" / "a.png")
    with pytest.raises(DatasetError, match="train: 1 class folder: expected .* two or more"):
        read_class_folder(tmp_path)


def test_an_empty_class_is_refused_by_name(tmp_path):
    rgb_file(tmp_path / "train" / "cat" / "a.png")
    os.makedirs(tmp_path / "train" / "dog")
    with open(tmp_path / "train" / "dog" / "readme.txt", "w") as f:
        f.write("no images here")
    with pytest.raises(DatasetError, match="train/dog: no image files \\(.jpg, .jpeg, .png"):
        read_class_folder(tmp_path)


def test_a_test_class_that_train_lacks_is_refused(tmp_path):
    for name in ("cat", "dog"):
        rgb_file(tmp_path / "train" / name / "a.png")
    rgb_file(tmp_path / "test" / "cat" / "a.png")
    rgb_file(tmp_path / "test" / "zebra" / "a.png")
    with pytest.raises(DatasetError, match="test: zebra is not a class of train/ \\(its cl"):
        read_class_folder(tmp_path)


def test_train_alone_holds_out_the_test_set(tmp_path):
    for name in ("cat", "dog"):
        for k in range(6):
            rgb_file(tmp_path / "train" / name / f"{k}.png", seed=k)
    assert read_class_folder(tmp_path).test is None
    splits = load_splits(tmp_path, "folder", val_split=4)
    assert (len(splits.train[1]), len(splits.test[1]), splits.val) == (8, 4, None)
    assert splits.read["test_set"] == "the 4 images of --val_split"
    assert np.bincount(splits.test[1]).tolist() == [2, 2]  # class-balanced
    with pytest.raises(ConfigError, match="val_split=0 is invalid: class folder .* has no test"):
        load_splits(tmp_path, "folder")


def test_a_class_folder_read_as_cifar_says_to_pass_dataset_folder(mixed):
    root, _, _ = mixed
    assert folders.is_class_folder(root) and not folders.is_class_folder(root / "train")
    with pytest.raises(DatasetError, match="(?s)CIFAR-10 not found.* is a class folder \\(train/<"):
        load_splits(root, "cifar10")


def test_a_class_folder_needs_its_path(tmp_path):
    with pytest.raises(ConfigError, match="data_dir=None is invalid: --dataset folder reads"):
        load_splits(None, "folder")


# Bad files: every kind, all named in one error, or skipped with skip_bad.


def truncated(path) -> None:
    with open(path, "rb") as f:
        content = f.read()
    with open(path, "wb") as f:
        f.write(content[: len(content) // 2])


def write_bad_files(root) -> dict[str, str]:
    """One file of each bad kind under train/bad/ (beside one good image per class);
    returns {file: the reason's words}."""
    rgb_file(root / "train" / "good" / "a.png")
    rgb_file(root / "train" / "bad" / "ok.png")
    bad = root / "train" / "bad"
    with open(bad / "text.jpg", "w") as f:
        f.write("not an image")
    open(bad / "empty.png", "wb").close()
    rgb_file(bad / "cut.jpg", size=(32, 32), file_format="JPEG")
    truncated(bad / "cut.jpg")
    rgb_file(bad / "cut.png", size=(32, 32))
    truncated(bad / "cut.png")
    rgb_file(bad / "tiff.png", file_format="TIFF")  # a format other than the four
    save(bad / "deep.png", Image.fromarray(np.zeros((8, 8), np.uint16)))  # 16-bit grey
    os.symlink(bad / "nowhere.png", bad / "link.png")  # a broken link
    return {
        "train/bad/text.jpg": "not an image Pillow can read",
        "train/bad/empty.png": "not an image Pillow can read",
        "train/bad/cut.jpg": "truncated or corrupt",
        "train/bad/cut.png": "truncated or corrupt",
        "train/bad/tiff.png": "a TIFF image: expected JPEG, PNG, BMP, GIF",
        "train/bad/deep.png": "mode I;16 (16-bit or float pixels)",
        "train/bad/link.png": "cannot read it (no such file: a broken link?)",
    }


def test_every_bad_file_is_counted_and_the_first_few_named_in_one_line(tmp_path, monkeypatch):
    bad = write_bad_files(tmp_path)
    with pytest.raises(DatasetError) as error:
        read_class_folder(tmp_path)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"{tmp_path}: 7 image files are unreadable or odd: ")
    assert message.endswith(
        "; and 2 more. Fix or remove them, or pass --skip_bad_images to leave them out."
    )
    named = sorted(bad)[: folders.MAX_NAMED]  # the first few, in file order
    for file in named:
        assert f"{file} ({bad[file]}" in message
    # One at a time, each kind is named with its reason.
    monkeypatch.setattr(folders, "MAX_NAMED", len(bad))
    with pytest.raises(DatasetError) as error:
        read_class_folder(tmp_path)
    for file, reason in bad.items():
        assert f"{file} ({reason}" in str(error.value)


def test_a_decompression_bomb_is_refused(tmp_path, monkeypatch):
    rgb_file(tmp_path / "train" / "a" / "small.png")
    rgb_file(tmp_path / "train" / "b" / "huge.png", size=(64, 64))
    # Pillow refuses images over twice MAX_IMAGE_PIXELS; 64x64 stands in for a huge one.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(DatasetError, match="train/b/huge.png \\(too large \\(Image size"):
        read_class_folder(tmp_path)


def test_skip_bad_leaves_them_out_and_counts_them(tmp_path):
    bad = write_bad_files(tmp_path)
    data = read_class_folder(tmp_path, skip_bad=True)
    assert data.class_names == ("bad", "good")
    assert sorted(data.train[1].tolist()) == [0, 1]  # bad/ok.png and good/a.png
    skipped = data.record["skipped_bad_files"]
    assert skipped["count"] == 7 and skipped["examples"] == sorted(bad)
    assert data.record["files"] == {"train": 2}
    assert read_note(data.record).endswith("; 7 unreadable or odd files skipped")


def test_a_class_left_empty_by_skipped_files_is_refused(tmp_path):
    rgb_file(tmp_path / "train" / "good" / "a.png")
    os.makedirs(tmp_path / "train" / "bad")
    rgb_file(tmp_path / "train" / "bad" / "cut.png", size=(32, 32))
    truncated(tmp_path / "train" / "bad" / "cut.png")
    with pytest.raises(DatasetError, match="train/bad: no readable image left"):
        read_class_folder(tmp_path, skip_bad=True)


# The decoded copy on disk.


def test_the_copy_on_disk_is_memory_mapped_reused_and_redone_when_a_file_changes(mixed, tmp_path):
    root, _, _ = mixed
    in_memory = read_class_folder(root)
    first = read_class_folder(root, cache_dir=tmp_path)
    assert isinstance(first.train[0], np.memmap)
    assert first.record["cached"]["reused"] is False
    again = read_class_folder(root, cache_dir=tmp_path)
    assert again.record["cached"] == {"folder": first.record["cached"]["folder"], "reused": True}
    for data in (first, again):
        for split in ("train", "test"):
            for k in range(2):
                np.testing.assert_array_equal(getattr(data, split)[k], getattr(in_memory, split)[k])
    assert {k: v for k, v in again.record.items() if k != "cached"} == {
        k: v for k, v in in_memory.record.items() if k != "cached"
    }
    os.utime(root / "train" / "ant" / "a.png", ns=(0, 0))  # a changed file: another key
    redone = read_class_folder(root, cache_dir=tmp_path)
    assert redone.record["cached"]["folder"] != first.record["cached"]["folder"]


def test_subsets_of_a_copy_on_disk_stay_on_disk(mixed, tmp_path):
    root, _, _ = mixed
    on_disk = load_splits(root, "folder", val_split=3, train_limit=5, cache_dir=tmp_path)
    in_memory = load_splits(root, "folder", val_split=3, train_limit=5)
    assert isinstance(on_disk.train[0], np.memmap)
    for split in ("train", "val", "test"):
        for k in range(2):
            np.testing.assert_array_equal(getattr(on_disk, split)[k], getattr(in_memory, split)[k])
    assert on_disk.normalization == in_memory.normalization


# A class-folder copy of CIFAR-10's JPEGs against the pickled files made from them.


def test_a_class_folder_copy_reads_as_the_pickled_files_from_the_same_jpegs(tmp_path):
    npz = write_cifar_npz(tmp_path / "copy.npz", {"train": 6, "test": 3})
    assert write_jpeg_folder(tmp_path / "copy.npz", tmp_path / "folder") == {
        "train": 60, "test": 30,
    }  # fmt: skip
    pickled = pickled_like_the_converter(tmp_path / "pickled", npz)
    from_folder = load_splits(tmp_path / "folder", "folder")
    from_pickles = load_splits(pickled, "cifar10")
    for split in ("train", "test"):
        for k in range(2):
            np.testing.assert_array_equal(
                getattr(from_folder, split)[k], getattr(from_pickles, split)[k]
            )
    assert from_folder.class_names == from_pickles.class_names
    assert from_folder.normalization == from_pickles.normalization
    # The subsets a run draws are then the same too.
    a = load_splits(tmp_path / "folder", "folder", val_split=10, train_limit=20, subset_seed=3)
    b = load_splits(pickled, "cifar10", val_split=10, train_limit=20, subset_seed=3)
    np.testing.assert_array_equal(a.train[0], b.train[0])
    np.testing.assert_array_equal(a.val[0], b.val[0])


def test_the_writer_keeps_the_first_of_each_class_as_the_converter(tmp_path):
    write_cifar_npz(tmp_path / "copy.npz", {"train": 4, "test": 2})
    assert write_jpeg_folder(tmp_path / "copy.npz", tmp_path / "f", train=20, test=10) == {
        "train": 20, "test": 10,
    }  # fmt: skip
    assert sorted(os.listdir(tmp_path / "f" / "train" / "bird")) == ["08.jpg", "09.jpg"]
