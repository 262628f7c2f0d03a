"""The switches of Page's faster recipe (`--recipe page10`), each against its formula or a
plain Keras equivalent: ghost BatchNorm, CELU, the whitening filter, the EMA, flip
test-time augmentation, label smoothing, the BatchNorm-bias learning rate and decay, the
layer order; and the preset itself."""

import dataclasses
import io
import itertools
import subprocess
import sys

import keras
import numpy as np
import pytest
from keras import ops

from tests.cifar_files import fake_cifar10, write_folder
from tests.commands import ROOT
from tf_resnet9.config import TrainConfig
from tf_resnet9.data import augment, whitening
from tf_resnet9.experiment import train_and_evaluate
from tf_resnet9.models.layers import (
    BN_EPSILON,
    BN_MOMENTUM,
    CELU,
    GhostBatchNorm,
    activation,
    batch_norm,
)
from tf_resnet9.models.resnet9 import resnet9
from tf_resnet9.models.resnets import cifar_resnet
from tf_resnet9.training.evaluation import EvalSet, evaluate
from tf_resnet9.training.optimizers import NesterovSGD
from tf_resnet9.training.steps import CompiledSteps, cross_entropy

RNG = np.random.default_rng(0)


def numpy_of(x):
    return ops.convert_to_numpy(x)


def test_ghost_batchnorm_is_plain_batchnorm_on_each_split():
    x = RNG.normal(1.0, 2.0, size=(8, 4, 4, 3)).astype("float32")
    ghost = GhostBatchNorm(4, momentum=BN_MOMENTUM, epsilon=BN_EPSILON)
    out = numpy_of(ghost(x, training=True))
    expected = np.empty_like(x)
    for s in range(4):  # sub-batch s: images 2s and 2s + 1
        plain = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON)
        expected[2 * s : 2 * s + 2] = numpy_of(plain(x[2 * s : 2 * s + 2], training=True))
    # The same float32 reductions over 2 x 4 x 4 values: round-off of a few ulp.
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    # Running statistics: one step from (0, 1) towards the mean over the splits of their
    # (biased) statistics.
    parts = [x[2 * s : 2 * s + 2] for s in range(4)]
    mean = np.mean([p.mean(axis=(0, 1, 2)) for p in parts], axis=0)
    variance = np.mean([p.var(axis=(0, 1, 2)) for p in parts], axis=0)
    np.testing.assert_allclose(numpy_of(ghost.moving_mean), 0.1 * mean, rtol=1e-5)
    np.testing.assert_allclose(numpy_of(ghost.moving_variance), 0.9 + 0.1 * variance, rtol=1e-5)
    # Inference normalises with those running statistics, as BatchNormalization does.
    expected = (x - numpy_of(ghost.moving_mean)) / np.sqrt(
        numpy_of(ghost.moving_variance) + BN_EPSILON
    )
    np.testing.assert_allclose(numpy_of(ghost(x, training=False)), expected, rtol=1e-5, atol=1e-5)


def test_ghost_batchnorm_refuses_a_batch_it_cannot_split():
    with pytest.raises(ValueError, match="a batch of 6 is invalid"):
        GhostBatchNorm(4)(np.zeros((6, 2, 2, 1), "float32"), training=True)


def test_celu_formula():
    x = np.linspace(-3, 3, 13).astype("float32")
    expected = np.maximum(0, x) + np.minimum(0, 0.3 * (np.exp(x / 0.3) - 1))
    np.testing.assert_allclose(numpy_of(CELU(0.3)(x)), expected, rtol=1e-6, atol=1e-7)


def patches_by_hand(images: np.ndarray) -> np.ndarray:
    """Every 3x3 patch of images (N, H, W, C), flattened (dy, dx, c) as a Keras kernel is,
    one slice per offset: written apart from `whitening.patches`, to check against."""
    n, h, w, c = images.shape
    shifted = [images[:, dy : h - 2 + dy, dx : w - 2 + dx] for dy in range(3) for dx in range(3)]
    return np.stack(shifted, axis=3).reshape(-1, 9 * c).astype(np.float64)


