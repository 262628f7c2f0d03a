"""The airbench pieces on their own (tests/parity/test_airbench.py compares them with the
PyTorch transcription): the networks' shapes, names and parameter counts, the dirac and
unit-std initializers, exact GELU, the whitening layer, the optimizers' contracts and
freeze, the schedule, lookahead, the augmentation ops, test-time augmentation; each custom
object's config round trip and each argument check's message."""

import keras
import numpy as np
import pytest
from keras import ops
from scipy import special

from tf_resnet9 import backends, models
from tf_resnet9.data import airbench_augment, whitening
from tf_resnet9.data.augment import reflect_pad
from tf_resnet9.models.airbench import airbench, airbench94, airbench96
from tf_resnet9.models.layers import GELU, Dirac, PatchWhitening, UnitStd
from tf_resnet9.training import lookahead, tta
from tf_resnet9.training.muon import ConvMuon, newton_schulz
from tf_resnet9.training.optimizers import TorchNesterovSGD
from tf_resnet9.training.schedules import WarmupLinearDecay

RNG = np.random.default_rng(28)


def numpy_of(x):
    return np.asarray(ops.convert_to_numpy(x))


# The networks.


def trainable_count(model) -> int:
    return sum(int(np.prod(v.shape)) for v in model.trainable_variables)


@pytest.mark.parametrize(
    "name, expected",
    [("airbench94", 1_971_352), ("airbench95", 4_604_440), ("airbench96", 9_915_416)],
)
def test_parameter_counts_at_full_width(name, expected):
    # Whitening bias 24; per conv in x out x 9; per BN its bias; the head c3 x 10 (the
    # whitening kernel and BN statistics are not trained). airbench94: 24 + 1,967,616 +
    # 1,152 + 2,560. The transcription's count is the same (test below).
    assert trainable_count(models.build(name)) == expected


def test_the_transcription_trains_as_many_parameters():
    ab = pytest.importorskip("reference.torch_airbench")
    for name in ("airbench94", "airbench95", "airbench96"):
        net = ab.make_net(ab.RECIPES[name])
        count = sum(p.numel() for p in net.parameters() if p.requires_grad)
        assert count == trainable_count(models.build(name)), name


def test_layers_shapes_and_what_trains():
    model = airbench96(width=0.125)
    names = [layer.name for layer in model.layers]
    assert names[:4] == ["images", "whiten", "whiten_gelu", "block1_conv1"]
    assert names[-4:] == ["pool", "flatten", "head", "logits"]
    assert {"block1_conv3", "block1_norm3", "block1_add", "block1_gelu3"} <= set(names)
    shapes = {name: model.get_layer(name).output.shape for name in ("whiten", "block1_pool")}
    assert shapes == {"whiten": (None, 31, 31, 24), "block1_pool": (None, 15, 15, 16)}
    assert model.get_layer("block3_gelu3").output.shape == (None, 3, 3, 64)
    trainable = {v.path for v in model.trainable_variables}
    assert "whiten/bias" in trainable and "whiten/kernel" not in trainable
    assert not any(v.path.endswith("/gamma") for v in model.variables)  # scale frozen at 1
    norm = model.get_layer("block1_norm1")
    assert (norm.momentum, norm.epsilon) == (0.9, 1e-12)  # airbench96: PyTorch's default
    assert airbench94(width=0.125).get_layer("block1_norm1").momentum == 0.6


def test_logit_scales():
    images = RNG.normal(size=(2, 32, 32, 3)).astype("float32")
    model = airbench94(width=0.125)
    muon = airbench94(width=0.125, logit_scale=None)
    muon.set_weights(model.get_weights())
    head = keras.Model(model.input, model.get_layer("head").output)
    raw = numpy_of(head(images, training=False))
    # A product of float32 values: within an ulp.
    np.testing.assert_allclose(numpy_of(model(images, training=False)), raw / 9, rtol=1e-6)
    np.testing.assert_allclose(numpy_of(muon(images, training=False)), raw / 32, rtol=1e-6)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"whiten_bias_init": "ones"}, "whiten_bias_init='ones' is invalid"),
        ({"bn_momentum": 1.0}, "bn_momentum=1.0 is invalid"),
        ({"bn_epsilon": 0.0}, "bn_epsilon=0.0 is invalid"),
        ({"width": 0}, "width=0 is invalid"),
        ({"init": "glorot"}, "init='glorot' is invalid"),
    ],
)
def test_bad_options_name_the_argument(options, message):
    with pytest.raises(ValueError, match=message):
        airbench(**options)


