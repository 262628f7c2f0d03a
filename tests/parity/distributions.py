"""Tests 5 and 6 as table rows: initial weights and augmentation, compared as distributions.

Random draws cannot match value for value across frameworks, so these compare samples:
Kolmogorov-Smirnov tests for the weights, chi-square tests for the augmentation draws, each
against a p-value threshold; and, where values can match exactly (padding, the same draws
applied), exact equality. Everything is seeded, so every test is deterministic; P_MIN = 1e-4
would flag a correct sampler once in 10,000 seeds.

Functions whose name starts with `reference_` or `torch_` need torch.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops
from scipy import stats

from tests.augment_decoding import COORDINATE_IMAGE, decode
from tests.parity import name_map
from tests.parity.cases import fan_in
from tests.parity.checks import Row, Tolerance, compare
from tf_resnet9 import backends
from tf_resnet9.data import augment
from tf_resnet9.data.inputs import DeviceInput
from tf_resnet9.models.resnet9 import resnet9

P_MIN = 1e-4
SQRT6 = math.sqrt(6.0)
SAME = Tolerance("p", P_MIN, at_least=True)  # no evidence that the samples differ
# Must differ: KS of n >= 1728 draws of U(+-sqrt(6) b) against U(+-b) gives p < 1e-100.
DIFFERENT = Tolerance("p", 1e-12)
# The largest |w| of n >= 1728 draws of U(+-B) is within 1% of B (P(miss) = 0.99^n < 1e-7).
AT_BOUND = Tolerance("rel", 0.01)
EXACT = Tolerance("abs", 0.0)
# Two independently drawn kernels of n >= 147,456 entries correlate by ~1/sqrt(n) < 0.003;
# a kernel drawn twice from the same seed correlates by exactly 1.
INDEPENDENT = Tolerance("|correlation|", 0.02)
DRAW_VALUES = {"crop_y": 9, "crop_x": 9, "flip": 2, "cutout_y": 25, "cutout_x": 25}
DRAW_COUNT = 4096  # examples per sampler: >= 160 expected per value of a 25-valued draw


def _p_row(check: str, item: str, result, tolerance: Tolerance) -> Row:
    # "max abs" shows the test statistic; a p-value has no relative difference.
    return Row(check, item, float(result[0]), math.nan, tolerance, float(result[1]))


def _kernels(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {
        name: value
        for name, value in state.items()
        if name_map.NAME_MAP[name][1] in (name_map.CONV, name_map.DENSE)
    }


# Test 5: initialisation.


def keras_initial_state(init: str, seed: int) -> dict[str, np.ndarray]:
    """A fresh full-width `resnet9(init=init)`'s weights, torch-named, torch layout."""
    keras.utils.set_random_seed(seed)
    return name_map.state_from_keras(resnet9(init=init))


def torch_initial_state(seed: int) -> dict[str, np.ndarray]:
    """A fresh reference ResNet9's weights: PyTorch's own default initialisation."""
    import torch

    from reference import torch_recipe as reference

    torch.manual_seed(seed)
    return name_map.torch_state(reference.ResNet9())


