"""The training set streamed from the host: the very batches `DeviceInput` gives for a seed,
through either loader, from memory or from disk; the decision to stream."""

from typing import NamedTuple

import keras
import numpy as np
import pytest
from keras import ops

from tf_resnet9 import backends
from tf_resnet9.backends.device import device_memory_bytes, format_bytes, parse_bytes
from tf_resnet9.data import streaming
from tf_resnet9.data.inputs import DeviceInput
from tf_resnet9.data.streaming import DEVICE_SHARE, StreamingInput, fits_on_device
from tf_resnet9.models.resnet9 import resnet9
from tf_resnet9.training import loop
from tf_resnet9.training.optimizers import NesterovSGD
from tf_resnet9.training.schedules import LearningRate, PiecewiseLinear
from tf_resnet9.training.steps import CompiledSteps

LOADERS = [
    "grain",
    pytest.param("tf.data", marks=pytest.mark.tensorflow),
]
RNG = np.random.default_rng(0)
IMAGES = RNG.integers(0, 256, (22, 32, 32, 3), dtype=np.uint8)
LABELS = RNG.integers(0, 10, 22)
# 22 images in batches of 4: 5 steps (2 images dropped), in calls of 2, 2 and 1 steps.
BATCH, PER_CALL = 4, 2


def step_batches(train_input, number: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Every step's (augmented images, labels) of epoch `number`, as the steps see them."""
    out = []
    for chunk in train_input.epoch(number):
        for i in range(train_input.batches.count(chunk)):
            images, labels = train_input.batches(chunk, i)
            out.append((ops.convert_to_numpy(images), ops.convert_to_numpy(labels)))
    return out


def assert_same_batches(streamed, placed) -> None:
    assert len(streamed) == len(placed) == 5
    for (a_images, a_labels), (b_images, b_labels) in zip(streamed, placed):
        # Exactly: the same integer gathers, crops and flips of the same pixels, then the
        # same float32 normalisation of them.
        np.testing.assert_array_equal(a_images, b_images)
        np.testing.assert_array_equal(a_labels, b_labels)


@pytest.mark.parametrize("loader", LOADERS)
@pytest.mark.parametrize("pad, cutout", [("reflect", True), ("zero", False)])
def test_streamed_batches_are_the_device_input_s(loader, pad, cutout):
    placed = DeviceInput(IMAGES, LABELS, BATCH, PER_CALL, seed=7, pad=pad, cutout=cutout)
    streamed = StreamingInput(
        IMAGES, LABELS, BATCH, PER_CALL, seed=7, pad=pad, cutout=cutout, loader=loader
    )
    assert (streamed.steps, streamed.batch_size) == (placed.steps, placed.batch_size)
    chunks = list(streamed.epoch(1))
    assert [chunk[0].shape[0] for chunk in chunks] == [2, 2, 1]
    assert tuple(chunks[0][0].shape) == (2, BATCH, 32, 32, 3)  # unpadded: padded on device
    for number in (1, 2):
        assert_same_batches(step_batches(streamed, number), step_batches(placed, number))
    other = streamed.reseeded(8)
    assert_same_batches(step_batches(other, 1), step_batches(placed.reseeded(8), 1))


@pytest.mark.parametrize("loader", LOADERS)
def test_a_set_memory_mapped_from_disk_streams_the_same_batches(loader, tmp_path):
    np.save(tmp_path / "train.npy", IMAGES)
    on_disk = np.load(tmp_path / "train.npy", mmap_mode="r")
    streamed = StreamingInput(on_disk, LABELS, BATCH, PER_CALL, seed=3, loader=loader)
    placed = DeviceInput(IMAGES, LABELS, BATCH, PER_CALL, seed=3)
    assert_same_batches(step_batches(streamed, 1), step_batches(placed, 1))


def test_a_chunk_holds_at_most_chunk_bytes_of_images(monkeypatch):
    monkeypatch.setattr(streaming, "CHUNK_BYTES", 3 * BATCH * IMAGES[0].nbytes)
    assert StreamingInput(IMAGES, LABELS, BATCH, 100, 0).steps_per_call == 3
    assert StreamingInput(IMAGES, LABELS, BATCH, 2, 0).steps_per_call == 2
    monkeypatch.setattr(streaming, "CHUNK_BYTES", 1)  # never under one step
    assert StreamingInput(IMAGES, LABELS, BATCH, 100, 0).steps_per_call == 1


def test_the_device_memory_is_known_on_a_cpu():
    # A CPU's "device" memory is the host's; a GPU's comes from JAX (TensorFlow: unknown).
    if backends.gpu() is None:
        assert device_memory_bytes() > 2**30


def test_an_unknown_loader_or_padding_is_refused():
    with pytest.raises(ValueError, match="loader='torch' is invalid: expected one of"):
        StreamingInput(IMAGES, LABELS, BATCH, PER_CALL, 0, loader="torch")
    with pytest.raises(ValueError, match="mode='edge' is invalid"):
        StreamingInput(IMAGES, LABELS, BATCH, PER_CALL, 0, pad="edge")


def test_the_default_loader_is_the_backend_s():
    expected = "tf.data" if backends.NAME == "tensorflow" else "grain"
    assert StreamingInput(IMAGES, LABELS, BATCH, PER_CALL, 0).loader == expected


class Trained(NamedTuple):
    """What `loop.run_epoch` trains: steps at their learning rates."""

    steps: CompiledSteps
    learning_rates: tuple


@pytest.mark.slow
@pytest.mark.parametrize("loader", LOADERS)
def test_an_epoch_of_compiled_steps_trains_the_same_weights(loader):
    def trained(train_input):
        keras.utils.set_random_seed(1)
        steps = CompiledSteps(resnet9(width=0.0625), NesterovSGD(0.0), jit=True)
        rate = LearningRate(PiecewiseLinear([0, 1, 3], [0.0, 0.4, 0.0], steps_per_epoch=5), 15)
        state, _ = loop.run_epoch(Trained(steps, (rate,)), steps.initial_state(), train_input)
        steps.finish(state)
        return [ops.convert_to_numpy(v) for v in steps.model.weights]

    streamed = trained(StreamingInput(IMAGES, LABELS, BATCH, PER_CALL, 5, loader=loader))
    placed = trained(DeviceInput(IMAGES, LABELS, BATCH, PER_CALL, 5))
    # The same batches into two programs that differ only in where the gather happens.
    # Identical on this CPU on both backends (measured: every weight equal); XLA may fuse
    # the normalisation into the first convolution differently in each elsewhere (a GPU),
    # so float32 round-off (relative 1e-6 over 5 steps of a tiny model) is allowed.
    for a, b in zip(streamed, placed):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


# Does the set fit?

GiB = 2**30


def test_the_padded_set_and_the_unpadded_one_are_counted():
    placement = fits_on_device((50_000, 32, 32, 3), device_bytes=80 * GiB)
    assert placement.set_bytes == 50_000 * 3 * (32 * 32 + 40 * 40)  # 393.6 MB
    assert not placement.stream and placement.limit_bytes == int(80 * GiB * DEVICE_SHARE)
    assert (
        placement.reason == "the set's 375.4 MiB are within 50% of the device's 80.00 GiB: placed"
    )


def test_a_set_over_half_the_device_or_over_the_budget_streams():
    imagenet64 = (1_281_167, 64, 64, 3)  # 72x72 padded: 35 GiB with the unpadded copy
    assert fits_on_device(imagenet64, device_bytes=141 * GiB).stream is False
    assert fits_on_device(imagenet64, device_bytes=40 * GiB).stream is True
    budget = fits_on_device((50_000, 32, 32, 3), device_bytes=141 * GiB, budget_bytes=GiB // 4)
    assert budget.stream and budget.limit_bytes == GiB // 4
    assert budget.reason.endswith("over the budget (256.0 MiB): streamed")


def test_an_unknown_device_memory_places_the_set():
    placement = fits_on_device((10**7, 32, 32, 3), device_bytes=None)
    assert not placement.stream and placement.limit_bytes is None
    assert placement.as_dict()["reason"] == "the device's memory is unknown: placed"


@pytest.mark.parametrize(
    "text, count",
    [("8GiB", 8 * GiB), ("512MB", 512 * 10**6), ("2g", 2 * 10**9), ("1.5 GiB", 3 * GiB // 2),
     ("1000", 1000), ("64Ki", 65536)],
)  # fmt: skip
def test_memory_amounts_are_parsed(text, count):
    assert parse_bytes(text) == count


@pytest.mark.parametrize("text", ["", "eight GiB", "8 PB", "-1G"])
def test_other_memory_amounts_are_refused(text):
    with pytest.raises(ValueError, match="is invalid: expected an amount of memory such as"):
        parse_bytes(text)


def test_bytes_are_written_in_gib_or_mib():
    assert format_bytes(3 * GiB // 2) == "1.50 GiB" and format_bytes(5 * 2**20) == "5.0 MiB"
