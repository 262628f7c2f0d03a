"""The training set on the device: shuffles and chunks. (Its augmentation draws are compared
with the recipe's distribution and the reference's in tests/parity/test_augmentation.py.)"""

import numpy as np
from keras import ops

from tf_resnet9 import backends
from tf_resnet9.data.inputs import DeviceInput


def test_each_epoch_is_a_fresh_shuffle_of_every_image():
    device_input = DeviceInput(np.zeros((100, 32, 32, 3), np.uint8), np.arange(100), 32, 3, 0)
    orders = []
    for number in (1, 2):
        ((_, _, batches, _),) = list(device_input.epoch(number))
        order = ops.convert_to_numpy(batches).ravel()
        assert batches.shape == (3, 32) and len(set(order.tolist())) == 96  # 100 // 32 steps
        orders.append(order)
    assert not np.array_equal(orders[0], orders[1])


def test_chunks_cover_the_epoch():
    device_input = DeviceInput(np.zeros((100, 32, 32, 3), np.uint8), np.arange(100), 10, 4, 0)
    chunks = list(device_input.epoch(1))
    assert [c[2].shape[0] for c in chunks] == [4, 4, 2]  # 10 steps in calls of 4
    assert device_input.padded.shape == (100, 40, 40, 3)


def test_an_epoch_is_fixed_by_the_seed_and_its_number():
    # A resumed run draws epoch k without drawing the ones before it.
    def batches(number, seed=0):
        device_input = DeviceInput(np.zeros((64, 32, 32, 3), np.uint8), np.arange(64), 16, 4, seed)
        ((_, _, order, seeds),) = list(device_input.epoch(number))
        return ops.convert_to_numpy(order), ops.convert_to_numpy(
            backends.randint(seeds[0], (8,), 0, 9)
        )

    for a, b in zip(batches(3), batches(3)):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(batches(3)[0], batches(4)[0])
    assert not np.array_equal(batches(3)[0], batches(3, seed=1)[0])
