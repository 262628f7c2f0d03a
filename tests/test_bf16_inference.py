"""bfloat16 inference compiled with XLA gives the logits of the same model run op by op.

jaxlib 0.11's CPU compiler (its YNNPACK fusions) turned two bf16 ReLUs that share their zero
plus a reduction downstream (the max pools, a global mean) into garbage: NaN/inf or finite
~1e36 logits, under jit only, for a batch of 8 or more; the networks' activations in float32
under bf16 (`tf_resnet9.models.layers.activation_dtype`) are what keeps it away. Without
them these tests fail on JAX 0.11.2 (310 of 320 logits not finite) and pass on 0.10.2 and on
TensorFlow. A check of finiteness alone is not enough: some graphs give finite garbage, so
the logits are compared with the float32 network's.
"""

import keras
import numpy as np
import pytest
from keras import ops

from tf_resnet9 import backends
from tf_resnet9.models.layers import activation
from tf_resnet9.models.resnet9 import resnet9
from tf_resnet9.models.resnets import resnet18_cifar
from tf_resnet9.training.optimizers import NesterovSGD
from tf_resnet9.training.schedules import PiecewiseLinear
from tf_resnet9.training.steps import CompiledSteps

# On TensorFlow, which the bug spares, with the slow tests: its XLA compiles bf16 slowly on
# a CPU (100 s for these four).
pytestmark = [pytest.mark.slow] if backends.NAME == "tensorflow" else []
BATCH = 32  # XLA:CPU makes the fusion for a batch of 8 or more
MODELS = {
    "resnet9": lambda dtype: resnet9(width=0.0625, dtype=dtype),
    "resnet9_celu": lambda dtype: resnet9(width=0.0625, dtype=dtype, act=activation("celu")),
    "resnet18": lambda dtype: resnet18_cifar(width=0.125, dtype=dtype),  # global mean pool
}


def compiled_logits(model, images):
    def infer(trainable, non_trainable, images):
        return model.stateless_call(trainable, non_trainable, images, training=False)[0]

    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]
    logits = backends.compile_fn(infer, jit=True)(trainable, non_trainable, images)
    return ops.convert_to_numpy(ops.cast(logits, "float32"))


def float32_twin(build, model):
    """The same network and weights in float32 (which the bug spares), as the reference: it
    compiles in a second, where running the bf16 model op by op takes several."""
    twin = build("float32")
    twin.set_weights([ops.convert_to_numpy(ops.cast(w, "float32")) for w in model.weights])
    return twin


def close_to(got, expected):
    """bf16 rounding moves logits by ~1% of their scale (0.6% measured); the bug by 1e30 or
    NaN. Finiteness alone is not enough: some graphs give finite garbage."""
    assert np.isfinite(got).all(), f"{(~np.isfinite(got)).sum()} of {got.size} not finite"
    np.testing.assert_allclose(got, expected, rtol=0.05, atol=0.05 * np.abs(expected).max())


@pytest.mark.parametrize("name", list(MODELS))
def test_compiled_bf16_inference_matches_float32(name):
    keras.utils.set_random_seed(0)
    model = MODELS[name]("mixed_bfloat16")
    images = np.random.default_rng(0).normal(size=(BATCH, 32, 32, 3)).astype(np.float32)
    twin = float32_twin(MODELS[name], model)
    close_to(compiled_logits(model, images), compiled_logits(twin, images))


def test_compiled_evaluation_after_bf16_training_steps():
    # The path of the issue: bf16 training steps, then CompiledSteps.evaluate, whose NaN test
    # loss stopped `tf_resnet9.train` after epoch 1.
    keras.utils.set_random_seed(1)
    model = resnet9(width=0.0625, dtype="mixed_bfloat16")
    optimizer = NesterovSGD(PiecewiseLinear([0, 1, 3], [0.0, 0.4, 0.0], steps_per_epoch=2))
    steps = CompiledSteps(model, optimizer, jit=True, grad_norms=False)
    rng = np.random.default_rng(0)
    state = steps.initial_state()
    for _ in range(2):  # one step a call: XLA:CPU runs a loop of steps slowly
        images = rng.normal(size=(1, BATCH, 32, 32, 3)).astype(np.float32)
        labels = rng.integers(0, 10, (1, BATCH)).astype(np.int32)
        state, totals = steps.train_on_batches(state, images, labels)
    assert int(totals.first_nonfinite) == -1
    steps.finish(state)
    batch = (
        rng.integers(0, 256, (BATCH, 32, 32, 3)).astype(np.uint8),
        rng.integers(0, 10, BATCH).astype(np.int32),
        np.ones(BATCH, np.float32),
    )
    twin = float32_twin(lambda dtype: resnet9(width=0.0625, dtype=dtype), model)
    reference = CompiledSteps(twin, keras.optimizers.SGD(), jit=True, grad_norms=False)
    got, expected = (
        float(ops.convert_to_numpy(s.evaluate(s.initial_state(), *batch).loss_sum))
        for s in (steps, reference)
    )
    assert np.isfinite(got) and got == pytest.approx(expected, rel=0.02), (got, expected)
