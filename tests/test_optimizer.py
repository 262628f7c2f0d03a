"""The optimizers against plain NumPy transcriptions of their updates: NesterovSGD (the
recipe's, README.org), MomentumSGD (He et al.'s) and AdamL2 (PyTorch's Adam)."""

import keras
import numpy as np
import pytest

from tf_resnet9.models.resnet9 import resnet9
from tf_resnet9.training.optimizers import AdamL2, MomentumSGD, NesterovSGD, to_summed_loss_units
from tf_resnet9.training.schedules import PiecewiseLinear, multi_step


def recipe_update(weights, velocities, grads, lr, momentum=0.9, weight_decay=5e-4):
    """The recipe's update, line by line, in float64."""
    new_weights, new_velocities = [], []
    for w, v, grad in zip(weights, velocities, grads):
        g = grad + weight_decay * w
        d = -lr * g
        v = momentum * v + d
        new_weights.append(w + d + momentum * v)
        new_velocities.append(v)
    return new_weights, new_velocities


def test_matches_numpy_recipe_over_steps_with_changing_lr():
    rng = np.random.default_rng(0)
    shapes = [(3, 3, 2, 4), (4,), (7, 3)]
    initial = [rng.normal(size=s) for s in shapes]
    variables = [keras.Variable(w.astype("float32")) for w in initial]
    # Knots at fractions of an epoch with 2 steps per epoch: lr changes at every step,
    # rising then falling, like the recipe's 485-step warm-up and 1843-step decay.
    schedule = PiecewiseLinear([0, 3, 7], [0.0, 0.4, 0.0], steps_per_epoch=2)
    optimizer = NesterovSGD(schedule, momentum=0.9, weight_decay=5e-4)
    weights, velocities = initial, [np.zeros(s) for s in shapes]
    lrs = []
    for k in range(1, 15):
        grads = [rng.normal(size=s) for s in shapes]
        lr = np.interp(k / 2, [0, 3, 7], [0.0, 0.4, 0.0])
        lrs.append(lr)
        weights, velocities = recipe_update(weights, velocities, grads, lr)
        optimizer.apply_gradients(zip([g.astype("float32") for g in grads], variables))
    assert all(a != b for a, b in zip(lrs, lrs[1:]))  # the lr changes at every step
    # float32 against float64 over 14 steps: a few ulp per operation, well inside 1e-5.
    for variable, expected in zip(variables, weights):
        np.testing.assert_allclose(variable.numpy(), expected, rtol=1e-5, atol=1e-6)
    for velocity, expected in zip(optimizer.velocities, velocities):
        np.testing.assert_allclose(velocity.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_first_recipe_step_uses_lr_at_step_one():
    # Step k=1 of the recipe has lr = 0.4/485 (not 0): w1 = w0 - (1 + 0.9) * lr * (g + wd*w0).
    schedule = PiecewiseLinear([0, 5, 24], [0.0, 0.4, 0.0], steps_per_epoch=97)
    optimizer = NesterovSGD(schedule)
    w = keras.Variable(np.array([1.0, -2.0], "float32"))
    optimizer.apply_gradients([(np.array([0.5, 0.25], "float32"), w)])
    lr = 0.4 / 485
    expected = np.array([1.0, -2.0]) - 1.9 * lr * (
        np.array([0.5, 0.25]) + 5e-4 * np.array([1.0, -2.0])
    )
    np.testing.assert_allclose(w.numpy(), expected, rtol=1e-6)  # float32 round-off only


def test_weight_decay_enters_the_momentum():
    # With zero gradient, coupled decay still builds velocity; Keras' decoupled decay would not.
    optimizer = NesterovSGD(0.1, momentum=0.9, weight_decay=0.5)
    w = keras.Variable(np.array([2.0], "float32"))
    optimizer.apply_gradients([(np.zeros(1, "float32"), w)])
    np.testing.assert_allclose(optimizer.velocities[0].numpy(), [-0.1 * 0.5 * 2.0], rtol=1e-6)


def test_summed_loss_units_leave_the_update_unchanged():
    lr, wd = to_summed_loss_units(0.4, 5e-4, 512)
    assert lr == pytest.approx(0.4 / 512) and wd == pytest.approx(5e-4 * 512)
    grad_mean, w = 0.3, 1.7
    assert lr * (512 * grad_mean + wd * w) == pytest.approx(0.4 * (grad_mean + 5e-4 * w))


def test_serialization_round_trip():
    optimizer = NesterovSGD(PiecewiseLinear([0, 5, 24], [0, 0.4, 0], 97), 0.8, 1e-3)
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert isinstance(restored, NesterovSGD)
    assert restored.get_config() == optimizer.get_config()
    assert restored.momentum == 0.8 and restored.l2 == 1e-3


def test_saved_model_restores_optimizer_state_and_schedule(tmp_path):
    model = resnet9(width=0.0625)
    model.compile(
        optimizer=NesterovSGD(PiecewiseLinear([0, 5, 24], [0, 0.4, 0], 97)),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    rng = np.random.default_rng(0)
    model.train_on_batch(rng.normal(size=(4, 32, 32, 3)).astype("float32"), np.arange(4))
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    assert isinstance(loaded.optimizer, NesterovSGD)
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    assert int(loaded.optimizer.iterations.numpy()) == 1
    for saved, restored in zip(model.optimizer.velocities, loaded.optimizer.velocities):
        np.testing.assert_array_equal(restored.numpy(), saved.numpy())  # a copy: exact


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"momentum": 1.0}, "momentum=1.0 is invalid"),
        ({"weight_decay": -1.0}, "weight_decay=-1.0 is invalid"),
    ],
)
def test_invalid_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        NesterovSGD(0.1, **kwargs)


