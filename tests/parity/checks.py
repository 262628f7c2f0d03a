"""Every parity comparison as table rows, with its tolerance and the reason for it.

The tests assert that every row passes (naming the rows that fail); `tests.parity.report`
prints the same rows. Each function takes the Keras results and the reference's (from
`tests.parity.experiments`), live or from the fixtures; `sampled` says the reference holds
only the entries `tests.parity.cases.sample_index` picks, as the fixtures do.

"rel" is max|keras - reference| / max|reference| over one tensor: relative to the tensor's
scale, so that entries near zero do not dominate.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tests.parity import cases, stored
from tests.parity.experiments import subset
from tests.parity.name_map import ACTIVATION_MAP, BN_PATHS

# PyTorch's BatchNorm2d momentum (Keras: 0.9 = 1 - 0.1): running = 0.9 running + 0.1 batch.
BN_MOMENTUM = 0.1


@dataclasses.dataclass(frozen=True)
class Tolerance:
    """A bound on one measure of a difference; `at_least` for differences that must exist."""

    measure: str  # "abs", "rel", "rel L2" or "p" (a p-value)
    limit: float
    at_least: bool = False


# Test 1, float32 forward at full width: convolutions summed in a different order round
# differently; the error grows with depth to ~5e-6 of a layer's largest activation.
FORWARD = Tolerance("rel", 3e-5)
LOGITS = Tolerance("abs", 1e-5)  # logits are ~0.5 at most; measured ~1e-6
# Test 2, float64: the package's logits layer and loss are always float32, so gradients
# carry the float32 round-off of the loss (~3e-8 relative on TensorFlow). On JAX, Keras also
# computes BatchNormalization of float64 inputs in float32 (its type promotion turns float64
# into float32 outside TensorFlow): ~1e-6 there.
LOSS64 = Tolerance("abs", 1e-6)
GRADS64 = Tolerance("rel", 1e-5)
# Test 2, float32: round-off alone gives ~5e-6, but where a ReLU input or the gap between a
# max-pool window's two largest values is within float32 round-off (~1e-5) of zero, the two
# frameworks may route the gradient differently, which moves a whole weight's gradient by up
# to ~7e-3 in L2 (seen in 2 of 8 random batches). Exact agreement is shown in float64.
LOSS32 = Tolerance("abs", 1e-5)
GRADS32 = Tolerance("rel L2", 3e-2)
# Test 3, float32: BN statistics are means over >= 128 values per channel; ~2e-7 measured.
BN_STATS = Tolerance("rel", 2e-6)
# ...and torch's unbiased running variance, taken as it is, must miss that tolerance by 10x
# where a BN layer averages few values (n <= 512: the difference is 0.1 * var / n).
BN_UNBIASED = Tolerance("rel", 10 * BN_STATS.limit, at_least=True)
BN_UNBIASED_MAX_COUNT = 512
# Test 4, float64: the same floors as GRADS64, over 24 steps (~1e-7 TensorFlow, ~5e-7 JAX).
OPTIMIZER = Tolerance("rel", 1e-5)
OPTIMIZER_LOSS = Tolerance("abs", 1e-6)
# ...and the alternatives must drift from the recipe by 1000x that tolerance or more.
DRIFT = Tolerance("rel", 1e3 * OPTIMIZER.limit, at_least=True)
# Test 7, float32: the same ops on the same draws give the same batches, bit for bit on
# TensorFlow; XLA on JAX fuses the normalisation, (x - mean) / std, into other roundings:
# within 2 ulp of values below 4.
BATCHES = Tolerance("abs", 1e-6)
# The loss curves part by float32 round-off and gradient routing (as in GRADS32), which
# training amplifies step by step: ~2e-3 after 32 steps, as far as the reference's own
# float32 run is from its float64 run (~1e-3).
DYNAMICS_LOSS = Tolerance("abs", 1e-2)
# Test 8, the six CIFAR ResNets, float32, full width, 4 images. Round-off grows with depth
# and is larger in training mode, where BN divides by the batch's own standard deviation:
# blocks' outputs measured within 3e-7 (ResNet-20, inference) to 6.5e-6 (ResNet-110,
# training) of their max on TensorFlow, 1.4e-5 against the fixtures' 16 entries (a smaller
# max), 1.1e-5 on JAX.
RESNET_BLOCKS = Tolerance("rel", 5e-5)
# Logits of 0.7 to 4 here: measured 1.9e-7 (ResNet-20, inference) to 5.6e-6 (ResNet-110,
# training, JAX).
RESNET_LOGITS = Tolerance("abs", 5e-5)
RESNET_LOSS = Tolerance("abs", 1e-5)  # a mean of 4 values near 2.3: measured <= 4.8e-7
# Gradients: within 1.5e-5 wherever both frameworks route the gradient through the same
# ReLUs. Where a ReLU input is within float32 round-off of 0 (a few of the ~4M a deep one
# computes), they may not, and the unit's one term of the sums over B x H x W positions
# (256 in stage 3: a random-sign sum of 256 is ~16 terms) moves every gradient below it by
# up to ~1/16 of its norm. Measured in 5 batches: up to 4e-2 (ResNet-44) in L2 against
# torch, and the reference's own float32 is 2.5e-2 from its float64. A wrong layout,
# channel order, mode or loss scale moves a gradient by O(1).
RESNET_GRADS = Tolerance("rel L2", 1e-1)
# The dense layer's gradients have no ReLU between them and the loss: measured <= 1e-6.
RESNET_DENSE_GRADS = Tolerance("rel L2", 1e-5)
# The planted bug (stride-2 convolutions padded as Keras' "same": windows centred one pixel
# off) must miss the logits by 100x their tolerance or more: measured 2.1e-2 (inference),
# 0.31 (training) on ResNet-20.
PLANTED = Tolerance("abs", 100 * RESNET_LOGITS.limit, at_least=True)


@dataclasses.dataclass(frozen=True)
class Row:
    """One comparison: what, where, how far apart, and whether that is within tolerance."""

    check: str
    item: str
    max_abs: float
    max_rel: float
    tolerance: Tolerance
    value: float  # the measure the tolerance bounds

    @property
    def ok(self) -> bool:
        if self.tolerance.at_least:
            return self.value >= self.tolerance.limit
        return self.value <= self.tolerance.limit

    def describe(self) -> str:
        sign = ">=" if self.tolerance.at_least else "<="
        return (
            f"{self.check} | {self.item}: {self.tolerance.measure} {self.value:.3g}, "
            f"required {sign} {self.tolerance.limit:.3g} (max abs difference {self.max_abs:.3g})"
        )


def failures(rows: list[Row]) -> str:
    """Message naming every row that fails, in the order compared (network order)."""
    return "\n".join(row.describe() for row in rows if not row.ok)


def _view(array, sampled: bool) -> np.ndarray:
    array = np.asarray(array, np.float64)
    return array.ravel()[cases.sample_index(array.size)] if sampled else array


def compare(check: str, item: str, got, want, tolerance: Tolerance, sampled: bool) -> Row:
    """Row for Keras' `got` against the reference's `want` (already sampled if `sampled`)."""
    got, want = _view(got, sampled), np.asarray(want, np.float64)
    if got.shape != want.shape:
        raise AssertionError(f"{check} | {item}: shape {got.shape} vs reference {want.shape}")
    diff = np.abs(got - want)
    scale = np.abs(want).max() if want.size else 0.0
    max_abs = float(diff.max()) if diff.size else 0.0
    max_rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else np.inf)
    if tolerance.measure == "rel L2":
        value = float(np.linalg.norm(diff) / np.linalg.norm(want))
    else:
        value = max_rel if tolerance.measure == "rel" else max_abs
    return Row(check, item, max_abs, max_rel, tolerance, value)


def forward_rows(keras: dict, ref: dict, sampled: bool = False) -> list[Row]:
    """Test 1: every layer's output, training and inference mode."""
    rows = []
    for mode in ("train", "eval"):
        for path in ACTIVATION_MAP:
            tolerance = LOGITS if path == "logits" else FORWARD
            key = f"{mode}:{path}"
            rows.append(
                compare(
                    f"1 forward float32 ({mode})", path, keras[key], ref[key], tolerance, sampled
                )
            )
    return rows


