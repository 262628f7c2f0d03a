"""Patch-whitening filters, computed once from the training images and not trained: the
first layer of Page's faster recipe (3x3, 27 filters) and of Keller Jordan's airbench
recipes (2x2, 12 filters and their negatives).

The filters are the eigenvectors of the second-moment matrix of the k x k x C patches of the
(normalised) training images, each divided by sqrt(eigenvalue + eps): filtered, the patches
have second moments diag(eigenvalue / (eigenvalue + eps)), close to the identity wherever
the data has more variance than eps. The moments are uncentred (the normalised data has
about zero mean) and computed in float64.

Page's settings are the defaults; airbench's are `AIRBENCH` (see `whitening_kernel`).
"""

from __future__ import annotations

import numpy as np

EPS = 1e-2  # Page's
IMAGES_USED = 10_000  # the first N training images, as Page's code takes them
PATCH = 3
CHUNK = 500  # images per pass over the patches (float64: 500 x 900 x 27 x 8 B = 97 MB)

# airbench's: 2x2 patches of the first 5,000 images, eps 5e-4, the moments divided by n
# (Page: n - 1), each filter followed by its negative (so that a GELU after it passes both
# signs), the legacy recipes' eigenvalues descending (airbench94_muon's ascending).
AIRBENCH = dict(patch=2, eps=5e-4, images_used=5_000, negatives=True, bessel=False)


def patches(images: np.ndarray, patch: int = PATCH) -> np.ndarray:
    """All patch x patch windows (no padding) of float images (N, H, W, C), flattened in
    the order of a Keras kernel (kh, kw, c): (N * (H - patch + 1) * (W - patch + 1),
    patch^2 C), float64."""
    n, h, w, c = images.shape
    windows = np.lib.stride_tricks.sliding_window_view(images, (patch, patch), axis=(1, 2))
    # (N, H', W', C, kh, kw) -> (..., kh, kw, C)
    return windows.transpose(0, 1, 2, 4, 5, 3).reshape(-1, patch * patch * c).astype(np.float64)


def eigen(
    images: np.ndarray, patch: int = PATCH, bessel: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """(eigenvalues descending, eigenvectors as columns) of the patches' second moments
    X^T X / (n - 1) (`bessel`, as Page computes them) or X^T X / n (airbench)."""
    total, count = 0.0, 0
    for start in range(0, len(images), CHUNK):  # 10,000 images' patches at once: 2 GB
        x = patches(images[start : start + CHUNK], patch)
        total, count = total + x.T @ x, count + len(x)
    values, vectors = np.linalg.eigh(total / (count - 1 if bessel else count))
    return values[::-1], vectors[:, ::-1]


def whitening_kernel(
    normalized_images: np.ndarray,
    eps: float = EPS,
    *,
    patch: int = PATCH,
    images_used: int = IMAGES_USED,
    negatives: bool = False,
    bessel: bool = True,
    descending: bool = True,
) -> np.ndarray:
    """The fixed conv kernel (patch, patch, C, F), float32, from the first `images_used`
    images; F = patch^2 C filters, twice that with `negatives`.

    Page's faster recipe: the defaults. airbench: `whitening_kernel(images, **AIRBENCH)`
    (airbench94_muon: with descending=False).

    Args:
        normalized_images: float (N, H, W, C), normalised as the model's inputs are, without
            augmentation.
        eps: Added to every eigenvalue before the square root.
        patch: The kernel's height and width.
        images_used: How many of the first images the moments are taken over.
        negatives: Follow the filters with their negatives (filter F/2 + j is -filter j).
        bessel: Divide the moments by n - 1 (Page); else by n (airbench).
        descending: Filters in order of descending eigenvalue; else ascending. An
            eigenvector's sign is arbitrary (LAPACK's choice here).
    """
    for name, value in (("patch", patch), ("images_used", images_used)):
        if int(value) != value or value < 1:
            raise ValueError(f"{name}={value!r} is invalid: expected an integer >= 1.")
    if not eps > 0:
        raise ValueError(f"eps={eps!r} is invalid: expected a number > 0.")
    values, vectors = eigen(normalized_images[:images_used], patch, bessel)
    filters = vectors / np.sqrt(values + eps)  # column k: filter k
    if not descending:
        filters = filters[:, ::-1]
    if negatives:
        filters = np.concatenate([filters, -filters], axis=1)
    channels = normalized_images.shape[-1]
    return filters.reshape(patch, patch, channels, -1).astype(np.float32)
