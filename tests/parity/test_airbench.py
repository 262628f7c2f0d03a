"""Test 9: Keller Jordan's airbench recipes against the PyTorch transcription
(`reference.torch_airbench`, itself checked against airbench's code: tests/parity/README.md).

The four networks layer by layer (float32) with their losses and gradients (float32 and
float64) and BN statistics; airbench94's optimizer, schedule, lookahead and the whitening
bias's freeze over 12 updates and airbench94_muon's Muon over 6 (float64, the package's
training step); test-time augmentation; the whitening filters; the alternating flip,
translation and cutout on the same draws, and the draws' distributions; Newton-Schulz; and
planted errors, one per ingredient, which must fail by far. Tolerances and their reasons:
`tests.parity.airbench_checks`.
"""

import numpy as np
import pytest
from scipy import stats

from tests.parity import airbench_checks, airbench_map, airbench_side, checks
from tf_resnet9 import backends
from tf_resnet9.data import airbench_augment
from tf_resnet9.training import lookahead
from tf_resnet9.training.optimizers import from_airbench_units, from_summed_loss_units
from tf_resnet9.training.schedules import WarmupLinearDecay


def test_every_layer_loss_and_gradient_of_the_four_networks(airbench_results):
    keras, reference, sampled = airbench_results
    rows = airbench_checks.forward_rows(keras, reference, sampled)
    for network, width in airbench_side.FORWARD.items():  # nothing left out
        trained = [n for n in airbench_map.shapes(network, width) if airbench_map.entry(n)]
        trained = [n for n in trained if "running" not in n and n != "whiten.weight"]
        layers = len(airbench_side.activation_paths(network))
        count = sum(row.check.startswith(f"9 {network} ") for row in rows)
        assert count == 2 * layers + 2 * (1 + len(trained)) + 1, network
    assert all(row.ok for row in rows), checks.failures(rows)


def test_batchnorm_statistics_by_keras_rule(airbench_results):
    rows = airbench_checks.stats_rows(*airbench_results)
    assert len(rows) == 2 * (6 + 6 + 6 + 9)  # mean and variance of every BN layer
    assert all(row.ok for row in rows), checks.failures(rows)


def test_training_with_lookahead_the_whitening_bias_freeze_and_muon(airbench_results):
    rows = airbench_checks.train_rows(*airbench_results)
    assert all(row.ok for row in rows), checks.failures(rows)
    keras = airbench_results.keras
    bias = keras["train:whiten_bias"]  # (12, 24): after each update
    # Frozen after update 6: updates 7-9 change nothing, the lookahead at 10 moves it
    # (towards its average), 11 nothing, 12 the final average. Exact: nothing is computed.
    np.testing.assert_array_equal(bias[6:9], np.broadcast_to(bias[5], (3, 24)))
    assert np.abs(bias[9] - bias[8]).max() > 0
    np.testing.assert_array_equal(bias[10], bias[9])
    muon = keras["muon:whiten_bias"]  # frozen after update 3
    np.testing.assert_array_equal(muon[3:], np.broadcast_to(muon[2], (3, 24)))


def test_tta_whitening_augmentation_and_newton_schulz(airbench_results):
    rows = airbench_checks.piece_rows(*airbench_results)
    assert all(row.ok for row in rows), checks.failures(rows)


def test_a_planted_error_in_each_ingredient_fails_by_far(airbench_results):
    rows = airbench_checks.planted_rows(*airbench_results)
    assert len(rows) == len(airbench_checks.PLANTED)
    assert all(row.ok for row in rows), checks.failures(rows)


DRAWS = 4096  # >= 200 expected per value of a 21-valued draw