def init_rows(keras_torch: dict, keras_he: dict, reference: dict | None) -> list[Row]:
    """Per conv and dense layer: init="torch" draws U(+-1/sqrt(fan_in)), as the reference
    does (which checks the reference too); he_uniform draws that scaled by sqrt(6).

    Args:
        keras_torch, keras_he: `keras_initial_state("torch")` and `("he_uniform")`, from
            different seeds so that their samples are independent.
        reference: `torch_initial_state`, or None without torch (its rows are left out).
    """
    rows = []
    for name, kernel in _kernels(keras_torch).items():
        bound = 1.0 / math.sqrt(fan_in(kernel.shape))
        uniform = stats.uniform(loc=-bound, scale=2 * bound).cdf  # U(+-bound)
        kernel, he = kernel.ravel(), keras_he[name].ravel()
        tests = [
            ("5 init torch: KS vs U(+-bound)", stats.kstest(kernel, uniform), SAME),
            (
                "5 init he_uniform / sqrt(6): KS vs U(+-bound)",
                stats.kstest(he / SQRT6, uniform),
                SAME,
            ),
            (
                "5 init he_uniform: KS vs U(+-bound), must differ",
                stats.kstest(he, uniform),
                DIFFERENT,
            ),
        ]
        if reference is not None:
            ref = reference[name].ravel()
            tests += [
                ("5 init reference: KS vs U(+-bound)", stats.kstest(ref, uniform), SAME),
                ("5 init torch: KS two-sample vs reference", stats.ks_2samp(kernel, ref), SAME),
            ]
        rows += [_p_row(check, name, result, tolerance) for check, result, tolerance in tests]
        largest = {"torch": np.abs(kernel).max() / bound, "he_uniform": np.abs(he).max() / bound}
        if reference is not None:
            largest["reference"] = np.abs(reference[name]).max() / bound
        for source, ratio in largest.items():
            factor = SQRT6 if source == "he_uniform" else 1.0
            check = f"5 init {source}: max|w| / {'(sqrt(6) bound)' if factor != 1 else 'bound'}"
            rows.append(compare(check, name, ratio / factor, 1.0, AT_BOUND, False))
    if reference is not None:  # BN: gamma 1, beta 0, running mean 0, running variance 1
        names = [name for name in keras_torch if name not in _kernels(keras_torch)]
        rows.append(
            compare(
                "5 init BN vs reference",
                f"all {len(names)} BN tensors",
                np.concatenate([keras_torch[name] for name in names]),
                np.concatenate([reference[name] for name in names]),
                EXACT,
                False,
            )
        )
    return rows


def independence_rows(states: dict[str, dict]) -> list[Row]:
    """Per pair of same-shaped kernels (the two convs of each residual block): every layer
    starts from its own draws, as in PyTorch, so the two are uncorrelated.

    Args:
        states: Source name ("torch", "he_uniform", "reference") -> its initial state.
    """
    rows = []
    for source, state in states.items():
        kernels = _kernels(state)
        names = list(kernels)
        for i, first in enumerate(names):
            for second in names[i + 1 :]:
                if kernels[first].shape != kernels[second].shape:
                    continue
                a, b = kernels[first].ravel(), kernels[second].ravel()
                correlation = abs(float(np.corrcoef(a, b)[0, 1]))
                rows.append(
                    Row(
                        "5 init: layers drawn independently",
                        f"{source}: {first.removesuffix('.conv.weight')} vs "
                        f"{second.removesuffix('.conv.weight')}",
                        float(np.abs(a - b).max()),
                        math.nan,
                        INDEPENDENT,
                        correlation,
                    )
                )
    return rows


# Test 6: augmentation.


def _as_array(draws) -> np.ndarray:
    """(N, 5) int: columns crop_y, crop_x, flip, cutout_y, cutout_x (the decoder's order)."""
    return np.stack([np.asarray(ops.convert_to_numpy(d)).astype(np.int64) for d in draws], axis=1)


def _coordinate_images(count: int) -> np.ndarray:
    return np.repeat(COORDINATE_IMAGE[None], count, axis=0)


