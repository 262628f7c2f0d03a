"""Writes small class folders (`train/<class>/*`, `test/<class>/*`) of generated images, and
small JPEG copies of CIFAR in the shared .npz layout, for tests (no download)."""

from __future__ import annotations

import io
import os
import zlib

import numpy as np
from PIL import Image

from tests.cifar_files import write_folder


def pattern(size: tuple[int, int], seed: int) -> np.ndarray:
    """A smooth uint8 RGB image (height, width, 3) of (width, height) `size`: gradients
    plus a seeded offset, so that JPEG keeps it close and every image differs."""
    width, height = size
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width]
    base = rng.integers(0, 128, 3)
    channels = [(base[c] + (ys * (c + 1) * 3 + xs * (3 - c) * 2)) % 256 for c in range(3)]
    return np.stack(channels, axis=-1).astype(np.uint8)


def save(path, image: Image.Image, file_format: str | None = None, **options) -> str:
    """Saves a Pillow image, making its folder; returns the path."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    image.save(path, file_format, **options)
    return str(path)


def rgb_file(path, size=(8, 8), seed=0, file_format="PNG") -> np.ndarray:
    """Writes a pattern as an RGB file; returns the pixels as written (PNG and BMP keep
    them; JPEG does not, so read it back for the decoded ones)."""
    pixels = pattern(size, seed)
    save(path, Image.fromarray(pixels), file_format)
    return pixels


def write_class_folder(root, split: str, per_class: dict[str, list[dict]]) -> list[str]:
    """Writes `root/split/<class>/<name>` for each spec {"name", "size", "mode", "format"}
    (mode: RGB, L, RGBA, P); returns the paths written, in file order."""
    paths = []
    for name, specs in per_class.items():
        for k, spec in enumerate(specs):
            pixels = pattern(
                spec.get("size", (8, 8)), seed=zlib.crc32(f"{split}/{name}/{k}".encode())
            )
            image = Image.fromarray(pixels).convert(spec.get("mode", "RGB"))
            path = os.path.join(root, split, name, spec["name"])
            paths.append(save(path, image, spec.get("format")))
    return paths


def jpeg_bytes(image: np.ndarray, quality: int = 75) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def write_cifar_npz(path, per_class: dict[str, int], classes: int = 10, seed: int = 0) -> dict:
    """The shared JPEG copy's layout (`benchmarks.cifar_jpeg_folder`), class by class:
    {split}_jpeg, {split}_offsets, {split}_labels. Returns the arrays written."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, count in per_class.items():
        labels = np.repeat(np.arange(classes, dtype=np.uint8), count)
        files = [jpeg_bytes(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)) for _ in labels]
        arrays[f"{split}_jpeg"] = np.frombuffer(b"".join(files), np.uint8)
        arrays[f"{split}_offsets"] = np.cumsum([0] + [len(f) for f in files]).astype(np.int64)
        arrays[f"{split}_labels"] = labels
    np.savez(path, **arrays)
    return arrays


def pickled_like_the_converter(root, npz: dict) -> str:
    """The official pickled files as the shared converter (`cifar10_from_jpeg.py`) makes
    them from the same .npz: decoded by Pillow, made RGB, the training images in a
    `default_rng(0)` permutation split over five files, then the test images in the next
    permutation of that generator. Returns the folder."""
    decoded = {}
    for split in ("train", "test"):
        buffer, offsets = npz[f"{split}_jpeg"], npz[f"{split}_offsets"]
        images = [
            np.asarray(Image.open(io.BytesIO(buffer[a:b].tobytes())).convert("RGB"))
            for a, b in zip(offsets[:-1], offsets[1:])
        ]
        decoded[split] = np.stack(images), npz[f"{split}_labels"].astype(np.int64)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(decoded["train"][1]))
    batches = {
        f"data_batch_{k}": (decoded["train"][0][part], decoded["train"][1][part])
        for k, part in enumerate(np.array_split(order, 5), start=1)
    }
    test_order = rng.permutation(len(decoded["test"][1]))
    batches["test_batch"] = (decoded["test"][0][test_order], decoded["test"][1][test_order])
    return write_folder(root, batches)