@pytest.mark.parametrize("pad, size", [(2, 0), (4, 12)])
def test_the_draws_follow_airbench(pad, size):
    # Chi-square against the uniform distributions airbench draws from (P_MIN as test 6:
    # a correct sampler fails once in 10,000 seeds; everything here is seeded).
    flips = np.asarray(airbench_augment.draw_flips(DRAWS, backends.make_seed(1)))
    draws = airbench_augment.draw_epoch(DRAWS, backends.make_seed(2), pad, size)
    samples = {"flip": (flips, 0, 1)}
    samples |= {k: (np.asarray(getattr(draws, k)), -pad, pad) for k in ("shift_y", "shift_x")}
    if size:
        corner = 32 - size
        samples |= {k: (np.asarray(getattr(draws, k)), 0, corner) for k in ("cutout_y", "cutout_x")}
    for name, (values, low, high) in samples.items():
        assert values.min() >= low and values.max() <= high, name
        counts = np.bincount(values - low, minlength=high - low + 1)
        assert stats.chisquare(counts).pvalue >= 1e-4, (name, counts)
    # Independent of each other: the y and x shifts' joint counts are uniform too.
    joint = (draws.shift_y + pad) * (2 * pad + 1) + (draws.shift_x + pad)
    counts = np.bincount(np.asarray(joint), minlength=(2 * pad + 1) ** 2)
    assert stats.chisquare(counts).pvalue >= 1e-4


def test_every_image_is_seen_both_ways_every_two_epochs():
    images = np.random.default_rng(0).integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
    flips = airbench_augment.draw_flips(64, backends.make_seed(3))
    first, second = (
        np.asarray(airbench_augment.alternating_flip(images, flips, epoch)) for epoch in (0, 1)
    )
    np.testing.assert_array_equal(second, first[:, :, ::-1])  # exact: a mirror
    assert 0 < np.asarray(flips).sum() < 64


def test_the_schedule_matches_the_transcription():
    ab = pytest.importorskip("reference.torch_airbench")
    for name, total in (("airbench94", 476), ("airbench96", 1776), ("airbench94_muon", 200)):
        recipe = ab.RECIPES[name]
        schedule = WarmupLinearDecay(1.0, total, int(total * recipe.warmup), 0.2, recipe.end_factor)
        steps = np.arange(total + 5)  # and past the end: held at the end factor
        got = np.asarray(schedule(steps), np.float64)
        want = [ab.lr_factor(recipe, min(k, total), total) for k in steps]
        # float32 arithmetic on factors <= 1: within 4 float32 ulps.
        np.testing.assert_allclose(got, want, rtol=0, atol=5e-7)


def test_the_mean_loss_units_match_the_transcription():
    ab = pytest.importorskip("reference.torch_airbench")
    for name in ("airbench94", "airbench95", "airbench96"):
        recipe = ab.RECIPES[name]
        lr, decay = ab.kilostep_units(recipe)
        got = from_airbench_units(recipe.lr, recipe.weight_decay, recipe.momentum, 1024)
        # torch's lr x batch, and its coefficient (decay / lr) / batch: the same doubles.
        np.testing.assert_allclose(got, (lr * 1024, decay / lr / 1024), rtol=1e-12)
    np.testing.assert_allclose(from_airbench_units(11.5, 0.0153, 0.85, 1024), (1.5, 0.0153 / 11.5))
    np.testing.assert_allclose(
        from_summed_loss_units(0.053, 2e-6 * 2000, 2000), (106.0, 4e-3 / 0.053 / 2000)
    )


def test_lookahead_matches_the_transcription_on_every_tensor():
    torch = pytest.importorskip("torch")
    ab = pytest.importorskip("reference.torch_airbench")
    net = ab.AirbenchNet((4, 8, 8))
    rng = np.random.default_rng(0)
    averages = [
        v.detach().numpy().copy() for v in net.state_dict().values() if v.is_floating_point()
    ]
    average = ab.Lookahead(net)
    for t in (3, 5, 10):
        values = [rng.normal(size=a.shape).astype(np.float32) for a in averages]
        with torch.no_grad():
            for tensor, value in zip(
                (v for v in net.state_dict().values() if v.is_floating_point()), values
            ):
                tensor.copy_(torch.from_numpy(value))
        if t % 5 == 0:
            average.update(net, ab.lookahead_decay(t, 12))
        averages, values = lookahead.lookahead_update(t, 12, averages, values)
        want = [v.numpy() for v in net.state_dict().values() if v.is_floating_point()]
        # The same float32 formula as torch's lerp: within an ulp or two of values <= 4.
        for got, expected in zip(values, want):
            np.testing.assert_allclose(np.asarray(got), expected, rtol=0, atol=1e-6)
