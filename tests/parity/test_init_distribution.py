"""Test 5: the initial weights of `resnet9(init=...)` against PyTorch's, as distributions."""

import pytest

from tests.parity import checks, distributions

SEED = 3


@pytest.fixture(scope="module")
def keras_states():
    return (
        distributions.keras_initial_state("torch", SEED),
        distributions.keras_initial_state("he_uniform", SEED + 1),
    )


def test_init_against_the_recipe_bounds(keras_states):
    rows = distributions.init_rows(*keras_states, reference=None)
    assert all(row.ok for row in rows), checks.failures(rows)


def test_init_against_the_reference(keras_states):
    pytest.importorskip("torch")
    reference = distributions.torch_initial_state(SEED)
    rows = distributions.init_rows(*keras_states, reference=reference)
    assert any("two-sample" in row.check for row in rows)
    assert all(row.ok for row in rows), checks.failures(rows)


def test_every_layer_draws_its_own_initial_weights(keras_states):
    keras_torch, keras_he = keras_states
    rows = distributions.independence_rows({"torch": keras_torch, "he_uniform": keras_he})
    assert len(rows) == 4  # layer1's and layer3's residual pairs, for both inits
    assert all(row.ok for row in rows), checks.failures(rows)


def test_the_reference_draws_every_layer_independently():
    pytest.importorskip("torch")
    reference = distributions.torch_initial_state(SEED)
    rows = distributions.independence_rows({"reference": reference})
    assert len(rows) == 2 and all(row.ok for row in rows), checks.failures(rows)