def test_the_whitening_filter_whitens_the_patches():
    # Correlated channels and neighbouring pixels, like images: smoothed noise mixed.
    noise = RNG.normal(size=(200, 34, 34, 3))
    smooth = (noise[:, 1:-1, 1:-1] + noise[:, 2:, 1:-1] + noise[:, 1:-1, 2:]) / 3
    images = (smooth @ np.array([[1.0, 0.5, 0.2], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]])).astype(
        "float32"
    )
    kernel = whitening.whitening_kernel(images)
    assert kernel.shape == (3, 3, 3, 27)
    patches = patches_by_hand(images)
    moments = patches.T @ patches / (len(patches) - 1)
    values = np.linalg.eigvalsh(moments)[::-1]  # descending, as the kernel's filters are
    filtered = patches @ kernel.reshape(27, 27).astype(np.float64)
    second_moments = filtered.T @ filtered / (len(filtered) - 1)
    # Exactly diag(lambda / (lambda + eps)) in exact arithmetic: the float32 kernel
    # (relative 6e-8 per entry) over 27-term dot products leaves ~1e-6.
    np.testing.assert_allclose(
        second_moments, np.diag(values / (values + whitening.EPS)), rtol=0, atol=1e-5
    )
    # Within 2% of the identity wherever the patches vary by more than 0.5.
    strong = values > 0.5
    np.testing.assert_allclose(np.diag(second_moments)[strong], 1.0, atol=0.02)


def test_the_whitening_prep_is_fixed_and_followed_by_a_1x1_convolution():
    kernel = RNG.normal(size=(3, 3, 3, 27)).astype("float32")
    model = resnet9(width=0.125, whitening=kernel)
    whiten = model.get_layer("prep_whiten")
    assert not whiten.trainable
    assert all(v is not whiten.kernel for v in model.trainable_variables)
    np.testing.assert_array_equal(numpy_of(whiten.kernel), kernel)
    assert tuple(model.get_layer("prep_conv").kernel.shape) == (1, 1, 27, 8)


def test_layer_order_and_frozen_scale():
    model = resnet9(
        width=0.125, pool_before_bn=True, norm=batch_norm(scale=False), act=activation("celu")
    )
    names = [layer.name for layer in model.layers]
    assert names.index("layer1_pool") == names.index("layer1_conv") + 1
    assert names.index("layer1_bn") == names.index("layer1_pool") + 1
    assert not any(v.name == "gamma" for v in model.variables)  # scale fixed at 1
    assert isinstance(model.get_layer("layer1_celu"), CELU)
    plain = [layer.name for layer in resnet9(width=0.125).layers]
    assert plain.index("layer1_pool") == plain.index("layer1_relu") + 1  # the recipe's order


def test_label_smoothing_is_the_formula():
    logits = RNG.normal(size=(5, 10)).astype("float32")
    labels = RNG.integers(0, 10, 5)
    log_p = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
    targets = np.full((5, 10), 0.2 / 10) + 0.8 * np.eye(10)[labels]
    expected = -(targets * log_p).sum(axis=-1)
    np.testing.assert_allclose(numpy_of(cross_entropy(labels, logits, 0.2)), expected, rtol=1e-5)


def test_bn_biases_get_their_own_lr_and_decay():
    beta = keras.Variable(np.array([1.0, -1.0], "float32"), name="beta")
    kernel = keras.Variable(np.array([1.0, -1.0], "float32"), name="kernel")
    optimizer = NesterovSGD(0.1, momentum=0.9, weight_decay=5e-4, bn_bias_scales=(64, 1 / 64))
    grad = np.array([0.5, 0.25], "float32")
    optimizer.apply_gradients([(grad, beta), (grad, kernel)])
    w = np.array([1.0, -1.0])
    # First step from v = 0: w - (1 + momentum) lr (g + wd w), with lr x64 and wd / 64.
    np.testing.assert_allclose(numpy_of(beta), w - 1.9 * 6.4 * (grad + 5e-4 / 64 * w), rtol=1e-6)
    np.testing.assert_allclose(numpy_of(kernel), w - 1.9 * 0.1 * (grad + 5e-4 * w), rtol=1e-6)


def small_steps(**options):
    keras.utils.set_random_seed(0)
    optimizer = NesterovSGD(0.05, momentum=0.9, weight_decay=5e-4)
    return CompiledSteps(resnet9(width=0.0625), optimizer, jit=True, **options)


def page_ema_updates(epochs: int, steps_per_epoch: int, every: int) -> list[int]:
    """The updates (0-based, over the run) after which Page's EMA moves, by a transcription
    of his rule: `update_ema(momentum, update_freq)` is made anew for each epoch, with a
    counter `n = iter(count())`, and skips a step unless `next(n) % update_freq == 0`."""
    moved = []
    for epoch in range(epochs):
        n = itertools.count()  # the fresh counter of this epoch's update_ema
        for step in range(steps_per_epoch):
            if next(n) % every == 0:
                moved.append(epoch * steps_per_epoch + step)
    return moved


