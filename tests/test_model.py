"""ResNet9 structure, parameter count, initialisation and BatchNorm settings."""

import keras
import numpy as np
import pytest

from tf_resnet9.models.resnet9 import resnet9


@pytest.fixture(scope="module")
def full_model():
    keras.utils.set_random_seed(0)
    return resnet9()


def conv_and_dense(model):
    return [
        layer
        for layer in model.layers
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense))
    ]


def test_full_width_has_the_reference_parameter_count(full_model):
    # 3x3 convs 6,563,520 + dense 5,120 + BN gamma/beta 2 x 2,240 (the recipe's network).
    trainable = sum(int(np.prod(v.shape)) for v in full_model.trainable_variables)
    assert trainable == 6_573_120


def test_layer_names_mirror_the_reference_paths(full_model):
    names = {layer.name for layer in full_model.layers}
    for path in [
        "prep.conv",
        "prep.bn",
        "layer1.conv",
        "layer1.pool",
        "layer1.residual.res1.conv",
        "layer1.residual.res2.bn",
        "layer2.conv",
        "layer3.pool",
        "layer3.residual.res1.conv",
        "layer3.residual.res2.relu",
        "pool",
        "linear",
        "logits",
    ]:
        assert path.replace(".", "_") in names


def test_shapes_follow_the_recipe_table(full_model):
    expected = {
        "prep_relu": (32, 32, 64),
        "layer1_pool": (16, 16, 128),
        "layer1_residual_add": (16, 16, 128),
        "layer2_pool": (8, 8, 256),
        "layer3_pool": (4, 4, 512),
        "layer3_residual_add": (4, 4, 512),
        "pool": (1, 1, 512),
        "logits": (10,),
    }
    for name, shape in expected.items():
        assert tuple(full_model.get_layer(name).output.shape[1:]) == shape, name


def test_no_biases_and_pool_after_relu(full_model):
    for layer in conv_and_dense(full_model):
        assert not layer.use_bias, layer.name
    pool = full_model.get_layer("layer2_pool")
    assert pool.input is full_model.get_layer("layer2_relu").output


def test_batchnorm_matches_pytorch_defaults(full_model):
    bns = [
        layer for layer in full_model.layers if isinstance(layer, keras.layers.BatchNormalization)
    ]
    assert len(bns) == 8
    for bn in bns:
        assert bn.epsilon == 1e-5 and bn.momentum == 0.9, bn.name
        # Exact: constant initializers.
        np.testing.assert_array_equal(bn.gamma.numpy(), 1.0)
        np.testing.assert_array_equal(bn.beta.numpy(), 0.0)


def test_init_is_reproducible_under_a_seed():
    first, second = [], []
    for weights in (first, second):
        keras.utils.set_random_seed(3)
        weights.extend(v.numpy() for v in resnet9(width=0.0625).trainable_variables)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


def test_width_scales_channels():
    model = resnet9(width=0.125)
    assert model.get_layer("prep_conv").filters == 8
    assert model.get_layer("layer3_residual_res2_conv").filters == 64
    assert model.output.shape[-1] == 10


def test_logits_are_float32_under_mixed_precision():
    model = resnet9(width=0.0625, dtype="mixed_bfloat16")
    assert model.get_layer("layer1_conv").compute_dtype == "bfloat16"
    assert model.get_layer("layer1_conv").kernel.dtype == "float32"
    # The graph's output, not an eager call: TensorFlow's eager CPU kernels (oneDNN) have
    # no bf16 convolution without AVX-512.
    assert keras.backend.standardize_dtype(model.outputs[0].dtype) == "float32"


def test_logit_scale_multiplies_the_linear_output():
    model = resnet9(width=0.0625, logit_scale=0.125)
    probe = keras.Model(model.input, [model.get_layer("linear").output, model.output])
    linear, logits = probe(np.random.default_rng(0).normal(size=(3, 32, 32, 3)).astype("float32"))
    # Exact in float32: multiplying by a power of two.
    np.testing.assert_array_equal(np.asarray(logits), np.asarray(linear) * 0.125)


def test_config_round_trip():
    model = resnet9(width=0.0625)
    clone = keras.Model.from_config(model.get_config())
    assert [layer.name for layer in clone.layers] == [layer.name for layer in model.layers]
    assert clone.count_params() == model.count_params()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"width": 0}, "width=0 is invalid"),
        ({"init": "xavier"}, "init='xavier' is invalid: expected one of torch, he_uniform"),
        ({"num_classes": 0}, "num_classes=0 is invalid"),
        ({"logit_scale": -1.0}, "logit_scale=-1.0 is invalid"),
    ],
)
def test_invalid_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        resnet9(**kwargs)
