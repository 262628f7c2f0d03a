"""Tests 1-3: the full-width network on one batch of 8 images, layer by layer.

Same weights (random BN parameters and statistics too), same images: every layer's output
in training and inference mode, the loss and every gradient, and the BN statistics after
the pass. Tolerances and their reasons: `tests.parity.checks`.
"""

from tests.parity import checks
from tests.parity.experiments import forward_inputs


def test_forward_every_layer_in_training_and_inference_mode(forward_results):
    keras, reference, sampled = forward_results
    rows = checks.forward_rows(keras, reference, sampled)
    assert all(row.ok for row in rows), checks.failures(rows)


def test_backward_loss_and_every_gradient(forward_results):
    keras, reference, sampled = forward_results
    rows = checks.backward_rows(keras, reference, sampled)
    assert all(row.ok for row in rows), checks.failures(rows)


def test_batchnorm_running_statistics_after_one_step(forward_results):
    keras, reference, sampled = forward_results
    initial, _, _ = forward_inputs()
    rows = checks.batchnorm_rows(keras, reference, initial, sampled)
    assert all(row.ok for row in rows), checks.failures(rows)
    # The unbiased/biased difference is shown where it is large enough to see, not skipped.
    assert sum("unbiased" in row.check for row in rows) == 3  # layer3 and its residual
