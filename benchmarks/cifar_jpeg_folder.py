r"""Writes the JPEG copy of CIFAR-10 (an .npz of JPEG bytes) as a class folder, and checks
that the folder reads as the pickled files made from the same JPEGs.

    python -m benchmarks.cifar_jpeg_folder OUT_DIR [--npz PATH] [--train N] [--test N]
        [--check PICKLED_DIR] [--out JSON]

Writes OUT_DIR/train/<class>/<index>.jpg and OUT_DIR/test/<class>/<index>.jpg: each file
holds the npz's own bytes (nothing decoded or encoded again), <index> is the image's place
in the npz, zero-padded so that names sort as numbers. The npz stores the images class by
class, so the folder lists them in the npz's order, and the class-folder reader's fixed
order (`tf_resnet9.data.folders`) is then the order the shared converter
(`cifar10_from_jpeg.py`) writes the pickled files in. --train/--test keep the first N/10
images of each class, as the converter does.

With --check PICKLED_DIR (what the shared converter wrote from the same .npz:
`python3 cifar10_from_jpeg.py PICKLED_DIR`), both copies are read (`load_splits`, once as
a class folder, once as the pickled files) and compared array for array; the JSON (--out,
default benchmarks/results/cifar-jpeg-folder-check.json) records the result, how long each
read took, and the command.

The .npz layout (`/work/shared/data/cifar10_jpeg_q75.npz`): train_jpeg and test_jpeg (all
JPEG files concatenated, uint8), train_offsets and test_offsets (N + 1 byte offsets),
train_labels and test_labels (N labels, class by class).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import os
import sys
import time

import numpy as np

from tf_resnet9.data.cifar import DATASETS

CLASS_NAMES = DATASETS["cifar10"].class_names
NPZ = "/work/shared/data/cifar10_jpeg_q75.npz"


def kept(labels: np.ndarray, keep: int) -> np.ndarray:
    """Indices of the images kept: all (keep 0), else the first keep // 10 of each class,
    in the npz's order (the converter's rule)."""
    index = np.arange(len(labels))
    if not keep:
        return index
    per_class = keep // len(CLASS_NAMES)
    return np.concatenate([index[labels == c][:per_class] for c in range(len(CLASS_NAMES))])


def write_jpeg_folder(
    npz_path: str | os.PathLike, out_dir: str | os.PathLike, train: int = 0, test: int = 0
) -> dict[str, int]:
    """Writes the class folder (module docstring); returns the files written per split."""
    data = np.load(npz_path)
    written = {}
    for split, keep in (("train", train), ("test", test)):
        buffer, offsets = data[f"{split}_jpeg"], data[f"{split}_offsets"]
        labels = data[f"{split}_labels"]
        digits = len(str(len(labels) - 1))
        for name in CLASS_NAMES:
            os.makedirs(os.path.join(out_dir, split, name), exist_ok=True)
        chosen = kept(labels, keep)
        for i in chosen:
            path = os.path.join(out_dir, split, CLASS_NAMES[labels[i]], f"{i:0{digits}d}.jpg")
            with open(path, "wb") as f:
                f.write(buffer[offsets[i] : offsets[i + 1]].tobytes())
        written[split] = len(chosen)
    return written


def check(folder: str, pickled: str) -> dict:
    """Reads both copies with `load_splits` and compares them; returns the findings."""
    from tf_resnet9.data.splits import load_splits

    start = time.perf_counter()
    from_folder = load_splits(folder, "folder")
    folder_s = time.perf_counter() - start
    start = time.perf_counter()
    from_pickles = load_splits(pickled, "cifar10")
    pickled_s = time.perf_counter() - start
    same = {
        f"{split}_{part}": bool(
            np.array_equal(getattr(from_folder, split)[k], getattr(from_pickles, split)[k])
        )
        for split in ("train", "test")
        for k, part in enumerate(("images", "labels"))
    }
    same["class_names"] = from_folder.class_names == from_pickles.class_names
    same["normalization"] = from_folder.normalization == from_pickles.normalization
    return {
        "identical": same,
        "train_images": len(from_folder.train[1]),
        "test_images": len(from_folder.test[1]),
        "read_s": {"class_folder": round(folder_s, 2), "pickled": round(pickled_s, 2)},
        "normalization": from_folder.normalization.as_dict(),
        "folder_record": from_folder.results_record,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("out_dir")
    parser.add_argument("--npz", default=NPZ)
    parser.add_argument("--train", type=int, default=0, help="keep N training images (0: all)")
    parser.add_argument("--test", type=int, default=0, help="keep N test images (0: all)")
    parser.add_argument("--check", metavar="PICKLED_DIR", help="compare with these files")
    parser.add_argument("--out", help="the check's JSON")
    args = parser.parse_args(argv)
    written = write_jpeg_folder(args.npz, args.out_dir, args.train, args.test)
    print(f"wrote {args.out_dir}: {written['train']} train, {written['test']} test images")
    if not args.check:
        return 0
    from tf_resnet9.outputs.files import write_json_atomic
    from tf_resnet9.outputs.results import environment, library_versions

    findings = check(args.out_dir, args.check)
    report = {
        "benchmark": "cifar_jpeg_folder",
        "command": "python -m benchmarks.cifar_jpeg_folder " + " ".join(sys.argv[1:]),
        "when": datetime.datetime.now().isoformat(timespec="seconds"),
        "npz": os.path.abspath(args.npz),
        "pickled": os.path.abspath(args.check),
        **findings,
        "versions": library_versions() | {"pillow": importlib.metadata.version("pillow")},
        "environment": environment(),
    }
    out = args.out or os.path.join("benchmarks", "results", "cifar-jpeg-folder-check.json")
    write_json_atomic(out, report)
    print(f"identical: {findings['identical']}; results: {out}")
    return 0 if all(findings["identical"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