def test_ema_moves_when_pages_code_moves_it():
    epochs, steps_per_epoch, every, momentum = 2, 3, 2, 0.9
    assert page_ema_updates(epochs, steps_per_epoch, every) == [0, 2, 3, 5]
    steps = small_steps(ema=(momentum, every))
    model_variables = steps.model.trainable_variables + steps.model.non_trainable_variables
    expected = [numpy_of(v).astype(np.float64) for v in model_variables]  # starts at w0
    images = RNG.normal(size=(epochs * steps_per_epoch, 1, 8, 32, 32, 3)).astype("float32")
    labels = RNG.integers(0, 10, images.shape[:3]).astype("int32")
    rho = momentum**every
    state = steps.initial_state()
    for k in range(epochs * steps_per_epoch):  # one update per call, with its index in the epoch
        state, _ = steps.train_on_batches(state, images[k], labels[k], k % steps_per_epoch)
        steps.finish(state)
        state = steps.initial_state()
        if k in page_ema_updates(epochs, steps_per_epoch, every):
            after = [numpy_of(v) for v in model_variables]
            expected = [rho * e + (1 - rho) * w for e, w in zip(expected, after)]
    trainable, non_trainable = steps.evaluated_values(state)
    for got, want in zip(trainable + non_trainable, expected):
        # float32 averages of 4 updates against float64 ones: a few ulp of values of order 1.
        np.testing.assert_allclose(numpy_of(got), want, rtol=1e-5, atol=1e-6)


def test_flip_tta_averages_the_logits_of_the_image_and_its_mirror():
    steps = small_steps(tta_level=1)
    images = RNG.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    labels = RNG.integers(0, 10, 8).astype(np.int32)
    evaluation = evaluate(steps, steps.initial_state(), EvalSet.build(images, labels, 8))
    x = numpy_of(augment.normalize(images))
    logits = (steps.model.predict(x, verbose=0) + steps.model.predict(x[:, :, ::-1], verbose=0)) / 2
    log_p = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
    expected_loss = -log_p[np.arange(8), labels].mean()
    # float32 forward passes, compiled vs. Keras predict: a few ulp of the loss.
    np.testing.assert_allclose(evaluation.mean_loss, expected_loss, rtol=1e-5)
    assert evaluation.accuracy == np.mean(logits.argmax(-1) == labels)


def test_page10_sets_every_switch():
    config = TrainConfig.from_recipe("page10")
    assert config.lr_knots == ((0.0, 2.0, 8.0, 10.0), (0.0, 1.0, 0.1, 0.1))
    assert (config.ghost_bn_splits, config.activation, config.celu_alpha) == (16, "celu", 0.3)
    assert config.pool_before_bn and config.freeze_bn_scale and config.whiten_prep
    assert (config.label_smoothing, config.logit_scale, config.cutout) == (0.2, 1 / 16, False)
    assert (config.bn_bias_lr_scale, config.bn_bias_wd_scale) == (64.0, 1 / 64)
    assert (config.ema_momentum, config.ema_every, config.tta_level) == (0.99, 5, 1)


@pytest.mark.slow
def test_a_page10_run_resumed_from_its_first_checkpoint_ends_the_same(tmp_path):
    # The average and the whitening filter are in the checkpoint: a run resumed after
    # epoch 1 ends with the numbers of the run that was not interrupted (bit for bit: a
    # CPU's XLA programs are deterministic).
    # 5 x 26 = 130 training images (4 steps of 32), 20 test images.
    data_dir = write_folder(tmp_path, fake_cifar10(train_per_batch=26, test=20))
    config = TrainConfig.from_recipe(
        "page10",
        epochs=2,
        width=0.0625,
        batch_size=32,
        tensorboard=False,
    )
    workdir = tmp_path / "run"
    whole = train_and_evaluate(config, data_dir, workdir, out=io.StringIO())
    (workdir / "checkpoints" / "epoch-0002.npz").unlink()
    resumed = train_and_evaluate(config, data_dir, workdir, out=io.StringIO(), resume=True)
    assert resumed.resumed_from_epoch == 1

    def without_times(results):
        times = {"epoch_time_s": 0, "training_time_s": 0, "eval_time_s": 0}
        return [dataclasses.replace(r, **times) for r in results.epochs]

    assert without_times(resumed) == without_times(whole)
    np.testing.assert_array_equal(resumed.confusion_matrix, whole.confusion_matrix)


def test_saved_models_with_custom_layers_load_in_a_fresh_process(tmp_path):
    # Keras finds a custom layer only once its module is imported: the loader imports them.
    resnet9(width=0.0625, norm=batch_norm(2), act=activation("celu")).save(tmp_path / "a.keras")
    cifar_resnet(8, width=0.25).save(tmp_path / "b.keras")  # option A's ZeroChannels
    program = (
        "import sys; from tf_resnet9 import predict\n"
        "for path in sys.argv[1:]: print(predict.load_classifier(path)[1][0])"
    )
    result = subprocess.run(
        [sys.executable, "-c", program, tmp_path / "a.keras", tmp_path / "b.keras"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["airplane", "airplane"]
