"""The faster recipe's switches against the PyTorch reference's own transcription
(`reference/torch_fast_recipe.py`), where the two compute the same thing: the whitening
filter and ghost BatchNorm."""

import numpy as np
import pytest

from tf_resnet9.data import augment, whitening
from tf_resnet9.models.layers import BN_EPSILON, BN_MOMENTUM, GhostBatchNorm

torch = pytest.importorskip("torch")
fast = pytest.importorskip("reference.torch_fast_recipe")
RNG = np.random.default_rng(5)


def test_the_whitening_filters_agree_up_to_order_and_sign():
    images = RNG.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
    normalised = np.array(augment.normalize(images))  # a writable copy, for torch
    package = whitening.whitening_kernel(normalised).reshape(27, 27).T  # row k: filter k
    nchw = torch.from_numpy(normalised).permute(0, 3, 1, 2)
    reference = fast.whitening_filters(nchw).permute(0, 2, 3, 1).reshape(27, 27).numpy()
    reference = reference[::-1]  # ascending eigenvalues there, descending here
    signs = np.sign((package * reference).sum(axis=1))  # an eigenvector's sign is arbitrary
    # Both eigen-decompose in float64 and round the filters to float32: relative 1e-6
    # (distinct eigenvalues of random patches keep the eigenvectors well conditioned).
    np.testing.assert_allclose(package, reference * signs[:, None], rtol=1e-4, atol=1e-6)


def test_ghost_batchnorm_agrees_in_training_and_inference():
    x = RNG.normal(0.5, 2.0, size=(16, 4, 4, 6)).astype("float32")
    keras_layer = GhostBatchNorm(4, momentum=BN_MOMENTUM, epsilon=BN_EPSILON, scale=False)
    torch_layer = fast.GhostBatchNorm(6, splits=4)
    nchw = torch.from_numpy(x).permute(0, 3, 1, 2)
    out = np.asarray(keras_layer(x, training=True))
    expected = torch_layer(nchw).detach().permute(0, 2, 3, 1).numpy()
    # float32 means and variances of 64 values each, two implementations: a few ulp.
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        np.asarray(keras_layer.moving_variance), torch_layer.running_var.numpy(), rtol=1e-5
    )
    torch_layer.eval()
    np.testing.assert_allclose(
        np.asarray(keras_layer(x, training=False)),
        torch_layer(nchw).detach().permute(0, 2, 3, 1).numpy(),
        rtol=1e-5,
        atol=1e-5,
    )
