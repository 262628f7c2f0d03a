"""The training set on the device: shuffles and chunks. (Its augmentation draws are compared
with the recipe's distribution and the reference's in tests/parity/test_augmentation.py.)"""

import numpy as np
from keras import ops

from tf_resnet9.inputs import DeviceInput


def test_each_epoch_is_a_fresh_shuffle_of_every_image():
    device_input = DeviceInput(np.zeros((100, 32, 32, 3), np.uint8), np.arange(100), 32, 3, 0)
    orders = []
    for _ in range(2):
        ((_, _, batches, _),) = list(device_input.epoch())
        order = ops.convert_to_numpy(batches).ravel()
        assert batches.shape == (3, 32) and len(set(order.tolist())) == 96  # 100 // 32 steps
        orders.append(order)
    assert not np.array_equal(orders[0], orders[1])


def test_chunks_cover_the_epoch():
    device_input = DeviceInput(np.zeros((100, 32, 32, 3), np.uint8), np.arange(100), 10, 4, 0)
    chunks = list(device_input.epoch())
    assert [c[2].shape[0] for c in chunks] == [4, 4, 2]  # 10 steps in calls of 4
    assert device_input.padded.shape == (100, 40, 40, 3)
