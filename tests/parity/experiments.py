"""The parity experiments, each run the same way on both sides.

Every `keras_*` function runs `tf_resnet9`; every `torch_*` function runs the reference
(`tests.parity.torch_side`: torch must be installed). Both return flat dicts of NumPy arrays
under the same keys, "<quantity>:<torch name or module path>", which is also how
`tests.parity.stored` keeps the reference's side.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from tests.parity import airbench_side, cases, keras_side, resnet_side
from tests.parity.name_map import BN_PATHS
from tf_resnet9.config import TrainConfig
from tf_resnet9.data import augment
from tf_resnet9.training.optimizers import NesterovSGD
from tf_resnet9.training.schedules import PiecewiseLinear

# Seeds of the inputs: any values work; fixed so that every run and the fixtures agree.
FORWARD_SEEDS = {"state": 0, "images": 1, "labels": 2}
OPTIMIZER_SEEDS = {"state": 10, "images": 11}
DYNAMICS_SEEDS = {"state": 21, "images": 20, "plan": 22}
# The Keras side trains with the package's own defaults (the reference with the recipe's own).
RECIPE = TrainConfig()
CIFAR10_TRAIN_IMAGES = 50_000
# Test 4's float64 steps, XLA-compiled or not: on a 2-core CPU TensorFlow's own float64
# kernels take 9.4 s, XLA 34 s (the same results within 2.4e-7); JAX runs everything
# through XLA, where compiling the step (34 s) beats running it op by op (63 s).
FLOAT64_JIT = keras.backend.backend() != "tensorflow"


def _flat(prefix: str, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {f"{prefix}:{name}": np.asarray(value) for name, value in arrays.items()}


def subset(results: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """The arrays stored under "<prefix>:<name>", by name."""
    start = f"{prefix}:"
    return {key[len(start) :]: value for key, value in results.items() if key.startswith(start)}


def recipe_schedule() -> PiecewiseLinear:
    """The package's default schedule over CIFAR-10's 97 steps per epoch, from step 1."""
    steps_per_epoch = CIFAR10_TRAIN_IMAGES // RECIPE.batch_size
    return PiecewiseLinear(*RECIPE.lr_knots, steps_per_epoch=steps_per_epoch)


def recipe_optimizer() -> NesterovSGD:
    """The package's optimizer with its default settings and schedule."""
    return NesterovSGD(
        recipe_schedule(), momentum=RECIPE.momentum, weight_decay=RECIPE.weight_decay
    )


# Tests 1-3: one full-width batch of 8 images, forward and backward.


def forward_inputs() -> tuple[dict, np.ndarray, np.ndarray]:
    """(torch-named weights with random BN parameters and statistics, float32 normalised
    NHWC images, int32 labels)."""
    state = cases.perturbed_state(cases.FORWARD_WIDTH, FORWARD_SEEDS["state"])
    images = cases.normalise(cases.random_images(cases.FORWARD_BATCH, FORWARD_SEEDS["images"]))
    return state, images, cases.random_labels(cases.FORWARD_BATCH, FORWARD_SEEDS["labels"])


def keras_forward() -> dict[str, np.ndarray]:
    """Layer outputs in training and inference mode, loss, gradients and BN statistics after
    one training-mode pass (float32), the loss and gradients again in float64, and the
    number of values each BN layer averages over ("count:<module path>")."""
    state, images, labels = forward_inputs()
    model = keras_side.build(state, cases.FORWARD_WIDTH)
    results = _flat("train", keras_side.forward(model, images, training=True))
    results |= _flat("eval", keras_side.forward(model, images, training=False))
    step = keras_side.training_pass(model, images, labels)
    results |= {"loss32": np.float64(step["loss"])} | _flat("grads32", step["grads"])
    results |= _flat("stats", step["stats"])
    for path in BN_PATHS:
        _, height, width, _ = model.get_layer(path.replace(".", "_")).input.shape
        results[f"count:{path}"] = np.int64(len(images) * height * width)
    with keras_side.float64_enabled():
        model64 = keras_side.build(state, cases.FORWARD_WIDTH, "float64")
        step64 = keras_side.training_pass(model64, images.astype(np.float64), labels)
    results |= {"loss64": np.float64(step64["loss"])} | _flat("grads64", step64["grads"])
    return results