def test_momentum_sgd_is_heavy_ball_with_coupled_l2():
    # v = m v - lr (g + wd w); w = w + v, in float64, over a step decay.
    rng = np.random.default_rng(1)
    w0 = rng.normal(size=(5, 3))
    variable = keras.Variable(w0.astype("float32"))
    schedule = multi_step(0.1, [2], gamma=0.1, steps_per_epoch=2)
    optimizer = MomentumSGD(schedule, momentum=0.9, weight_decay=1e-4)
    w, v = w0, np.zeros_like(w0)
    for k in range(1, 9):
        grad = rng.normal(size=w0.shape)
        lr = 0.1 if k <= 4 else 0.01
        v = 0.9 * v - lr * (grad + 1e-4 * w)
        w = w + v
        optimizer.apply_gradients([(grad.astype("float32"), variable)])
    # float32 against float64 over 8 steps: a few ulp per operation, inside 1e-5.
    np.testing.assert_allclose(variable.numpy(), w, rtol=1e-5, atol=1e-6)


def torch_adam(w, grads, lr, weight_decay, betas=(0.9, 0.999), eps=1e-8):
    """PyTorch's Adam(weight_decay=...) as its documentation writes it, in float64."""
    m, v = np.zeros_like(w), np.zeros_like(w)
    for t, grad in enumerate(grads, start=1):
        g = grad + weight_decay * w
        m = betas[0] * m + (1 - betas[0]) * g
        v = betas[1] * v + (1 - betas[1]) * g * g
        m_hat, v_hat = m / (1 - betas[0] ** t), v / (1 - betas[1] ** t)
        w = w - lr * m_hat / (np.sqrt(v_hat) + eps)
    return w


def test_adam_l2_is_pytorch_adam_with_weight_decay():
    rng = np.random.default_rng(2)
    w0 = rng.normal(size=(4, 6))
    grads = [rng.normal(size=w0.shape) for _ in range(10)]
    variable = keras.Variable(w0.astype("float32"))
    optimizer = AdamL2(1e-3, weight_decay=0.1)  # large enough to matter over 10 steps
    for grad in grads:
        optimizer.apply_gradients([(grad.astype("float32"), variable)])
    expected = torch_adam(w0, grads, 1e-3, 0.1)
    # Keras adds epsilon to sqrt(v) before the bias correction, PyTorch after: with
    # |g| ~ 1 that moves an update by ~1e-8 of itself. The rest is float32 round-off of
    # updates of ~1e-3: absolute 1e-7 over 10 steps.
    np.testing.assert_allclose(variable.numpy(), expected, rtol=0, atol=1e-6)
    without_decay = torch_adam(w0, grads, 1e-3, 0.0)
    assert np.abs(expected - without_decay).max() > 1e-5  # the decay is visible


def test_adam_l2_round_trips_its_weight_decay():
    restored = AdamL2.from_config(AdamL2(2e-3, weight_decay=3e-5).get_config())
    assert restored.l2 == 3e-5 and float(restored.learning_rate) == pytest.approx(2e-3)
