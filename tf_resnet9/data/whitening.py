"""The fixed first layer of Page's faster recipe: a 3x3 convolution that whitens patches.

Its 27 filters are the eigenvectors of the second-moment matrix of the 3x3x3 patches of
the (normalised) training images, each divided by sqrt(eigenvalue + eps): filtered, the
patches have second moments diag(eigenvalue / (eigenvalue + eps)), close to the identity
wherever the data has more variance than eps. It is computed once from the data and not
trained.
"""

from __future__ import annotations

import numpy as np

EPS = 1e-2  # Page's
IMAGES_USED = 10_000  # the first N training images, as Page's code takes them
PATCH = 3
CHUNK = 500  # images per pass over the patches (float64: 500 x 900 x 27 x 8 B = 97 MB)


def patches(images: np.ndarray) -> np.ndarray:
    """All 3x3 patches (no padding) of float images (N, H, W, C), flattened in the order of
    a Keras kernel (kh, kw, c): (N * (H - 2) * (W - 2), 9 C), float64."""
    n, h, w, c = images.shape
    windows = np.lib.stride_tricks.sliding_window_view(images, (PATCH, PATCH), axis=(1, 2))
    # (N, H-2, W-2, C, kh, kw) -> (..., kh, kw, C)
    return windows.transpose(0, 1, 2, 4, 5, 3).reshape(-1, PATCH * PATCH * c).astype(np.float64)


def eigen(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(eigenvalues descending, eigenvectors as columns) of the patches' second moments
    X^T X / (n - 1), as Page computes them (the normalised data has about zero mean)."""
    total, count = 0.0, 0
    for start in range(0, len(images), CHUNK):  # 10,000 images' patches at once: 2 GB
        x = patches(images[start : start + CHUNK])
        total, count = total + x.T @ x, count + len(x)
    values, vectors = np.linalg.eigh(total / (count - 1))
    return values[::-1], vectors[:, ::-1]


def whitening_kernel(normalized_images: np.ndarray, eps: float = EPS) -> np.ndarray:
    """The fixed conv kernel (3, 3, C, 9 C), float32, from the first `IMAGES_USED` images.

    Args:
        normalized_images: float (N, H, W, C), normalised as the model's inputs are
            (`tf_resnet9.preprocess`), without augmentation.
        eps: Added to every eigenvalue before the square root.
    """
    values, vectors = eigen(normalized_images[:IMAGES_USED])
    filters = vectors / np.sqrt(values + eps)  # column k: filter k
    channels = normalized_images.shape[-1]
    return filters.reshape(PATCH, PATCH, channels, -1).astype(np.float32)