def torch_forward() -> dict[str, np.ndarray]:
    """`keras_forward`'s quantities from the reference (no "count:" entries)."""
    from tests.parity import torch_side

    state, images, labels = forward_inputs()
    x = torch_side.nchw(images)
    results = {}
    for mode, training in (("train", True), ("eval", False)):
        model = torch_side.build(state, cases.FORWARD_WIDTH)  # fresh BN statistics
        results |= _flat(mode, torch_side.forward(model, x, training=training))
    step = torch_side.training_pass(torch_side.build(state, cases.FORWARD_WIDTH), x, labels)
    results |= {"loss32": np.float64(step["loss"])} | _flat("grads32", step["grads"])
    results |= _flat("stats", step["stats"])
    model64 = torch_side.build(state, cases.FORWARD_WIDTH, "float64")
    step64 = torch_side.training_pass(model64, torch_side.nchw(images.astype(np.float64)), labels)
    results |= {"loss64": np.float64(step64["loss"])} | _flat("grads64", step64["grads"])
    return results


# Test 4: the optimizer and the schedule, 24 steps of a narrow model, float64.


def optimizer_batches() -> list[tuple[np.ndarray, np.ndarray]]:
    """24 distinct float64 batches of 32 normalised images (no augmentation: the optimizer
    is under test), with labels."""
    count = cases.OPTIMIZER_BATCH * cases.OPTIMIZER_STEPS
    raw, labels = cases.learnable_images(count, OPTIMIZER_SEEDS["images"])
    images = cases.normalise(raw).astype(np.float64)
    size = cases.OPTIMIZER_BATCH
    return [(images[i : i + size], labels[i : i + size]) for i in range(0, count, size)]


def _train_results(prefix: str, run: dict) -> dict[str, np.ndarray]:
    results = {f"{prefix}losses": run["losses"]} | _flat(f"{prefix}state", run["state"])
    if "velocity" in run:
        results |= _flat(f"{prefix}velocity", run["velocity"])
    return results


def keras_optimizer() -> dict[str, np.ndarray]:
    """Training with `NesterovSGD` and `PiecewiseLinear` (the recipe), and with Keras'
    `SGD(momentum=0.9, nesterov=True, weight_decay=5e-4)` (prefix "sgd_"), in float64.

    On TensorFlow the step runs uncompiled (`FLOAT64_JIT`); what is under test is the
    optimizer and the schedule, the same code either way, and test 7 compares the
    XLA-compiled step.
    """
    state = cases.initial_state(cases.OPTIMIZER_WIDTH, OPTIMIZER_SEEDS["state"])
    batches = optimizer_batches()
    with keras_side.float64_enabled():
        recipe = keras_side.train(
            keras_side.build(state, cases.OPTIMIZER_WIDTH, "float64"),
            recipe_optimizer(),
            batches,
            jit=FLOAT64_JIT,
        )
        decoupled = keras_side.train(
            keras_side.build(state, cases.OPTIMIZER_WIDTH, "float64"),
            keras.optimizers.SGD(
                recipe_schedule(),
                momentum=RECIPE.momentum,
                nesterov=True,
                weight_decay=RECIPE.weight_decay,
            ),
            batches,
            velocity_attr="momentums",
            jit=FLOAT64_JIT,
        )
    return _train_results("", recipe) | _train_results("sgd_", decoupled)


