"""Test 9's comparisons, the airbench recipes, as table rows with their tolerances and why
(`tests.parity.checks` has the rows' machinery and tests 1-8's).

Measured on TensorFlow and JAX (CPU) against the live reference: tests/parity/README.md.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tests.parity import airbench_side, cases, stored
from tests.parity.checks import (
    BATCHES,
    FORWARD,
    GRADS32,
    GRADS64,
    LOGITS,
    LOSS32,
    LOSS64,
    OPTIMIZER_LOSS,
    Row,
    Tolerance,
    compare,
)
from tests.parity.experiments import subset

# Layers, logits, loss and gradients: as tests 1 and 2 (the same operations, float32
# round-off growing with depth; exactness in float64). GELU has no kink, so in float32
# only max-pool ties can route a gradient differently (measured <= 8e-6 relative per
# tensor): GRADS32 is kept for them.
# float64 logits: the network computes in float64 but its logits layer in float32, and on
# JAX Keras computes BatchNorm of float64 in float32: measured 1.4e-8 (TensorFlow) and
# 2e-7 (JAX) for logits up to 0.2; 1e-6 leaves 5x.
EVAL64 = Tolerance("abs", 1e-6)
# BN running statistics after one pass, Keras' rule for the variance (`stats_rows`):
# sums of >= 72 float32 values: measured 1.2e-7 relative.
STATS = Tolerance("rel", 2e-6)
# Training (12 updates of airbench94, 6 of airbench94_muon), float64: the float32 loss's
# round-off (1e-7) carried through the updates, measured 4e-7 of a tensor's largest entry
# on TensorFlow. On JAX, Keras computes BatchNorm of float64 in float32, so every BN output
# carries float32 round-off, which 12 large updates (BN biases at lr x 64 = 96) amplify:
# measured 1.7e-5 (a velocity). 1e-4 leaves 5x; every planted training error is 200x it
# or more. The losses: as test 4 (measured 2e-7).
TRAIN, TRAIN_LOSS = Tolerance("rel", 1e-4), OPTIMIZER_LOSS
TTA = LOGITS  # 6 float32 forward passes averaged, logits up to ~0.5: measured 1.5e-7
# The whitening filters, up to each eigenvector's sign: both sides eigen-decompose the
# same float64 moments and round to float32; filters up to ~20, measured 0 (the float64
# difference, ~1e-15, vanishes in the rounding). A wrong moment (centred, n - 1) or eps
# moves the small-eigenvalue filters by O(1).
WHITEN = Tolerance("rel", 1e-5)
AUGMENT = BATCHES  # the same float32 ops on the same draws: measured 0 on TensorFlow
# Newton-Schulz in float32: three quintic steps of float32 matmuls, 1e-6 measured.
NS32 = Tolerance("rel", 1e-5)
# ... in bf16: each matmul's output rounded to 8 bits (relative 2e-3), and frameworks
# accumulate in different orders, so roundings differ; the quintic's slope (a = 3.4 per
# step near 0, three steps) amplifies a difference up to ~40x: measured 0.058 of the
# largest entry (TensorFlow, 8x4), 0.080 (JAX against the stored sample, 8x4; 0.056 with
# XLA's own bf16 matmul, before the package summed in float32). A wrong coefficient, step
# count or transposition misses by O(1).
NS16 = Tolerance("rel", 0.15)
# A planted error (the reference with one ingredient changed) must miss the Keras results by
# at least 3x the tolerance of the check it would fail: then Keras with that error would
# miss the reference by 2x the tolerance or more, as long as the round-off between the
# two stays within it (it does, by 5x or more: the figures above).
PLANTED_FACTOR = 3.0
# The planted errors: (error, key of the result it changes, the check's tolerance).
PLANTED = (
    ("gelu_tanh", "airbench94:train:logits", LOGITS),  # measured 1.6e-4 (abs)
    ("bn_eps", "airbench94:eval64:logits", EVAL64),  # Keras' default 1e-3: 1.7e-5 (abs)
    ("bn_momentum", "airbench94:stats:block1.norm1.running_mean", STATS),  # 2.6
    ("no_freeze", "train:whiten_bias", TRAIN),  # 0.65
    ("lookahead_square", "train:state:block1.norm1.bias", TRAIN),  # 0.23
    ("lr_inside", "train:state:block1.norm1.bias", TRAIN),  # 0.27
    ("bias_lr_1x", "train:state:block1.norm1.bias", TRAIN),  # 57
    ("muon_per_filter", "muon:state:block1.norm2.bias", TRAIN),  # 1.8
    ("tta_uniform", "tta:2", TTA),  # 1.1e-3 (abs)
    ("no_alternation", "augment:e1", AUGMENT),  # 4.1
    ("translation_reversed", "augment:e1", AUGMENT),  # 4.1
    ("whiten_eps", "whiten:descending", WHITEN),  # 2.0
    ("whiten_centred", "whiten:descending", WHITEN),  # 2.0
)


def sample_view(key: str, array, sampled: bool) -> np.ndarray:
    """Keras' `array` reduced to the entries the fixtures keep of `key`, if `sampled`."""
    array = np.asarray(array, np.float64)
    if not sampled:
        return array
    count = stored.sample_count("airbench", key)
    return array.ravel()[cases.sample_index(array.size, count)]