def backward_rows(keras: dict, ref: dict, sampled: bool = False) -> list[Row]:
    """Test 2: the loss and the gradient of every trainable weight, float64 and float32."""
    rows = []
    for precision, loss_tol, grads_tol in (("64", LOSS64, GRADS64), ("32", LOSS32, GRADS32)):
        check = f"2 backward float{precision}"
        rows.append(
            compare(
                check, "loss", keras[f"loss{precision}"], ref[f"loss{precision}"], loss_tol, sampled
            )
        )
        got = subset(keras, f"grads{precision}")
        for name, want in subset(ref, f"grads{precision}").items():
            rows.append(compare(check, name, got[name], want, grads_tol, sampled))
    return rows


def batchnorm_rows(keras: dict, ref: dict, initial: dict, sampled: bool = False) -> list[Row]:
    """Test 3: running mean and variance after one training-mode pass.

    Torch updates the running variance with the unbiased batch variance u (sum / (n - 1)),
    Keras with the biased one, u (n - 1) / n. From torch's running_var r = 0.9 r0 + 0.1 u,
    Keras' value is exactly r - (r - 0.9 r0) / n: compared within BN_STATS. Where n is small,
    torch's value taken as it is misses that tolerance (BN_UNBIASED): the difference is real.

    Args:
        initial: The torch-named state before the pass (r0 is its running_var).
    """
    rows = []
    keep = 1.0 - BN_MOMENTUM
    for path in BN_PATHS:
        mean, var = f"{path}.running_mean", f"{path}.running_var"
        got, want = subset(keras, "stats"), subset(ref, "stats")
        rows.append(compare("3 BN running mean", mean, got[mean], want[mean], BN_STATS, sampled))
        count = int(keras[f"count:{path}"])
        r0 = _view(initial[var], sampled)
        keras_rule = want[var] - (want[var] - keep * r0) / count
        rows.append(
            compare("3 BN running var, Keras rule", var, got[var], keras_rule, BN_STATS, sampled)
        )
        if count <= BN_UNBIASED_MAX_COUNT:
            rows.append(
                compare(
                    f"3 BN running var, torch's unbiased as is (n={count})",
                    var,
                    got[var],
                    want[var],
                    BN_UNBIASED,
                    sampled,
                )
            )
    return rows


