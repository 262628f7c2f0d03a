"""The stored reference results are the reference's current output.

If this fails after a change to the reference, the experiments or their inputs, rewrite the
fixtures: `python -m tests.parity.make_fixtures`.
"""

import numpy as np
import pytest

from tests.parity import stored

# A live run on another machine rounds differently; the tests' own tolerances are looser
# than this, so a fixture within it serves them as well as a live run.
RTOL, ATOL = 1e-4, 1e-6


def test_fixtures_are_small():
    total = sum(stored.path(name).stat().st_size for name in stored.EXPERIMENTS)
    assert total < 512 * 1024, f"{total} bytes"


@pytest.mark.parametrize("name", stored.EXPERIMENTS)
def test_fixture_matches_a_live_run(name, request):
    pytest.importorskip("torch")
    live = stored.shrink(request.getfixturevalue(f"{name}_results").reference)
    saved = stored.load(name)
    assert saved.keys() == live.keys()
    for key, value in saved.items():
        np.testing.assert_allclose(value, live[key], rtol=RTOL, atol=ATOL, err_msg=key)
