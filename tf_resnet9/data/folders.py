"""Class folders: `DIR/train/<class>/*` and `DIR/test/<class>/*` (or `DIR/train/` alone), the
layout `keras.utils.image_dataset_from_directory` and torchvision's `ImageFolder` read.

The rules, and why (the image files' own: `tf_resnet9.data.images`):
- Classes: the folders in train/, sorted by name (Python's `sorted`, as both readers sort);
  label k is the k-th. Hidden folders (`.ipynb_checkpoints`) are not classes. A class folder
  is searched recursively (symbolic links to folders inside it not followed, as Keras).
- Files: those ending in .jpg, .jpeg, .png, .bmp or .gif (any case); others (README.txt,
  Thumbs.db) and hidden files are ignored, counted in the record with a few named.
- A class with no image file, fewer than two classes, or a test/ folder naming a class
  train/ lacks: refused (the model could never predict the first, nor be scored on the
  last). A test/ lacking some of train/'s classes is allowed (the record names them).
- Unreadable or odd files (`images.ImageFileError`): refused in one error that names the
  first few, each with why, and counts them all, found in one pass over every file so
  that one fix-and-rerun suffices. `skip_bad=True` skips them instead, counted and named in
  the record. Refusing is the default: a silently smaller data set changes the results.
- Size: every image becomes `image_size` x `image_size`; without one, the most common size
  of train/'s images (ties: the first in file order), which must be square. A folder of one
  size then trains at it untouched (the CIFAR copy at 32, a 64x64 folder at 64), and the
  strays, the minority, are resized.
- Order: the files of each split are listed class by class, sorted, then put in a fixed
  random order: numpy's `default_rng(0)`, one permutation of the training files, then one
  of the test files. The official CIFAR files are in random order; so is this, so that
  anything that takes the first N training images (the faster recipe's whitening takes
  10,000) sees every class. It is the order the shared converter
  (`cifar10_from_jpeg.py`) writes the pickled files in, so a class-folder copy of CIFAR-10
  written class by class in the source's order reads as the very same arrays.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import os
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from tf_resnet9.data import images as image_files
from tf_resnet9.errors import DatasetError

TRAIN, TEST = "train", "test"
ORDER_SEED = 0  # the fixed random order of each split (module docstring)
MAX_NAMED = 5  # bad files named in the error; the rest are counted
MAX_EXAMPLES = 10  # files named per kind in the record
SKIP_BAD_FLAG = "--skip_bad_images"  # the run's flag for `skip_bad`, named in the error
# Bump when a rule that changes the decoded pixels changes: a cached copy is then redone.
RULES_VERSION = 1

Split = tuple[np.ndarray, np.ndarray]  # uint8 images (N, S, S, 3), int32 labels (N,)


@dataclasses.dataclass(frozen=True)
class FolderSource:
    """A class folder, as `Splits.source`: `str()` is how a run names it."""

    path: str
    kind: str = "class folder"

    def __str__(self) -> str:
        return f"class folder {self.path}"


class FolderData(NamedTuple):
    """A class folder read: `test` is None where the folder has no test/."""

    source: FolderSource
    class_names: tuple[str, ...]
    train: Split
    test: Split | None
    record: dict


@dataclasses.dataclass
class _Listing:
    """One split's image files (relative to the data folder, in file order), their labels,
    and the files ignored."""

    files: list[str]
    labels: list[int]
    ignored: list[str]


def is_class_folder(path: str | os.PathLike) -> bool:
    """Whether `path` has the class-folder layout (a train/ folder)."""
    return os.path.isdir(os.path.join(os.fspath(path), TRAIN))


def read_class_folder(
    root: str | os.PathLike,
    image_size: int | None = None,
    skip_bad: bool = False,
    cache_dir: str | os.PathLike | None = None,
) -> FolderData:
    """Reads a class folder under the rules of the module docstring.

    Args:
        root: The folder holding train/ (and test/).
        image_size: The size every image is made (square); None: train/'s most common.
        skip_bad: Skip unreadable or odd files (counted in the record) instead of refusing.
        cache_dir: Decode into .npy files there, opened memory-mapped (the images then stay
            on disk, for sets larger than memory: `tf_resnet9.data.streaming`), and reuse
            them while the folder's files (names, sizes, modification times), the image
            size and the rules are unchanged. None: decode into memory.

    Returns:
        The class names, uint8 images (N, S, S, 3) and int32 labels of train/ and test/,
        and the record of what was read (results.json's "data").

    Raises:
        DatasetError: the layout is wrong, or files are unreadable or odd (one line naming
            the first few; see the module docstring).
    """
    root = os.path.abspath(os.path.expanduser(os.fspath(root)))
    class_names = _class_names(root)
    listings = {TRAIN: _list_split(root, TRAIN, class_names)}
    if os.path.isdir(os.path.join(root, TEST)):
        listings[TEST] = _list_split(root, TEST, class_names)
    cached = _cache_paths(root, listings, image_size, skip_bad, cache_dir)
    if cached and all(os.path.exists(p) for k, p in cached.items() if not k.endswith(".tmp")):
        return _from_cache(root, class_names, cached, reused=True)
    headers, bad = _read_headers(root, listings)
    size, size_from = _image_size(image_size, listings[TRAIN], headers)
    splits, decode_bad = _decode_splits(root, listings, headers, bad, size, cached)
    bad |= decode_bad
    if bad and not skip_bad:
        raise DatasetError(_bad_files_message(root, bad))
    splits = {name: _without(split, decode_bad, name) for name, split in splits.items()}
    record = _record(root, class_names, listings, headers, bad, size, size_from, splits)
    _check_classes(root, class_names, splits)
    if cached:
        _write_cache(cached, splits, record)
        return _from_cache(root, class_names, cached, reused=False)
    test = splits[TEST][:2] if TEST in splits else None
    record["cached"] = None
    return FolderData(FolderSource(root), class_names, splits[TRAIN][:2], test, record)


def _class_names(root: str) -> tuple[str, ...]:
    train = os.path.join(root, TRAIN)
    if not os.path.isdir(root):
        raise DatasetError(f"{root}: no such folder (expected a class folder: train/<class>/*).")
    if not os.path.isdir(train):
        raise DatasetError(
            f"{root}: no train/ folder: a class folder holds train/<class>/* images "
            "(and test/<class>/*)."
        )
    names = sorted(_subfolders(train))
    if len(names) < 2:
        raise DatasetError(
            f"{train}: {len(names)} class folder{'s' if len(names) != 1 else ''}: "
            "expected one folder per class, two or more."
        )
    return tuple(names)


def _subfolders(path: str) -> list[str]:
    with os.scandir(path) as entries:
        return [e.name for e in entries if e.is_dir() and not e.name.startswith(".")]


def _list_split(root: str, split: str, class_names: Sequence[str]) -> _Listing:
    """The image files of train/ or test/, class by class, sorted within each class."""
    top = os.path.join(root, split)
    folders = _subfolders(top)
    unknown = sorted(set(folders) - set(class_names))
    if unknown:
        verb = "is not a class" if len(unknown) == 1 else "are not classes"
        raise DatasetError(
            f"{top}: {', '.join(unknown)} {verb} of train/ (its classes: {', '.join(class_names)})."
        )
    listing = _Listing([], [], [])
    with os.scandir(top) as entries:  # files beside the class folders are no class's
        listing.ignored += sorted(f"{split}/{e.name}" for e in entries if not e.is_dir())
    empty = []
    for label, name in enumerate(class_names):
        if name not in folders:
            continue  # a test/ without this class (train/ has them all)
        files, ignored = _class_files(os.path.join(top, name))
        if not files:
            empty.append(f"{split}/{name}")
        listing.files += [f"{split}/{name}/{f}" for f in files]
        listing.labels += [label] * len(files)
        listing.ignored += [f"{split}/{name}/{f}" for f in ignored]
    if empty:
        extensions = ", ".join(image_files.EXTENSIONS)
        raise DatasetError(
            f"{root}: {', '.join(empty)}: no image files ({extensions}): add images or "
            "remove the folder."
        )
    return listing


def _class_files(folder: str) -> tuple[list[str], list[str]]:
    """(image files, other files) under a class folder, relative to it, sorted."""
    files, ignored = [], []
    for parent, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in names:
            path = os.path.relpath(os.path.join(parent, name), folder).replace(os.sep, "/")
            if name.lower().endswith(image_files.EXTENSIONS) and not name.startswith("."):
                files.append(path)
            else:
                ignored.append(path)
    return sorted(files), sorted(ignored)


def _read_headers(root: str, listings: dict[str, _Listing]) -> tuple[dict, dict]:
    """({file: Header}, {file: why}) of every listed file."""
    headers, bad = {}, {}
    for listing in listings.values():
        for file in listing.files:
            try:
                headers[file] = image_files.read_header(os.path.join(root, file))
            except image_files.ImageFileError as e:
                bad[file] = str(e)
    return headers, bad


def _image_size(given: int | None, train: _Listing, headers: dict) -> tuple[int, str]:
    """(the side every image is made, where it came from)."""
    if given is not None:
        if given < 1:
            raise ValueError(f"image_size={given} is invalid: expected a positive size.")
        return given, "given"
    sizes = collections.Counter(headers[f].size for f in train.files if f in headers)
    if not sizes:
        raise DatasetError("no readable training image to take the image size from.")
    (width, height), count = sizes.most_common(1)[0]
    if width != height:
        raise DatasetError(
            f"train/'s most common image size is {width}x{height} ({count} images), not "
            "square: give --image_size N to resize every image to NxN."
        )
    return width, "the most common size of train/'s images"


def split_order(counts: Sequence[int]) -> list[np.ndarray]:
    """The fixed random order of each split's files (module docstring): one permutation
    per count, drawn one after the other from `default_rng(ORDER_SEED)`."""
    rng = np.random.default_rng(ORDER_SEED)
    return [rng.permutation(count) for count in counts]


def _decode_splits(root, listings, headers, bad, size, cached):
    """{split: (images, labels, files)} in each split's fixed random order, and {file:
    why} of the files that failed to decode. `cached`: {name: .npy path} to decode into."""
    good = {
        name: [(f, y) for f, y in zip(listing.files, listing.labels) if f not in bad]
        for name, listing in listings.items()
    }
    orders = split_order([len(pairs) for pairs in good.values()])
    splits, decode_bad = {}, {}
    for (name, pairs), order in zip(good.items(), orders):
        files = [pairs[i][0] for i in order]
        labels = np.array([pairs[i][1] for i in order], np.int32)
        shape = (len(files), size, size, 3)
        if cached:
            images = np.lib.format.open_memmap(cached[f"{name}_images.tmp"], "w+", np.uint8, shape)
        else:
            images = np.empty(shape, np.uint8)
        for k, file in enumerate(files):
            try:
                images[k] = image_files.decode(os.path.join(root, file), size)
            except image_files.ImageFileError as e:
                decode_bad[file] = str(e)
        splits[name] = (images, labels, files)
    return splits, decode_bad


def _without(split, bad: dict, name: str):
    """A split with the rows of `bad` files dropped (they failed to decode)."""
    images, labels, files = split
    keep = [k for k, f in enumerate(files) if f not in bad]
    if len(keep) == len(files):
        return split
    if not keep:
        raise DatasetError(f"{name}/: no image could be read.")
    return images[keep], labels[keep], [files[k] for k in keep]


def _check_classes(root: str, class_names, splits) -> None:
    """Refuses a training set that lost a class to skipped files."""
    counts = np.bincount(splits[TRAIN][1], minlength=len(class_names))
    empty = [f"train/{name}" for name, count in zip(class_names, counts) if count == 0]
    if empty:
        raise DatasetError(f"{root}: {', '.join(empty)}: no readable image left.")


def _bad_files_message(root: str, bad: dict) -> str:
    named = "; ".join(
        f"{file} ({why.rstrip('.')})" for file, why in sorted(bad.items())[:MAX_NAMED]
    )
    more = f"; and {len(bad) - MAX_NAMED} more" if len(bad) > MAX_NAMED else ""
    files = "file is" if len(bad) == 1 else "files are"
    return (
        f"{root}: {len(bad)} image {files} unreadable or odd: {named}{more}. "
        f"Fix or remove them, or pass {SKIP_BAD_FLAG} to leave them out."
    )


def _record(root, class_names, listings, headers, bad, size, size_from, splits) -> dict:
    """What was read, for results.json."""
    used = [f for split in splits.values() for f in split[2]]
    resized = collections.Counter(
        image_files.size_text(headers[f].size) for f in used if headers[f].size != (size, size)
    )
    converted = collections.Counter(headers[f].mode for f in used if headers[f].mode != "RGB")
    ignored = [f for listing in listings.values() for f in listing.ignored]
    record = {
        "format": "class folder",
        "path": root,
        "classes": len(class_names),
        "files": {name: len(split[2]) for name, split in splits.items()},
        "image_size": size,
        "image_size_from": size_from,
        "resized": {"count": sum(resized.values()), "from": dict(resized.most_common())},
        "converted_to_rgb": {"count": sum(converted.values()), "from": dict(converted)},
        "animated_first_frame": sum(headers[f].frames > 1 for f in used),
        "ignored_files": _examples(ignored),
        "skipped_bad_files": _examples(sorted(bad)),
        "order": f"class by class, sorted, then numpy default_rng({ORDER_SEED}) permutations",
    }
    if TEST in splits:
        present = set(splits[TEST][1].tolist())
        missing = [name for k, name in enumerate(class_names) if k not in present]
        record["test_classes_missing"] = missing
    return record


def _examples(files: list[str]) -> dict:
    return {"count": len(files), "examples": files[:MAX_EXAMPLES]}


# The decoded copy on disk (cache_dir): the .npy files of each split, and the record.


def _cache_paths(root, listings, image_size, skip_bad, cache_dir) -> dict | None:
    """{name: path} of the cached copy of this folder as it is now, or None without one.

    The key covers every listed file's name, size and modification time, the image size
    asked for and the rules' version: any change gives another key (and a new decode)."""
    if cache_dir is None:
        return None
    digest = hashlib.sha256()
    digest.update(json.dumps([RULES_VERSION, root, image_size, skip_bad]).encode())
    for listing in listings.values():
        for file in listing.files:
            stat = os.stat(os.path.join(root, file))
            digest.update(f"{file}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    folder = os.path.join(os.fspath(cache_dir), f"folder-{digest.hexdigest()[:16]}")
    os.makedirs(folder, exist_ok=True)
    paths = {"record": os.path.join(folder, "record.json")}
    for name in listings:
        for part in ("images", "labels"):
            paths[f"{name}_{part}"] = os.path.join(folder, f"{name}_{part}.npy")
            paths[f"{name}_{part}.tmp"] = os.path.join(folder, f"{name}_{part}.tmp.npy")
    return paths


def _write_cache(paths: dict, splits: dict, record: dict) -> None:
    """Moves the decoded images into place (renamed last: a copy interrupted while
    decoding is never taken for a finished one) and writes labels and record."""
    for name, (images, labels, _) in splits.items():
        tmp = paths[f"{name}_images.tmp"]
        if isinstance(images, np.memmap) and images.filename == os.path.abspath(tmp):
            images.flush()
        else:  # rows were dropped (skip_bad): the kept ones, written again
            np.save(tmp, np.asarray(images))
        np.save(paths[f"{name}_labels"], labels)
        os.replace(tmp, paths[f"{name}_images"])
    with open(paths["record"] + ".tmp", "w") as f:
        json.dump(record, f)
    os.replace(paths["record"] + ".tmp", paths["record"])


def _from_cache(root: str, class_names, paths: dict, reused: bool) -> FolderData:
    with open(paths["record"]) as f:
        record = json.load(f)
    splits = {
        name: (
            np.load(paths[f"{name}_images"], mmap_mode="r"),
            np.load(paths[f"{name}_labels"]),
        )
        for name in (TRAIN, TEST)
        if f"{name}_images" in paths
    }
    record["cached"] = {"folder": os.path.dirname(paths["record"]), "reused": reused}
    return FolderData(FolderSource(root), class_names, splits[TRAIN], splits.get(TEST), record)