def _compare(check, key, keras: dict, ref: dict, tolerance, sampled, item=None) -> Row:
    """Keras' `key` against the reference's. A "rel" tolerance is relative to the largest
    entry of the whole Keras array: the fixtures' 32 entries of a kernel that starts as
    identities may all be near 0, and relative to them round-off would look large."""
    got = sample_view(key, keras[key], sampled)
    row = compare(check, item or key, got, ref[key], tolerance, False)
    if tolerance.measure != "rel" or not sampled:
        return row
    scale = float(np.abs(np.asarray(keras[key], np.float64)).max())
    value = row.max_abs / scale if scale > 0 else (0.0 if row.max_abs == 0 else np.inf)
    return dataclasses.replace(row, max_rel=value, value=value)


def forward_rows(keras: dict, ref: dict, sampled: bool = False) -> list[Row]:
    """Every layer's output (training and inference mode), the loss and gradients in float32
    and float64, and the float64 logits, of each network."""
    rows = []
    for network in airbench_side.FORWARD:
        for mode in ("train", "eval"):
            for path in airbench_side.activation_paths(network):
                tolerance = LOGITS if path == "logits" else FORWARD
                key = f"{network}:{mode}:{path}"
                rows.append(
                    _compare(
                        f"9 {network} forward ({mode})", key, keras, ref, tolerance, sampled, path
                    )
                )
        for precision, loss_tol, grads_tol in (("32", LOSS32, GRADS32), ("64", LOSS64, GRADS64)):
            check = f"9 {network} backward float{precision}"
            rows.append(
                _compare(check, f"{network}:loss{precision}", keras, ref, loss_tol, sampled, "loss")
            )
            for name in subset(ref, f"{network}:grads{precision}"):
                key = f"{network}:grads{precision}:{name}"
                rows.append(_compare(check, key, keras, ref, grads_tol, sampled, name))
        key = f"{network}:eval64:logits"
        rows.append(_compare(f"9 {network} float64", key, keras, ref, EVAL64, sampled, "logits"))
    return rows


def stats_rows(keras: dict, ref: dict, sampled: bool = False) -> list[Row]:
    """BN running statistics after one training-mode pass. PyTorch updates the running
    variance with the unbiased batch variance, Keras with the biased one: from torch's
    r = keep r0 + (1 - keep) u, Keras' is exactly r - (r - keep r0) / n (as test 3)."""
    rows = []
    for network in airbench_side.FORWARD:
        state = airbench_side.forward_inputs(network)[0]
        keep = 1.0 - (0.1 if network == "airbench96" else 0.4)  # PyTorch's momentum
        for name, want in subset(ref, f"{network}:stats").items():
            key = f"{network}:stats:{name}"
            if name.endswith("running_var"):
                count = int(keras[f"{network}:count:{name}"])
                r0 = sample_view(key, state[name], sampled)
                want = want - (want - keep * r0) / count
            got = sample_view(key, keras[key], sampled)
            rows.append(
                compare(f"9 {network} BN statistics (Keras' rule)", name, got, want, STATS, False)
            )
    return rows


