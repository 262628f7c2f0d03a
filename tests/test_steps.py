"""The compiled training steps against Keras' own trainer, and their bookkeeping."""

import contextlib
from typing import NamedTuple

import keras
import numpy as np
import pytest
from keras import ops
from scipy import special

from tf_resnet9 import backends, build
from tf_resnet9.config import TrainConfig
from tf_resnet9.config.settings import resolve
from tf_resnet9.data import augment
from tf_resnet9.data.inputs import DeviceInput
from tf_resnet9.data.splits import Splits
from tf_resnet9.models.resnet9 import resnet9
from tf_resnet9.training import loop
from tf_resnet9.training.evaluation import EvalSet, evaluate
from tf_resnet9.training.optimizers import NesterovSGD
from tf_resnet9.training.schedules import LearningRate, PiecewiseLinear
from tf_resnet9.training.steps import CompiledSteps, cross_entropy

WIDTH = 0.0625  # channels 4/8/16/32
BATCH = 16
RNG = np.random.default_rng(0)
IMAGES = RNG.normal(size=(3, BATCH, 32, 32, 3)).astype(np.float32)
LABELS = RNG.integers(0, 10, (3, BATCH)).astype(np.int32)


def recipe_schedule():
    # 2 steps per epoch: the learning rate changes at every step.
    return PiecewiseLinear([0, 1, 3], [0.0, 0.4, 0.0], steps_per_epoch=2)


def recipe_optimizer():
    return NesterovSGD(recipe_schedule())


def new_steps(dtype=None, seed=1):
    keras.utils.set_random_seed(seed)
    model = resnet9(width=WIDTH, dtype=dtype)
    return CompiledSteps(model, recipe_optimizer(), jit=True)


def weights(model):
    return [ops.convert_to_numpy(v) for v in model.weights]


def float64_enabled():
    """JAX computes in float32 unless 64-bit types are switched on; TensorFlow always can."""
    if keras.backend.backend() == "jax":
        import jax

        return jax.enable_x64(True)
    return contextlib.nullcontext()