def torch_optimizer() -> dict[str, np.ndarray]:
    """The reference's optimizer on `keras_optimizer`'s batches, with "keras_rule_var:" the
    running variances by Keras' rule (`torch_side.track_biased_variance`)."""
    from reference import torch_recipe as reference
    from tests.parity import torch_side

    state = cases.initial_state(cases.OPTIMIZER_WIDTH, OPTIMIZER_SEEDS["state"])
    model = torch_side.build(state, cases.OPTIMIZER_WIDTH, "float64")
    recipe = torch_side.train(model, optimizer_batches(), reference.recipe_lr)
    return _train_results("", recipe) | _flat("keras_rule_var", recipe["biased_var"])


def torch_nesterov() -> dict[str, np.ndarray]:
    """`torch.optim.SGD(momentum=0.9, nesterov=True)` on the same batches ("nesterov_")."""
    from reference import torch_recipe as reference
    from tests.parity import torch_side

    state = cases.initial_state(cases.OPTIMIZER_WIDTH, OPTIMIZER_SEEDS["state"])
    model = torch_side.build(state, cases.OPTIMIZER_WIDTH, "float64")
    run = torch_side.train(
        model, optimizer_batches(), reference.recipe_lr, optimizer="torch_nesterov"
    )
    return _train_results("nesterov_", run)


# Test 7: four epochs of 8 steps, augmented, float32, at the recipe's lr for steps 1-32.


def dynamics_data() -> tuple[np.ndarray, np.ndarray, list]:
    """(uint8 images, labels, per-step (indices, augment draws))."""
    images, labels = cases.learnable_images(cases.DYNAMICS_IMAGES, DYNAMICS_SEEDS["images"])
    plan = cases.epoch_plan(
        cases.DYNAMICS_IMAGES, cases.DYNAMICS_BATCH, cases.DYNAMICS_EPOCHS, DYNAMICS_SEEDS["plan"]
    )
    return images, labels, plan


def keras_dynamics() -> dict[str, np.ndarray]:
    """Per-step losses of the package's training step on batches the package augments
    (`tf_resnet9.augment`), and the batches themselves ("batch:<step>", 1-based)."""
    images, labels, plan = dynamics_data()
    padded = ops.convert_to_numpy(augment.reflect_pad(images))  # uint8 (N, 40, 40, 3)
    batches = [(keras_side.augment_batch(padded[idx], draws), labels[idx]) for idx, draws in plan]
    state = cases.initial_state(cases.DYNAMICS_WIDTH, DYNAMICS_SEEDS["state"])
    run = keras_side.train(
        keras_side.build(state, cases.DYNAMICS_WIDTH), recipe_optimizer(), batches
    )
    return {"losses": run["losses"]} | {f"batch:{k}": x for k, (x, _) in enumerate(batches, 1)}


def torch_dynamics() -> dict[str, np.ndarray]:
    """`keras_dynamics` from the reference: its own augmentation (normalise, reflect-pad,
    crop, flip, cutout) with the same draws, its own training loop."""
    from reference import torch_recipe as reference
    from tests.parity import torch_side

    images, labels, plan = dynamics_data()
    padded = reference.reflect_pad(reference.normalise(images))  # float32 (N, 3, 40, 40)
    batches = [(torch_side.augment_batch(padded[idx], draws), labels[idx]) for idx, draws in plan]
    state = cases.initial_state(cases.DYNAMICS_WIDTH, DYNAMICS_SEEDS["state"])
    run = torch_side.train(
        torch_side.build(state, cases.DYNAMICS_WIDTH), batches, reference.recipe_lr
    )
    return {"losses": run["losses"]} | {f"batch:{k}": x for k, (x, _) in enumerate(batches, 1)}


# Test 8: the six CIFAR ResNets, full width, one batch (`tests.parity.resnet_side`, which
# makes their inputs too).
keras_resnets = resnet_side.keras_resnets
torch_resnets = resnet_side.torch_resnets


# Test 9: the airbench recipes (`tests.parity.airbench_side`, which makes their inputs too).
keras_airbench = airbench_side.keras_airbench
torch_airbench = airbench_side.torch_airbench