def optimizer_rows(keras: dict, ref: dict, sampled: bool = False) -> list[Row]:
    """Test 4: per-step losses, then final weights, velocities and BN statistics."""
    check = "4 optimizer+schedule float64"
    rows = [
        compare(check, f"loss, step {step}", got, want, OPTIMIZER_LOSS, False)
        for step, (got, want) in enumerate(zip(keras["losses"], ref["losses"]), 1)
    ]
    state, ref_state = subset(keras, "state"), subset(ref, "state")
    velocity = subset(keras, "velocity")
    keras_rule_var = subset(ref, "keras_rule_var")
    for name, want in subset(ref, "velocity").items():  # the trainable weights
        rows.append(
            compare(check, f"{name} (weight)", state[name], ref_state[name], OPTIMIZER, sampled)
        )
        rows.append(compare(check, f"{name} (velocity)", velocity[name], want, OPTIMIZER, sampled))
    for path in BN_PATHS:
        mean, var = f"{path}.running_mean", f"{path}.running_var"
        rows.append(compare(check, mean, state[mean], ref_state[mean], OPTIMIZER, sampled))
        rows.append(
            compare(
                check, f"{var} (Keras rule)", state[var], keras_rule_var[var], OPTIMIZER, sampled
            )
        )
    return rows


def _largest_drift(check: str, got: dict, want: dict, sampled: bool) -> Row:
    rows = [compare(check, name, got[name], value, DRIFT, sampled) for name, value in want.items()]
    return max(rows, key=lambda row: row.value)


def drift_rows(keras: dict, ref: dict, sampled: bool = False) -> list[Row]:
    """Test 4: the optimizers the recipe is not must end measurably elsewhere.

    One row per alternative: its largest difference from the recipe's final weights.
    `torch.optim.SGD(nesterov=True)` is compared only where the reference ran it (live).
    """
    trainable = subset(ref, "velocity").keys()
    recipe = {name: subset(ref, "state")[name] for name in trainable}
    rows = [
        _largest_drift(
            "4 drift: keras SGD(weight_decay) (decoupled)",
            subset(keras, "sgd_state"),
            recipe,
            sampled,
        )
    ]
    if any(key.startswith("nesterov_state:") for key in ref):
        rows.append(
            _largest_drift(
                "4 drift: torch.optim.SGD(nesterov=True)",
                subset(ref, "nesterov_state"),
                recipe,
                sampled=False,  # both are the reference's, live
            )
        )
    return rows


