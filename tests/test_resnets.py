"""The classic CIFAR ResNets: parameter counts, shapes, parameter-free option-A shortcuts."""

import re

import keras
import numpy as np
import pytest

from tf_resnet9.models.resnets import ZeroChannels, cifar_resnet, resnet18_cifar


def trainable(model) -> int:
    return sum(int(np.prod(v.shape)) for v in model.trainable_variables)


@pytest.mark.parametrize(
    "build, count",
    [
        # He et al. 2016, Table 6: 0.27M and 0.85M; counted here to the parameter.
        (lambda: cifar_resnet(20), 269_722),
        (lambda: cifar_resnet(56), 853_018),
        (resnet18_cifar, 11_173_962),
    ],
    ids=["resnet20", "resnet56", "resnet18"],
)
def test_trainable_parameters(build, count):
    model = build()
    assert trainable(model) == count
    assert tuple(model.output.shape) == (None, 10)


def test_option_a_shortcuts_have_no_weights_and_subsample_with_zero_channels():
    model = cifar_resnet(20)
    shortcut = model.get_layer("stage2_block1_zeros")
    assert isinstance(shortcut, ZeroChannels) and not shortcut.weights
    assert not model.get_layer("stage2_block1_subsample").weights
    assert tuple(shortcut.output.shape) == (None, 16, 16, 32)
    assert not any("shortcut" in layer.name for layer in model.layers)  # no projections
    probe = keras.Model(model.input, shortcut.output)
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    out = keras.ops.convert_to_numpy(probe(x))
    stage1 = keras.Model(model.input, model.get_layer("stage1_block3_relu").output)
    expected = keras.ops.convert_to_numpy(stage1(x))[:, ::2, ::2, :]
    np.testing.assert_array_equal(out[..., :16], expected)  # copies: exact
    np.testing.assert_array_equal(out[..., 16:], 0.0)


def test_resnet18_projects_where_the_shape_changes():
    model = resnet18_cifar()
    projections = [layer.name for layer in model.layers if layer.name.endswith("shortcut_conv")]
    assert projections == [f"stage{s}_block1_shortcut_conv" for s in (2, 3, 4)]
    assert model.get_layer("stage2_block1_shortcut_conv").kernel.shape == (1, 1, 64, 128)


def test_depth_must_be_6n_plus_2_and_the_model_round_trips():
    with pytest.raises(ValueError, match="depth=21 is invalid: expected 6n \\+ 2"):
        cifar_resnet(21)
    model = cifar_resnet(8, num_classes=100)
    clone = keras.Model.from_config(model.get_config())
    assert trainable(clone) == trainable(model) and clone.output.shape[-1] == 100


@pytest.mark.parametrize("depth", [56, 110])
def test_deeper_cifar_resnets_have_n_blocks_per_stage(depth):
    # Narrow: what differs from ResNet-20 is the number of blocks, (depth - 2) / 6 per stage.
    model = cifar_resnet(depth, width=0.25)
    blocks = {re.match(r"stage\d+_block\d+", layer.name) for layer in model.layers}
    blocks = {match.group() for match in blocks if match}
    n = (depth - 2) // 6
    assert blocks == {f"stage{s}_block{b}" for s in (1, 2, 3) for b in range(1, n + 1)}
    weighted = [layer for layer in model.layers if layer.name.endswith(("_conv", "dense"))]
    assert len(weighted) == depth  # option A: no projection convolutions
    assert tuple(model.output.shape) == (None, 10)


def test_width_and_logit_scale():
    narrow = cifar_resnet(20, width=0.5, logit_scale=0.125)
    assert narrow.get_layer("stem_conv").kernel.shape == (3, 3, 3, 8)
    assert narrow.get_layer("stage3_block1_zeros").extra == 16  # 16 -> 32 channels at width 0.5
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    dense = keras.Model(narrow.input, narrow.get_layer("dense").output)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(narrow(x)),
        0.125 * keras.ops.convert_to_numpy(dense(x)),
        rtol=1e-6,  # one float32 multiplication
    )
    assert "logits" not in [layer.name for layer in cifar_resnet(20).layers]  # the paper's
    assert resnet18_cifar(width=0.25).get_layer("stage4_block2_2_conv").kernel.shape[-1] == 128


def test_gradient_norms_are_logged_per_stage():
    # The layer groups TensorBoard logs the gradient norms of (tf_resnet9.steps.layer_group).
    from tf_resnet9.training.optimizers import MomentumSGD
    from tf_resnet9.training.steps import CompiledSteps

    steps = CompiledSteps(cifar_resnet(8, width=0.25), MomentumSGD(0.1), jit=False)
    assert steps.grad_groups == ("stem", "stage1", "stage2", "stage3", "dense")
    steps = CompiledSteps(resnet18_cifar(width=0.0625), MomentumSGD(0.1), jit=False)
    assert steps.grad_groups == ("stem", "stage1", "stage2", "stage3", "stage4", "dense")