def test_a_saved_network_loads_and_computes_the_same(tmp_path):
    model = airbench94(width=0.125, logit_scale=None, whiten_bias_init="torch")
    images = RNG.normal(size=(2, 32, 32, 3)).astype("float32")
    model.get_layer("whiten").adapt(RNG.normal(size=(20, 32, 32, 3)).astype("float32"))
    model.save(tmp_path / "airbench94.keras")
    loaded = keras.models.load_model(tmp_path / "airbench94.keras")
    # The same weights and layers: the same float32 ops, the same bits.
    np.testing.assert_array_equal(
        numpy_of(loaded(images, training=False)), numpy_of(model(images, training=False))
    )
    assert loaded.get_layer("whiten").get_config() == model.get_layer("whiten").get_config()


# Initializers and layers.


def test_dirac_sets_the_first_in_channels_filters_to_identities():
    kernel = numpy_of(Dirac()((3, 3, 4, 6)))  # Keras layout (kh, kw, in, out)
    identity = np.zeros((3, 3, 4, 4), "float32")
    identity[1, 1, np.arange(4), np.arange(4)] = 1.0
    np.testing.assert_array_equal(kernel[..., :4], identity)  # exact: set, not drawn
    bound = 1 / np.sqrt(3 * 3 * 4)  # the other filters: PyTorch's U(+-1/sqrt(fan_in))
    assert 0 < np.abs(kernel[..., 4:]).max() <= bound
    # Fewer filters than inputs: every filter an identity on its own channel.
    narrow = numpy_of(Dirac()((2, 2, 6, 3)))
    assert narrow.sum() == 3 and all(narrow[1, 1, i, i] == 1 for i in range(3))
    with pytest.raises(ValueError, match=r"shape=\(3, 3\) is invalid"):
        Dirac()((3, 3))


def test_dirac_and_unit_std_round_trip_their_configs():
    for initializer in (Dirac("he_normal"), UnitStd()):
        config = keras.initializers.serialize(initializer)
        again = keras.initializers.deserialize(config)
        assert type(again) is type(initializer)
        assert keras.initializers.serialize(again) == config


def test_unit_std_has_unit_standard_deviation():
    w = numpy_of(UnitStd()((256, 10)))
    # Bessel-corrected, as torch's Tensor.std(): 1 within float32 round-off of 2,560 terms.
    np.testing.assert_allclose(w.std(ddof=1), 1.0, rtol=1e-5)


def test_gelu_is_exact_by_default():
    x = np.linspace(-4, 4, 33).astype("float32")
    exact = x * 0.5 * (1 + special.erf(x / np.sqrt(2)))
    # float32 erf: a few ulps of values up to 4.
    np.testing.assert_allclose(numpy_of(GELU()(x)), exact, rtol=1e-6, atol=1e-6)
    assert np.abs(numpy_of(GELU(approximate=True)(x)) - exact).max() > 1e-4  # tanh's
    assert GELU.from_config(GELU(approximate=True).get_config()).approximate