def dynamics_rows(keras: dict, ref: dict, sampled: bool = False) -> list[Row]:
    """Test 7: the augmented batches, then the loss of every step."""
    batches = subset(ref, "batch")
    got_batches = subset(keras, "batch")
    diffs = [compare("", "", got_batches[k], v, BATCHES, sampled) for k, v in batches.items()]
    worst = max(diffs, key=lambda row: row.value)
    rows = [
        dataclasses.replace(
            worst, check="7 dynamics float32", item=f"augmented batches ({len(diffs)} steps)"
        )
    ]
    rows += [
        compare("7 dynamics float32", f"loss, step {step}", got, want, DYNAMICS_LOSS, False)
        for step, (got, want) in enumerate(zip(keras["losses"], ref["losses"]), 1)
    ]
    return rows


def _resnet_view(key: str, array, sampled: bool) -> np.ndarray:
    """Keras' `array` reduced to the entries the fixtures keep of `key`, if `sampled`."""
    array = np.asarray(array, np.float64)
    if not sampled:
        return array
    count = stored.sample_count("resnets", key)
    return array.ravel()[cases.sample_index(array.size, count)]


def resnet_tolerance(key: str) -> Tolerance:
    """The tolerance of ResNet quantity `key` ("<model>:<quantity>[:<name>]")."""
    quantity = key.split(":")[1]
    if quantity in ("eval", "train"):
        return RESNET_LOGITS if key.endswith(":linear") else RESNET_BLOCKS
    if quantity == "grads" and ":linear." in key:
        return RESNET_DENSE_GRADS
    return {"loss": RESNET_LOSS, "grads": RESNET_GRADS}[quantity]


def resnet_rows(keras: dict, ref: dict, model: str, sampled: bool = False) -> list[Row]:
    """Test 8 for `model`: every block's output and the logits ("linear") in inference and
    training mode, then the loss and the gradient of every trainable weight."""
    rows = []
    for key, want in ref.items():
        if not key.startswith(f"{model}:"):
            continue
        quantity, _, name = key.partition(":")[2].partition(":")
        check = f"8 {model} float32" + (f" ({quantity})" if name else "")
        got = _resnet_view(key, keras[key], sampled)  # sampled here already, if need be
        rows.append(compare(check, name or quantity, got, want, resnet_tolerance(key), False))
    return rows


def planted_rows(keras: dict, ref: dict, model: str, sampled: bool = False) -> list[Row]:
    """Test 8's planted bug: the same-padding copy's logits against the reference's."""
    rows = []
    for mode in ("eval", "train"):
        key = f"{model}:{mode}:linear"
        got = _resnet_view(key, keras[f"{model}:planted_{mode}:linear"], sampled)
        check = f'8 {model} planted bug: "same" padding ({mode})'
        rows.append(compare(check, "linear", got, ref[key], PLANTED, False))
    return rows


# The tolerance of the check each stored quantity serves, by experiment and key prefix
# (`tests.parity.experiments` names the keys "<quantity>:<name>"). Used to compare stored
# reference results with a live reference run (test_fixtures.py).
_FIXTURE_TOLERANCES = {
    "forward": {
        "train": FORWARD,
        "eval": FORWARD,
        "loss32": LOSS32,
        "grads32": GRADS32,
        "stats": BN_STATS,
        "loss64": LOSS64,
        "grads64": GRADS64,
    },
    "optimizer": {
        "losses": OPTIMIZER_LOSS,
        "state": OPTIMIZER,
        "velocity": OPTIMIZER,
        "keras_rule_var": OPTIMIZER,
    },
    "dynamics": {"losses": DYNAMICS_LOSS, "batch": BATCHES},
}


def tolerance_of(experiment: str, key: str) -> Tolerance:
    """The tolerance of the parity check that compares stored quantity `key`."""
    if experiment == "resnets":
        return resnet_tolerance(key)
    if experiment == "airbench":
        from tests.parity import airbench_checks  # it imports this module

        return airbench_checks.tolerance(key)
    if key.endswith(":logits"):
        return LOGITS
    return _FIXTURE_TOLERANCES[experiment][key.split(":")[0]]