@pytest.mark.parametrize("seed", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_three_steps_match_keras_train_on_batch(seed):
    # float64: at the recipe's learning rates a tiny network on random data is chaotic, and
    # in float32 the two compilations' different summation orders (~1e-6) can flip a ReLU
    # or max-pool choice and grow to 1e-3 within three steps (seen for some seeds). In
    # float64 the rounding is 1e-16; the logits layer stays float32 by design, so 1e-6
    # relative and 1e-7 absolute (measured: 8e-8 relative of a tensor's largest weight on
    # TensorFlow, 1e-15 on JAX) still expose any difference in the maths: a wrong learning
    # rate, momentum or weight decay moves weights of order 0.1 by ~1e-2.
    with float64_enabled():
        steps = new_steps(dtype="float64", seed=seed)
        reference = keras.models.clone_model(steps.model)
        reference.set_weights(steps.model.get_weights())
        reference.compile(
            optimizer=recipe_optimizer(),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        images = IMAGES.astype("float64")
        losses = [reference.train_on_batch(images[i], LABELS[i]) for i in range(3)]

        state, totals = steps.train_on_batches(steps.initial_state(), images, LABELS)
        steps.finish(state)
        for variable, got, expected in zip(
            steps.model.weights, weights(steps.model), weights(reference)
        ):
            assert got.dtype == np.float64, variable.path
            np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7, err_msg=variable.path)
    np.testing.assert_allclose(float(totals.loss_sum), sum(losses), rtol=1e-5)
    assert int(totals.first_nonfinite) == -1


class Epochs(NamedTuple):
    """What `loop.run_epoch` trains: steps at their learning rates."""

    steps: CompiledSteps
    learning_rates: tuple


def test_one_call_equals_several_calls():
    # Two steps in one looped call against one step per call. Short: XLA's CPU backend runs
    # convolutions inside a loop ~70x slower, and two steps already cross a loop iteration.
    images = RNG.integers(0, 256, (2 * BATCH, 32, 32, 3), dtype=np.uint8)
    runs = []
    for steps_per_call in (2, 1):
        keras.utils.set_random_seed(1)
        # A constant learning rate the calls' rates replace (as a run builds it).
        steps = CompiledSteps(resnet9(width=WIDTH), NesterovSGD(0.0), jit=True)
        device_input = DeviceInput(images, images[:, 0, 0, 0] % 10, BATCH, steps_per_call, 5)
        training = Epochs(steps, (LearningRate(recipe_schedule(), 2),))
        state, _ = loop.run_epoch(training, steps.initial_state(), device_input)
        steps.finish(state)
        runs.append(weights(steps.model))
    # The same steps on the same data; only the call boundaries differ. float32, tiny model.
    for a, b in zip(*runs):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_first_nonfinite_step_is_located():
    images = IMAGES.copy()
    images[1, 3] = np.nan  # one image of the second step
    steps = new_steps()
    _, totals = steps.train_on_batches(steps.initial_state(), images, LABELS)
    assert int(totals.first_nonfinite) == 1
    assert not np.isfinite(float(totals.loss_sum))


def test_evaluate_counts_only_real_images():
    steps = new_steps()
    test_images = RNG.integers(0, 256, (21, 32, 32, 3), dtype=np.uint8)
    test_labels = RNG.integers(0, 10, 21).astype(np.int32)
    eval_set = EvalSet.build(test_images, test_labels, 8)  # 3 batches, 3 padding images
    assert eval_set.images.shape == (3, 8, 32, 32, 3) and eval_set.count == 21
    evaluation = evaluate(steps, steps.initial_state(), eval_set)
    logits = steps.model.predict(ops.convert_to_numpy(augment.normalize(test_images)), verbose=0)
    expected_loss = -special.log_softmax(logits, axis=-1)[np.arange(21), test_labels].sum()
    # float32 sums of 21 terms, compiled vs. Keras predict: a few ulp each.
    np.testing.assert_allclose(evaluation.mean_loss * 21, expected_loss, rtol=1e-5)
    predicted = logits.argmax(-1)
    assert evaluation.accuracy * 21 == pytest.approx((predicted == test_labels).sum(), abs=1e-9)
    expected_confusion = np.zeros((10, 10), np.int64)
    np.add.at(expected_confusion, (test_labels, predicted), 1)
    np.testing.assert_array_equal(evaluation.confusion, expected_confusion)  # counts: exact
    top5 = (np.argsort(-logits, axis=-1)[:, :5] == test_labels[:, None]).any(axis=-1)
    assert evaluation.top5_accuracy * 21 == pytest.approx(top5.sum(), abs=1e-9)


def test_gradient_norms_per_layer_group():
    steps = new_steps()
    assert steps.grad_groups == ("prep", "layer1", "layer2", "layer3", "linear")
    model = steps.model
    initial = [v.value for v in model.trainable_variables]

    def loss_fn(trainable, images, labels):
        logits, _ = model.stateless_call(
            trainable, [v.value for v in model.non_trainable_variables], images, training=True
        )
        return ops.mean(cross_entropy(labels, logits)), None

    # The gradient at the initial weights, computed here, against the step's own norms.
    _, grads = backends.value_and_grad(loss_fn)(initial, IMAGES[0], LABELS[0])
    _, totals = steps.train_on_batches(steps.initial_state(), IMAGES[:1], LABELS[:1])
    norms = ops.convert_to_numpy(totals.grad_norms)
    assert norms.shape == (1, 5)
    squares = {}
    for variable, grad in zip(model.trainable_variables, grads):
        group = variable.path.split("/")[0].split("_")[0]
        squares[group] = squares.get(group, 0.0) + np.sum(ops.convert_to_numpy(grad) ** 2)
    expected = np.sqrt([squares[group] for group in steps.grad_groups])
    # float32 sums of squares in another order: relative 1e-5 (measured below 1e-6).
    np.testing.assert_allclose(norms[0], expected, rtol=1e-5)


def test_discarded_updates_leave_the_model_untouched():
    steps = new_steps()
    before = weights(steps.model) + [ops.convert_to_numpy(v) for v in steps.optimizer.variables]
    outputs = steps.run_discarding_updates(steps.train_on_batches, IMAGES, LABELS)
    backends.wait(outputs)
    after = weights(steps.model) + [ops.convert_to_numpy(v) for v in steps.optimizer.variables]
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)  # restored or never touched: exact
    state, _ = steps.train_on_batches(steps.initial_state(), IMAGES, LABELS)
    steps.finish(state)
    assert int(ops.convert_to_numpy(steps.optimizer.iterations)) == 3