def test_patch_whitening_adapts_its_kernel_and_trains_only_its_bias():
    layer = PatchWhitening(name="whiten")
    images = RNG.normal(size=(40, 32, 32, 3)).astype("float32")
    out = layer(images[:2])
    assert out.shape == (2, 31, 31, 24)
    layer.adapt(images)
    expected = whitening.whitening_kernel(images, **whitening.AIRBENCH)
    np.testing.assert_array_equal(numpy_of(layer.kernel), expected)  # assigned as computed
    assert [v.path for v in layer.trainable_variables] == ["whiten/bias"]
    with pytest.raises(ValueError, match="patch=0 is invalid"):
        PatchWhitening(patch=0)
    with pytest.raises(ValueError, match=r"images of shape \(4, 32, 32, 1\) are invalid"):
        layer.adapt(np.zeros((4, 32, 32, 1), "float32"))


def test_airbench_whitening_options():
    images = RNG.normal(size=(30, 16, 16, 3)).astype("float32")
    descending = whitening.whitening_kernel(images, **whitening.AIRBENCH)
    ascending = whitening.whitening_kernel(images, **whitening.AIRBENCH, descending=False)
    assert descending.shape == (2, 2, 3, 24)
    np.testing.assert_array_equal(descending[..., 12:], -descending[..., :12])  # negatives
    # Reversed order (LAPACK returns each eigenvector once: the same columns, reversed).
    np.testing.assert_array_equal(ascending[..., :12], descending[..., 11::-1])
    # Whitened: the 12 filters give the patches second moments lambda / (lambda + eps).
    patches = whitening.patches(images, 2)
    filtered = patches @ descending[..., :12].reshape(12, 12).astype(np.float64)
    moments = filtered.T @ filtered / len(filtered)  # airbench: / n
    values = np.linalg.eigvalsh(patches.T @ patches / len(patches))[::-1]
    # Exact in exact arithmetic; the float32 kernel leaves ~1e-6.
    np.testing.assert_allclose(moments, np.diag(values / (values + 5e-4)), rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="images_used=0 is invalid"):
        whitening.whitening_kernel(images, images_used=0)


# Optimizers.


def sgd(**overrides):
    options = dict(
        learning_rate=WarmupLinearDecay(0.5, 10, 2),
        momentum=0.85,
        weight_decay=1e-3,
        groups=[
            {"match": "beta", "lr_scale": 64.0, "wd_scale": 1 / 64},
            {"match": "whiten/bias", "last_update": 2},
        ],
    )
    return TorchNesterovSGD(**(options | overrides))


def test_torch_nesterov_sgd_steps_as_pytorch_and_freezes_after_last_update():
    w = keras.Variable(np.ones(3, "float32"), name="bias")  # path "bias"
    optimizer = sgd(groups=[{"match": "bias", "last_update": 2}], learning_rate=0.1)
    optimizer.build([w])
    g = np.array([1.0, -2.0, 0.5], "float32")
    expected, v = np.ones(3), np.zeros(3)
    for _ in range(2):  # d = g + wd w; v = m v + d; w -= lr (d + m v)
        d = g + 1e-3 * expected
        v = 0.85 * v + d
        expected = expected - 0.1 * (d + 0.85 * v)
        optimizer.apply([g], [w])
    # float32 steps of size ~0.3 on values ~1: within a few ulps.
    np.testing.assert_allclose(numpy_of(w), expected, rtol=1e-6)
    frozen, velocity = numpy_of(w), numpy_of(optimizer.velocities[0])
    for _ in range(3):  # after update 2: no change at all, exactly
        optimizer.apply([g], [w])
    np.testing.assert_array_equal(numpy_of(w), frozen)
    np.testing.assert_array_equal(numpy_of(optimizer.velocities[0]), velocity)


def test_groups_pick_the_first_match():
    optimizer = sgd()
    beta = keras.Variable(np.zeros(2), name="beta")
    assert optimizer.group_of(beta)["lr_scale"] == 64.0
    assert optimizer.group_of("block1_conv1/kernel") == {}
    assert optimizer.group_of("whiten/bias")["last_update"] == 2