def train_rows(keras: dict, ref: dict, sampled: bool = False) -> list[Row]:
    """airbench94's 12 updates and airbench94_muon's 6: the loss of each, the whitening
    bias after each, and every weight, BN statistic and velocity after the last."""
    rows = []
    for kind, name in (("train", "airbench94"), ("muon", "airbench94_muon")):
        check = f"9 {name} training float64"
        for key, tolerance in ((f"{kind}:losses", TRAIN_LOSS), (f"{kind}:whiten_bias", TRAIN)):
            rows.append(_compare(check, key, keras, ref, tolerance, sampled, key.split(":")[1]))
        for part in ("state", "velocity"):
            for item in subset(ref, f"{kind}:{part}"):
                key = f"{kind}:{part}:{item}"
                rows.append(_compare(f"{check} ({part})", key, keras, ref, TRAIN, sampled, item))
    return rows


def _aligned(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    """`got`'s filters (rows: v_1..v_12, then -v_1..-v_12) with the signs of `want`'s: an
    eigenvector's sign is arbitrary, the pair's is not. The sign of v_j is `want`'s and
    -v_j's follows it, so that filters without their negatives do not pass."""
    got = got.reshape(want.shape[0], -1)
    half = want.shape[0] // 2
    signs = np.sign(np.sum(got[:half] * want.reshape(want.shape[0], -1)[:half], axis=1))
    return (got * np.concatenate([signs, signs])[:, None]).reshape(want.shape)


def piece_rows(keras: dict, ref: dict, sampled: bool = False) -> list[Row]:
    """TTA levels 0-2, the whitening filters (both orders), the augmentation on the same
    draws and Newton-Schulz."""
    rows = [
        _compare("9 TTA", f"tta:{level}", keras, ref, TTA, sampled, f"level {level}")
        for level in (0, 1, 2)
    ]
    for order in ("descending", "ascending"):
        key = f"whiten:{order}"
        want = np.asarray(ref[key], np.float64).reshape(np.shape(keras[key]))  # stored whole
        got = _aligned(np.asarray(keras[key], np.float64), want)
        rows.append(compare("9 whitening filters (up to sign)", order, got, want, WHITEN, False))
    for case in ("e0", "e1", "cutout"):
        rows.append(
            _compare(
                "9 augmentation, same draws", f"augment:{case}", keras, ref, AUGMENT, sampled, case
            )
        )
    for key in subset(ref, "ns:float32"):
        rows.append(
            _compare("9 Newton-Schulz float32", f"ns:float32:{key}", keras, ref, NS32, sampled, key)
        )
    for key in subset(ref, "ns:bfloat16"):
        rows.append(
            _compare("9 Newton-Schulz bf16", f"ns:bfloat16:{key}", keras, ref, NS16, sampled, key)
        )
    return rows


def planted_rows(keras: dict, ref: dict, sampled: bool = False) -> list[Row]:
    """Each planted error's result against the Keras one: must miss by far."""
    rows = []
    for error, key, tolerance in PLANTED:
        want = np.asarray(ref[f"planted:{error}:{key}"], np.float64)
        got = np.asarray(keras[key], np.float64)
        if key.startswith("whiten:"):  # stored whole
            want = want.reshape(got.shape)
            got = _aligned(got, want)
        else:
            got = sample_view(key, got, sampled)
        at_least = dataclasses.replace(
            tolerance, limit=PLANTED_FACTOR * tolerance.limit, at_least=True
        )
        rows.append(compare(f"9 planted error: {error}", key, got, want, at_least, False))
    return rows


def all_rows(keras: dict, ref: dict, sampled: bool = False) -> list[Row]:
    return (
        forward_rows(keras, ref, sampled)
        + stats_rows(keras, ref, sampled)
        + train_rows(keras, ref, sampled)
        + piece_rows(keras, ref, sampled)
        + planted_rows(keras, ref, sampled)
    )


def tolerance(key: str) -> Tolerance:
    """The tolerance of the check that compares stored quantity `key` (fixture tests)."""
    if key.startswith("planted:"):
        key = key.split(":", 2)[2]
    parts = key.split(":")
    if parts[0] in ("train", "muon"):
        return TRAIN_LOSS if parts[1] == "losses" else TRAIN
    simple = {"tta": TTA, "whiten": WHITEN, "augment": AUGMENT}
    if parts[0] in simple:
        return simple[parts[0]]
    if parts[0] == "ns":
        return NS16 if parts[1] == "bfloat16" else NS32
    quantity = parts[1]
    if quantity in ("train", "eval"):
        return LOGITS if parts[-1] == "logits" else FORWARD
    return {
        "eval64": EVAL64,
        "loss32": LOSS32,
        "loss64": LOSS64,
        "grads32": GRADS32,
        "grads64": GRADS64,
        "stats": STATS,
    }[quantity]