# Mixed precision: the GPU's default (bf16 on Ampere and newer, fp16 with the package's own
# loss scaling before), built as a run builds it and trained a few real steps on a CPU.


def mixed_steps(precision):
    keras.utils.set_random_seed(1)
    # XLA on, as on the GPU whose defaults these are.
    config = TrainConfig(width=WIDTH, batch_size=BATCH, peak_lr=0.05, precision=precision, jit=True)
    settings = resolve(config, 3 * BATCH, BATCH)
    # The data only counts the classes here (the images are the steps' prepared batches).
    splits = Splits.of_arrays((np.zeros((1, 32, 32, 3), np.uint8), np.zeros(1, np.int32)))
    return build.build_steps(config, settings, splits)  # at lr 0.05: the optimizer's, constant


def losses_of_steps(steps, count: int = 4) -> list[float]:
    """The loss of each of `count` steps on the same batch, one step per call (XLA's CPU
    loops are slow), the update applied between."""
    state, losses = steps.initial_state(), []
    for _ in range(count):
        state, totals = steps.train_on_batches(state, IMAGES[:1], LABELS[:1])
        assert np.asarray(totals.loss_sum).dtype == np.float32
        losses.append(float(totals.loss_sum))
    steps.finish(state)
    assert all(np.isfinite(w).all() for w in weights(steps.model))
    return losses


@pytest.fixture(scope="module")
def float32_losses():
    return losses_of_steps(mixed_steps("float32"))


@pytest.mark.parametrize(
    "precision, compute", [("mixed_bfloat16", "bfloat16"), ("mixed_float16", "float16")]
)
def test_mixed_precision_trains_in_its_dtypes_and_close_to_float32(
    precision, compute, float32_losses
):
    steps = mixed_steps(precision)
    # fp16 gradients underflow without a loss scale: the package adds Keras' dynamic one.
    scaled = isinstance(steps.optimizer, keras.optimizers.LossScaleOptimizer)
    assert scaled == (precision == "mixed_float16")
    for layer in steps.model.layers[1:]:  # after the input
        # float32: the logits always; the activations under bf16 (`activation_dtype`).
        activation = layer.name.endswith(("_relu", "_celu"))
        full = layer.name == "logits" or (activation and compute == "bfloat16")
        assert layer.compute_dtype == ("float32" if full else compute), layer.name
    assert all(v.dtype == "float32" for v in steps.model.variables)  # weights stay float32
    # Velocities (and fp16's loss scale) float32; the counters are integers.
    floats = [v for v in steps.optimizer.variables if "float" in v.dtype]
    assert floats and all(v.dtype == "float32" for v in floats)
    # The graph's output, not an eager call: TensorFlow's eager CPU kernels (oneDNN) have
    # no bf16 or fp16 convolution without AVX-512.
    assert keras.backend.standardize_dtype(steps.model.outputs[0].dtype) == "float32"
    losses = losses_of_steps(steps)
    assert losses[-1] < losses[0]  # it learns the batch it keeps seeing
    # Reduced-precision activations: each step's loss within 2% of float32's (bf16 keeps 8
    # significant bits, ~0.4% per rounding, fp16 11; measured below 0.5% for both).
    np.testing.assert_allclose(losses, float32_losses, rtol=0.02)