@pytest.mark.parametrize(
    "options, message",
    [
        ({"momentum": 1.0}, "momentum=1.0 is invalid"),
        ({"weight_decay": -1.0}, "weight_decay=-1.0 is invalid"),
        ({"groups": [{"lr_scale": 2.0}]}, "groups entry .* is invalid"),
        ({"groups": [{"match": "beta", "speed": 2.0}]}, "groups entry .* is invalid"),
        ({"groups": [{"match": "beta", "last_update": -1}]}, "last_update=-1 is invalid"),
    ],
)
def test_torch_nesterov_sgd_checks_its_arguments(options, message):
    with pytest.raises(ValueError, match=message):
        sgd(**options)


def test_conv_muon_checks_its_arguments():
    with pytest.raises(ValueError, match="muon_momentum=1.5 is invalid"):
        ConvMuon(muon_momentum=1.5)
    with pytest.raises(ValueError, match="ns_steps=0 is invalid"):
        ConvMuon(ns_steps=0)


def test_optimizers_round_trip_their_configs():
    muon = ConvMuon(
        WarmupLinearDecay(1340.0, 200),
        muon_learning_rate=WarmupLinearDecay(0.24, 200),
        groups=[{"match": "whiten/bias", "learning_rate": WarmupLinearDecay(106.0, 75)}],
    )
    for optimizer in (sgd(), muon):
        again = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
        assert type(again) is type(optimizer)
        assert keras.optimizers.serialize(again) == keras.optimizers.serialize(optimizer)


def test_conv_muon_renormalises_the_kernel_and_steps_along_newton_schulz():
    kernel = keras.Variable(RNG.normal(size=(3, 3, 4, 8)).astype("float32"), name="kernel")
    g = RNG.normal(size=(3, 3, 4, 8)).astype("float32")
    optimizer = ConvMuon(muon_learning_rate=0.1, muon_momentum=0.6, ns_dtype="float32")
    optimizer.build([kernel])
    w0 = numpy_of(kernel)
    optimizer.apply([g], [kernel])
    u = g + 0.6 * g  # the buffer after one step is g; Nesterov: g + momentum * buffer
    matrix = u.reshape(-1, 8).T  # (out, kh kw in)
    direction = numpy_of(newton_schulz(matrix, dtype="float32")).T.reshape(w0.shape)
    expected = w0 * np.sqrt(8) / np.linalg.norm(w0) - 0.1 * direction
    # float32: the norm and NS (three quintic steps) within ~1e-6 relative.
    np.testing.assert_allclose(numpy_of(kernel), expected, rtol=1e-5, atol=1e-6)
    # Newton-Schulz leaves singular values in about [0.5, 1.5] (airbench's comment) after
    # three steps.
    singular = np.linalg.svd(numpy_of(newton_schulz(matrix, dtype="float32")), compute_uv=False)
    assert 0.3 < singular.min() and singular.max() < 1.6


# Schedule and lookahead.


def test_the_schedule_warms_up_decays_and_holds():
    schedule = WarmupLinearDecay(1.5, 476, 109, 0.2, 0.07)
    got = numpy_of(schedule(np.array([0, 1, 109, 476, 500])))
    expected = 1.5 * np.array([0.2, 0.2 + 0.8 / 109, 1.0, 0.07, 0.07])
    np.testing.assert_allclose(got, expected, rtol=1e-6)  # float32 arithmetic
    no_warmup = WarmupLinearDecay(0.24, 200)
    # float32: 1 - 199/200 loses 8 bits to cancellation, ~1e-6 relative.
    np.testing.assert_allclose(
        numpy_of(no_warmup(np.array([0, 100, 199]))), [0.24, 0.12, 0.0012], rtol=1e-5
    )
    assert (
        WarmupLinearDecay.from_config(schedule.get_config()).get_config() == schedule.get_config()
    )
    with pytest.raises(ValueError, match="warmup_steps=476 is invalid"):
        WarmupLinearDecay(1.0, 476, 476)
    with pytest.raises(ValueError, match="total_steps=0 is invalid"):
        WarmupLinearDecay(1.0, 0)


