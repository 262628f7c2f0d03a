"""Keras vs PyTorch, layer by layer and step by step: the parity tests' comparisons as a table.

    python -m tests.parity.report [--out benchmarks/results/parity-report-cpu.txt]

Runs every experiment of tests/parity live (torch must be installed: `pip install -e
'.[test]'`) and prints, per check and item (layer, weight or step), the largest absolute
and relative difference between `tf_resnet9` and the PyTorch reference, the measure the
tolerance bounds, and pass or fail. Exits 1 if anything fails. The tolerances and why they
are what they are: tests/parity/checks.py and tests/parity/distributions.py.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import time

from tests.parity import airbench_checks, cases, checks, distributions, experiments, resnet_side
from tf_resnet9.backends.device import current_device
from tf_resnet9.outputs.results import library_versions

INIT_SEED = 3
AUGMENT_SEED = 4


def all_rows() -> list[checks.Row]:
    """Every comparison of tests/parity, run live, in the order of its tests (1-9)."""
    keras_forward, torch_forward = experiments.keras_forward(), experiments.torch_forward()
    initial, _, _ = experiments.forward_inputs()
    keras_opt = experiments.keras_optimizer()
    torch_opt = experiments.torch_optimizer() | experiments.torch_nesterov()
    rows = checks.forward_rows(keras_forward, torch_forward)
    rows += checks.backward_rows(keras_forward, torch_forward)
    rows += checks.batchnorm_rows(keras_forward, torch_forward, initial)
    rows += checks.optimizer_rows(keras_opt, torch_opt)
    rows += checks.drift_rows(keras_opt, torch_opt)
    init_states = {
        "torch": distributions.keras_initial_state("torch", INIT_SEED),
        "he_uniform": distributions.keras_initial_state("he_uniform", INIT_SEED + 1),
        "reference": distributions.torch_initial_state(INIT_SEED),
    }
    rows += distributions.init_rows(*init_states.values())
    rows += distributions.independence_rows(init_states)
    images = cases.random_images(256, AUGMENT_SEED)
    rows += distributions.exact_augment_rows(images, cases.augment_draws(256, AUGMENT_SEED))
    rows += distributions.draw_rows(
        distributions.package_draws(distributions.DRAW_COUNT, AUGMENT_SEED),
        distributions.device_draws(distributions.DRAW_COUNT, AUGMENT_SEED),
        distributions.reference_draws(distributions.DRAW_COUNT, AUGMENT_SEED),
        distributions.pipeline_draws(distributions.DRAW_COUNT, AUGMENT_SEED),
    )
    rows += checks.dynamics_rows(experiments.keras_dynamics(), experiments.torch_dynamics())
    keras_resnets, torch_resnets = resnet_side.keras_resnets(), resnet_side.torch_resnets()
    for model in resnet_side.MODELS:  # test 8: the CIFAR ResNets
        rows += checks.resnet_rows(keras_resnets, torch_resnets, model)
    for model in resnet_side.PLANTED:
        rows += checks.planted_rows(keras_resnets, torch_resnets, model)
    # Test 9: the airbench recipes, their planted errors included.
    rows += airbench_checks.all_rows(experiments.keras_airbench(), experiments.torch_airbench())
    return rows


def _number(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.2e}"


def format_rows(rows: list[checks.Row]) -> str:
    """Rows grouped under their check (checks in order of first appearance), one per item."""
    first = {}
    for index, row in enumerate(rows):
        first.setdefault(row.check, index)
    rows = sorted(rows, key=lambda row: first[row.check])  # stable: items keep their order
    item_width = max(len(row.item) for row in rows)
    header = (
        f"  {'item':{item_width}}  {'max abs':>9}  {'max rel':>9}  "
        f"{'tolerance':<22}  {'measured':>9}  result"
    )
    lines, check = [], None
    for row in rows:
        if row.check != check:
            check = row.check
            lines += ["", check, header]
        sign = ">=" if row.tolerance.at_least else "<="
        tolerance = f"{row.tolerance.measure} {sign} {row.tolerance.limit:.0e}"
        lines.append(
            f"  {row.item:{item_width}}  {_number(row.max_abs):>9}  {_number(row.max_rel):>9}  "
            f"{tolerance:<22}  {_number(row.value):>9}  {'pass' if row.ok else 'FAIL'}"
        )
    return "\n".join(lines)


def _commit() -> str:
    """The checkout's commit, and whether its work tree had changes."""

    def git(*args):
        return subprocess.run(["git", *args], capture_output=True, text=True).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown (not a git checkout)"
    return commit + (" with uncommitted changes" if git("status", "--porcelain") else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="also write the report to this file")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    rows = all_rows()
    elapsed = time.perf_counter() - start
    versions = library_versions()
    failed = [row for row in rows if not row.ok]
    text = "\n".join(
        [
            "tf_resnet9 vs the PyTorch reference (tests/parity)",
            f"commit: {_commit()}",
            f"device: {current_device().name}; "
            + "; ".join(f"{k} {v}" for k, v in versions.items()),
            "max rel = max|keras - reference| / max|reference| per tensor; for p-value rows, "
            "max abs is the test statistic.",
            format_rows(rows),
            "",
            f"{len(rows) - len(failed)} of {len(rows)} comparisons pass; {elapsed:.0f} s.",
        ]
    )
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
