"""The weight map between the reference and Keras: complete, and exact both ways."""

import numpy as np
import pytest

from tests.parity import cases, keras_side, name_map


def test_map_covers_every_keras_variable_once():
    model = keras_side.build(cases.initial_state(0.125, 0), 0.125)
    paths = [v.path for v in model.variables]
    assert sorted(paths) == sorted(name_map.KERAS_TO_TORCH)
    assert len(name_map.NAME_MAP) == len(name_map.KERAS_TO_TORCH) == 41  # 9 kernels, 8 x 4 BN


def test_layouts_move_every_entry_where_it_belongs():
    conv = np.arange(4 * 3 * 3 * 3).reshape(4, 3, 3, 3)  # torch (out, in, kh, kw)
    keras_conv = name_map.to_keras_layout(conv, name_map.CONV)
    assert keras_conv.shape == (3, 3, 3, 4)
    assert keras_conv[1, 2, 0, 3] == conv[3, 0, 1, 2]  # (kh, kw, in, out)
    np.testing.assert_array_equal(name_map.to_torch_layout(keras_conv, name_map.CONV), conv)
    dense = np.arange(10 * 8).reshape(10, 8)  # torch (out, in)
    assert name_map.to_keras_layout(dense, name_map.DENSE)[7, 2] == dense[2, 7]


def test_keras_to_torch_names_and_back_is_exact():
    state = cases.perturbed_state(0.125, 1)
    model = keras_side.build(state, 0.125)
    back = name_map.state_from_keras(model)
    assert back.keys() == state.keys()
    for name, value in state.items():
        np.testing.assert_array_equal(back[name], value, err_msg=name)  # a copy: exact


def test_torch_to_keras_and_back_is_exact():
    pytest.importorskip("torch")
    import torch

    from reference import torch_recipe as reference

    torch.manual_seed(0)
    module = reference.ResNet9(width=0.125)  # PyTorch's own initialisation
    state = name_map.torch_state(module)
    unmapped = set(module.state_dict()) - set(state)
    assert all(key.endswith("num_batches_tracked") for key in unmapped), unmapped
    model = keras_side.build(state, 0.125)
    again = reference.ResNet9(width=0.125)
    name_map.load_into_torch(again, name_map.state_from_keras(model))
    for name, value in again.state_dict().items():
        if name in state:
            np.testing.assert_array_equal(value.numpy(), state[name], err_msg=name)