def test_lookahead_moves_every_fifth_update_and_ends_on_the_average():
    averages = [np.zeros(3, "float32")]
    values = [np.ones(3, "float32")]
    same_averages, same_values = lookahead.lookahead_update(4, 10, averages, values)
    np.testing.assert_array_equal(numpy_of(same_values[0]), values[0])
    new_averages, new_values = lookahead.lookahead_update(5, 10, averages, values)
    decay = 0.95**5 * 0.5**3
    np.testing.assert_allclose(numpy_of(new_averages[0]), 1 - decay, rtol=1e-6)
    np.testing.assert_array_equal(numpy_of(new_values[0]), numpy_of(new_averages[0]))
    final = lookahead.lookahead_finish([np.full(3, 0.25, "float32")], values)
    np.testing.assert_array_equal(numpy_of(final[0]), 0.25)
    with pytest.raises(ValueError, match="one average per value"):
        lookahead.lookahead_update(5, 10, averages, values * 2)


# Augmentation and test-time augmentation.


def test_translation_moves_the_content_and_reflects_the_edge():
    images = RNG.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    padded = reflect_pad(images, 2)
    moved = numpy_of(airbench_augment.translate(padded, np.array([1, 0]), np.array([-2, 0]), 2))
    np.testing.assert_array_equal(moved[1], images[1])  # no shift: the image itself
    np.testing.assert_array_equal(moved[0, 1:, :30], images[0, :31, 2:])  # down 1, left 2
    np.testing.assert_array_equal(moved[0, 0, :30], images[0, 1, 2:])  # reflected row


def test_augment_normalises_with_airbench_statistics_and_cuts_out_after():
    images = np.full((1, 32, 32, 3), 128, np.uint8)
    draws = airbench_augment.EpochDraws(*(np.array([0]) for _ in range(4)))
    out = numpy_of(airbench_augment.augment(reflect_pad(images, 4), np.array([0]), draws, 0, 4, 12))
    assert (out[0, :12, :12] == 0).all()  # the mean colour
    mean, std = (np.array(x, np.float32) for x in (airbench_augment.MEAN, airbench_augment.STD))
    expected = (np.float32(128) / np.float32(255) - mean) / std  # airbench's float32 ops
    # The same bits on TensorFlow; XLA may divide by 255 as a product with 1/255: within
    # 2 ulps of values below 4 (as test 7's batches).
    np.testing.assert_allclose(out[0, 20, 20], expected, rtol=0, atol=1e-6)


def test_tta_levels():
    def predict(x):  # logits that see orientation and position: a fixed linear map
        return ops.reshape(x, (x.shape[0], -1)) @ weights

    weights = RNG.normal(size=(32 * 32 * 3, 4)).astype("float32")
    images = RNG.normal(size=(2, 32, 32, 3)).astype("float32")
    level0 = numpy_of(tta.tta_logits(predict, images, 0))
    level1 = numpy_of(tta.tta_logits(predict, images, 1))
    mirrored = numpy_of(predict(images[:, :, ::-1]))
    # float32 sums of 3,072 products: ~1e-5 of values ~50.
    np.testing.assert_allclose(level1, (level0 + mirrored) / 2, rtol=1e-5, atol=1e-4)
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
    views = [images, padded[:, :32, :32], padded[:, 2:, 2:]]
    weights_of = [0.25, 0.125, 0.125]
    expected = sum(
        w * (numpy_of(predict(v)) + numpy_of(predict(v[:, :, ::-1])))
        for w, v in zip(weights_of, views)
    )
    np.testing.assert_allclose(
        numpy_of(tta.tta_logits(predict, images, 2)), expected, rtol=1e-5, atol=1e-4
    )
    with pytest.raises(ValueError, match="level=3 is invalid"):
        tta.tta_logits(predict, images, 3)


def test_draws_are_reproducible_from_their_seed():
    a = airbench_augment.draw_epoch(16, backends.make_seed(5), 4, 12)
    b = airbench_augment.draw_epoch(16, backends.make_seed(5), 4, 12)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(numpy_of(x), numpy_of(y))
