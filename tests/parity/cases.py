"""The inputs every parity comparison shares, made with NumPy alone (no torch, no Keras).

Both frameworks, the fixtures and the report start from these arrays, so a comparison can
run on either side without the other installed. Weights are torch-named and in torch's
layout (`tests.parity.name_map`).
"""

from __future__ import annotations

import numpy as np

from tests.parity.name_map import CONV, DENSE, NAME_MAP

# Tests 1-3: full width, one batch of 8 images.
FORWARD_WIDTH = 1.0
FORWARD_BATCH = 8
# Test 4: the optimizer and the real schedule from step 1, on a narrow model.
OPTIMIZER_WIDTH = 0.125  # channels 8/16/32/64
OPTIMIZER_BATCH = 32
OPTIMIZER_STEPS = 24
# Test 7: a few epochs of augmented training on a narrow model.
DYNAMICS_WIDTH = 0.125
DYNAMICS_IMAGES = 1024
DYNAMICS_BATCH = 128  # 8 steps per epoch
DYNAMICS_EPOCHS = 4
# Test 8: the six CIFAR ResNets at full width, one batch of 4 images (the Keras side's
# time is mostly per-layer overhead, the rest compute: 4 images keep all six in ~20 s).
RESNET_BATCH = 4
# The fixtures keep this many evenly spread entries of each ResNet block output and
# gradient (1,100 arrays: 256 of each would be 1 MiB), and the logits whole.
RESNET_SAMPLES = 16
NUM_CLASSES = 10
# Channels of prep, layer1, layer2, layer3 at width 1 (the recipe's network, README.org).
CHANNELS = {"prep": 64, "layer1": 128, "layer2": 256, "layer3": 512}


def channels(width: float) -> dict[str, int]:
    """Channel counts at `width` times the recipe's, rounded (narrow models for quick tests)."""
    return {name: max(1, round(c * width)) for name, c in CHANNELS.items()}


def fan_in(torch_shape: tuple[int, ...]) -> int:
    """Inputs per output of a conv (out, in, kh, kw) or linear (out, in) weight."""
    return int(np.prod(torch_shape[1:]))


def shapes(width: float) -> dict[str, tuple[int, ...]]:
    """Torch-layout shape of every mapped entry of ResNet9 at `width`."""
    c = channels(width)
    c_in = {"prep": 3, "layer1": c["prep"], "layer2": c["layer1"], "layer3": c["layer2"]}
    result = {}
    for torch_name, (_, layout) in NAME_MAP.items():
        top = torch_name.split(".")[0]
        if layout == DENSE:
            result[torch_name] = (NUM_CLASSES, c["layer3"])
        elif layout == CONV:
            # A residual conv maps its block's channels to themselves.
            inputs = c[top] if ".residual." in torch_name else c_in[top]
            result[torch_name] = (c[top], inputs, 3, 3)
        else:
            result[torch_name] = (c[top],)
    return result


def initial_state(width: float, seed: int) -> dict[str, np.ndarray]:
    """Weights as PyTorch initialises them: kernels U(+-1/sqrt(fan_in)), gamma 1, beta 0,
    running mean 0, running variance 1 (float32)."""
    rng = np.random.default_rng(seed)
    state = {}
    for name, shape in shapes(width).items():
        if len(shape) > 1:
            bound = 1.0 / np.sqrt(fan_in(shape))
            state[name] = rng.uniform(-bound, bound, shape).astype(np.float32)
        else:
            one = name.endswith(("bn.weight", "bn.running_var"))
            state[name] = np.full(shape, 1.0 if one else 0.0, np.float32)
    return state


def perturbed_state(width: float, seed: int) -> dict[str, np.ndarray]:
    """`initial_state` with every BN parameter and statistic random, so that the forward
    comparisons exercise gamma, beta and (in inference mode) the running statistics."""
    state = initial_state(width, seed)
    rng = np.random.default_rng(seed + 1)
    ranges = {
        "bn.weight": (0.5, 1.5),
        "bn.bias": (-0.5, 0.5),
        "bn.running_mean": (-0.5, 0.5),
        "bn.running_var": (0.5, 2.0),
    }
    for name, value in state.items():
        for suffix, (low, high) in ranges.items():
            if name.endswith(suffix):
                state[name] = rng.uniform(low, high, value.shape).astype(np.float32)
    return state


def random_images(count: int, seed: int) -> np.ndarray:
    """uint8 (count, 32, 32, 3) noise: every pixel value, no structure."""
    return np.random.default_rng(seed).integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)


def normalise(images: np.ndarray) -> np.ndarray:
    """uint8 NHWC -> float32, per channel (x - mean) / std on the 0..255 scale (the recipe).

    In NumPy, so that the inputs are the same bits on every Keras backend (XLA may fuse the
    package's own normalisation into different roundings).
    """
    mean = np.array((125.31, 122.95, 113.87), np.float32)
    std = np.array((62.99, 62.09, 66.70), np.float32)
    return (images.astype(np.float32) - mean) / std


def random_labels(count: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, NUM_CLASSES, count).astype(np.int32)


def learnable_images(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A CIFAR-sized task a narrow ResNet9 can learn in a few epochs (loss falls): each class
    is a fixed random low-frequency colour pattern, each image its class pattern plus noise.

    Returns:
        uint8 images (count, 32, 32, 3) and int32 labels (count,).
    """
    rng = np.random.default_rng(seed)
    coarse = rng.normal(size=(NUM_CLASSES, 4, 4, 3))
    patterns = np.repeat(np.repeat(coarse, 8, axis=1), 8, axis=2)  # (10, 32, 32, 3)
    labels = rng.integers(0, NUM_CLASSES, count).astype(np.int32)
    images = 128 + 40 * patterns[labels] + 40 * rng.normal(size=(count, 32, 32, 3))
    return np.clip(np.rint(images), 0, 255).astype(np.uint8), labels


def augment_draws(count: int, seed: int) -> dict[str, np.ndarray]:
    """The recipe's random choices for `count` examples (crop 0..8, flip 0/1, cutout 0..24),
    drawn with NumPy so that both frameworks can apply the very same ones."""
    rng = np.random.default_rng(seed)
    return {
        "crop_y": rng.integers(0, 9, count),
        "crop_x": rng.integers(0, 9, count),
        "flip": rng.integers(0, 2, count),
        "cutout_y": rng.integers(0, 25, count),
        "cutout_x": rng.integers(0, 25, count),
    }


def epoch_plan(count: int, batch_size: int, epochs: int, seed: int) -> list[tuple]:
    """Per step (indices into the images, augment draws for them): a fresh shuffle and fresh
    draws every epoch, the last partial batch dropped, as the recipe does."""
    rng = np.random.default_rng(seed)
    plan = []
    for epoch in range(epochs):
        order = rng.permutation(count)
        draws = augment_draws(count, seed=seed * 1000 + epoch)
        for start in range(0, count - batch_size + 1, batch_size):
            step = slice(start, start + batch_size)
            plan.append((order[step], {k: v[step] for k, v in draws.items()}))
    return plan


def sample_index(size: int, count: int = 256) -> np.ndarray:
    """Fixed, evenly spread flat indices into an array of `size` entries (all, if fewer)."""
    return np.unique(np.linspace(0, size - 1, min(size, count)).round().astype(np.int64))