def package_draws(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(drawn, decoded): `augment.draw_params` and what `augment.augment` made of them, read
    back from the images (tests/augment_decoding.py)."""
    params = augment.draw_params(count, backends.make_seed(seed))
    padded = augment.reflect_pad(_coordinate_images(count))
    images = ops.convert_to_numpy(augment.augment(padded, params))
    return _as_array(params), decode(images)


def pipeline_draws(count: int, seed: int) -> np.ndarray:
    """Decoded draws of one epoch of `HostInput`'s tf.data pipeline, batches of 512."""
    from tf_resnet9.data.host_input import HostInput

    images = _coordinate_images(count)
    dataset = HostInput(images, np.zeros(count), 512, 1, seed=0).dataset(seed)
    return decode(np.concatenate([x.numpy() for x, _ in dataset]))


def device_draws(count: int, seed: int) -> np.ndarray:
    """Decoded draws of one epoch of `inputs.DeviceInput` (augmentation inside the compiled
    step, `--augment device`), batches of 512, gathered and augmented as the step does."""
    steps = count // 512
    device_input = DeviceInput(_coordinate_images(count), np.zeros(count), 512, steps, seed)
    ((padded, _, batches, seeds),) = list(device_input.epoch(1))  # the epoch in one call
    images = [
        ops.convert_to_numpy(augment.augment_gathered(padded, batches[i], seeds[i]))
        for i in range(batches.shape[0])
    ]
    return decode(np.concatenate(images))


def reference_draws(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(drawn, decoded) for the reference: `reference.draw` from a seeded torch.Generator,
    applied by `reference.augment` to normalised, reflect-padded images."""
    import torch

    from reference import torch_recipe as reference

    draws = reference.draw(count, torch.Generator().manual_seed(seed))
    padded = reference.reflect_pad(reference.normalise(_coordinate_images(count)))
    images = reference.augment(padded, draws).permute(0, 2, 3, 1).numpy()
    return _as_array(draws), decode(images)


def draw_rows(
    package: tuple, device: np.ndarray, reference: tuple | None, pipeline: np.ndarray | None
) -> list[Row]:
    """Per random choice: each sampler against the recipe's uniform distribution
    (goodness of fit), each of the package's against the reference's (homogeneity); and
    the images show exactly the draws made. A sampler that drew once per batch instead of
    once per example fails too: 4,096 draws in 8 batches take at most 8 values.

    Args:
        package: `package_draws`; device: `device_draws`; reference: `reference_draws` or
            None (no torch); pipeline: `pipeline_draws` or None (no TensorFlow).
    """
    samples = {"package": package[1], "device input": device}
    rows = [compare("6 augment: decoded == drawn", "package", package[1], package[0], EXACT, False)]
    if reference is not None:
        samples["reference"] = reference[1]
        rows.append(
            compare(
                "6 augment: decoded == drawn", "reference", reference[1], reference[0], EXACT, False
            )
        )
    if pipeline is not None:
        samples["tf.data pipeline"] = pipeline
    for column, (quantity, values) in enumerate(DRAW_VALUES.items()):
        counts = {k: np.bincount(v[:, column], minlength=values) for k, v in samples.items()}
        for source, observed in counts.items():
            if len(observed) != values:  # a value outside the recipe's range
                raise AssertionError(f"{source} {quantity}: counts {observed}")
            result = stats.chisquare(observed)
            rows.append(
                _p_row(
                    f"6 augment: chi2 vs uniform {{0..{values - 1}}}",
                    f"{source} {quantity}",
                    result,
                    SAME,
                )
            )
        if reference is not None:
            for source in counts.keys() - {"reference"}:
                result = stats.chi2_contingency([counts[source], counts["reference"]])
                rows.append(
                    _p_row(
                        "6 augment: chi2 same distribution as reference",
                        f"{source} {quantity}",
                        (result.statistic, result.pvalue),
                        SAME,
                    )
                )
    return rows


def exact_augment_rows(images: np.ndarray, draws: dict[str, np.ndarray]) -> list[Row]:
    """Reflect padding, and crop + flip + cutout with the same draws, package vs reference
    (needs torch) and vs NumPy: bit-identical, the same float32 operations on the same data.

    Args:
        images: uint8 (N, 32, 32, 3); draws: `cases.augment_draws(N, ...)`.
    """
    from reference import torch_recipe as reference
    from tests.parity import keras_side, torch_side

    normalised = reference.normalise(images)  # NCHW float32
    padded_torch = reference.reflect_pad(normalised)
    padded_uint8 = ops.convert_to_numpy(augment.reflect_pad(images))
    package_float = ops.convert_to_numpy(
        augment.reflect_pad(normalised.permute(0, 2, 3, 1).numpy())
    )
    numpy_pad = np.pad(images, ((0, 0), (4, 4), (4, 4), (0, 0)), mode="reflect")
    return [
        compare(
            "6 reflect pad (uint8)",
            "package vs numpy mode='reflect'",
            padded_uint8,
            numpy_pad,
            EXACT,
            False,
        ),
        compare(
            "6 reflect pad (normalised)",
            "package vs reference F.pad",
            package_float,
            padded_torch.permute(0, 2, 3, 1).numpy(),
            EXACT,
            False,
        ),
        compare(
            "6 crop+flip+cutout, same draws",
            f"package vs reference ({len(images)} images)",
            keras_side.augment_batch(padded_uint8, draws),
            torch_side.augment_batch(padded_torch, draws),
            EXACT,
            False,
        ),
    ]
