"""The stored reference results are the reference's current output, on this machine too.

The fixtures stand in for a live reference run where torch is absent (`make test-jax`), so
a stored value and a live one must agree as closely as the comparison that uses them
demands, and no closer: float32 results of PyTorch on a CPU depend on the machine (vector
width, thread count, oneDNN's kernels), exactly as Keras' and PyTorch's results differ from
each other (a different summation order, rounded differently). Each stored quantity is
therefore compared with the tolerance of the parity check it serves (`tests.parity.checks`;
`checks.tolerance_of` says which), which was derived from that float32 error growth. A
comparison within it at fixture time and within it at test time is within twice it in the
worst case; the checks' tolerances sit 5x or more above the differences measured.

If this fails after a change to the reference, the experiments or their inputs, rewrite the
fixtures: `python -m tests.parity.make_fixtures`.
"""

import pytest

from tests.parity import checks, stored


def test_fixtures_are_small():
    total = sum(stored.path(name).stat().st_size for name in stored.EXPERIMENTS)
    assert total < 512 * 1024, f"{total} bytes"


@pytest.mark.parametrize("name", stored.EXPERIMENTS)
def test_fixture_matches_a_live_run(name, request):
    pytest.importorskip("torch")
    live = stored.shrink(request.getfixturevalue(f"{name}_results").reference, name)
    saved = stored.load(name)
    assert saved.keys() == live.keys()
    rows = [
        checks.compare(
            f"fixture {name}", key, live[key], value, checks.tolerance_of(name, key), False
        )
        for key, value in saved.items()
    ]
    assert all(row.ok for row in rows), checks.failures(rows)
