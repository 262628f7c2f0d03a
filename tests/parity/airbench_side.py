"""Test 9's experiments, the airbench recipes, on both sides: `tf_resnet9`'s airbench pieces
and the PyTorch transcription (`reference.torch_airbench`, `reference.torch_muon`).

Every experiment starts from NumPy inputs made here (weights, images, random draws), so
either side runs without the other installed; both return flat dicts of NumPy arrays under
the same keys (torch names and layout, NCHW activations, mean-loss units):

    <network>:<train|eval>:<module path>   layer outputs, float32 (<network>:eval64: float64)
    <network>:<loss32|loss64>, <network>:<grads32|grads64>:<name>, <network>:stats:<name>
    train:<losses|whiten_bias|state:<name>|velocity:<name>>   12 updates of airbench94,
        float64: warm-up, the whitening bias frozen after update 6, lookahead at 5 and 10,
        the final average
    muon:...                                 the same for airbench94_muon (6 updates, 3 of
                                             the whitening bias), Newton-Schulz in float64
    ns:<bf16|float32>:<shape>                 Newton-Schulz of fixed matrices
    tta:<level>, whiten:<order>, augment:<case>

The reference side also computes the results of planted errors ("planted:<error>:<key>"):
what a Keras side with that error would have to match; the tests require the Keras results
to miss them by far (`tests.parity.checks.AIRBENCH_PLANTED`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools

import keras
import numpy as np
from keras import ops

from tests.parity import airbench_map, cases, keras_side
from tests.parity.name_map import CONV, to_keras_layout
from tf_resnet9.data import airbench_augment, whitening
from tf_resnet9.data.augment import reflect_pad
from tf_resnet9.models import airbench as airbench_models
from tf_resnet9.training import lookahead, muon, tta
from tf_resnet9.training.optimizers import (
    TorchNesterovSGD,
    from_airbench_units,
    from_summed_loss_units,
)
from tf_resnet9.training.schedules import WarmupLinearDecay
from tf_resnet9.training.steps import CompiledSteps, cross_entropy

# Forward and backward: one batch of 8 images, each network narrow (the same code at
# every width; full width is the transcription's own check against airbench's code).
FORWARD = {"airbench94": 0.125, "airbench95": 0.0625, "airbench96": 0.0625}
FORWARD |= {"airbench94_muon": 0.125}
FORWARD_BATCH = 8
# Training: airbench94 at 4/16/16 channels, batches of 16, 2 per "epoch": the whitening
# bias trains for 3 epochs (6 updates), the lookahead moves at 5 and 10, ends at 12.
TRAIN_WIDTH, TRAIN_BATCH, TRAIN_STEPS_PER_EPOCH, TRAIN_UPDATES = 0.0625, 16, 2, 12
# airbench94_muon: 1 batch per "epoch", 6 updates, the whitening bias's 3.
MUON_STEPS_PER_EPOCH, MUON_UPDATES = 1, 6
TTA_WIDTH = 0.125
TTA_LOGIT_SCALE = 1.0  # logits 9x airbench's (up to ~0.5): the views' differences show
SEEDS = {"forward": 30, "images": 31, "labels": 32, "train": 33, "muon": 34, "tta": 35}
SEEDS |= {"whiten": 36, "augment": 37, "ns": 38}
LABEL_SMOOTHING = 0.2
# Newton-Schulz's inputs: a filter's shape as Muon sees it, (out, in x 3 x 3).
NS_SHAPES = ((16, 24 * 9), (64, 16 * 9), (8, 4))
# The training steps compiled on JAX (op by op, it compiles every op anyway), as
# tf.functions without XLA on TensorFlow (its own float64 kernels).
JIT = keras.backend.backend() != "tensorflow"


# Inputs, NumPy only.


def _uniform(rng, shape, bound):
    return rng.uniform(-bound, bound, shape).astype(np.float32)


def random_state(network: str, width: float, seed: int) -> dict[str, np.ndarray]:
    """Torch-named weights: kernels U(+-1/sqrt(fan_in)), a random whitening kernel and
    bias, random BN biases and statistics (so every one of them shows), BN weights 1."""
    rng = np.random.default_rng(seed)
    state = {}
    for name, shape in airbench_map.shapes(network, width).items():
        if name == "whiten.weight":
            state[name] = rng.normal(0, 2.0, shape).astype(np.float32)
        elif len(shape) > 1:
            state[name] = _uniform(rng, shape, 1 / np.sqrt(cases.fan_in(shape)))
        elif name.endswith(".weight"):  # BN's, frozen at 1
            state[name] = np.ones(shape, np.float32)
        elif name.endswith("running_var"):
            state[name] = rng.uniform(0.5, 2.0, shape).astype(np.float32)
        else:  # BN biases and means, the whitening bias
            state[name] = _uniform(rng, shape, 0.5)
    return state


def initial_state(network: str, width: float, seed: int) -> dict[str, np.ndarray]:
    """Torch-named weights as airbench initialises them: PyTorch's uniform draws, the first
    in_channels filters of each 3x3 convolution identities, BN at (1, 0, 0, 1), the
    whitening bias 0 (its kernel a draw, which the data later replace)."""
    rng = np.random.default_rng(seed)
    state = {}
    for name, shape in airbench_map.shapes(network, width).items():
        if len(shape) > 1:
            value = _uniform(rng, shape, 1 / np.sqrt(cases.fan_in(shape)))
            if len(shape) == 4:  # dirac: filter i passes channel i at the centre
                count = min(shape[0], shape[1])
                value[:count] = 0.0
                value[np.arange(count), np.arange(count), shape[2] // 2, shape[3] // 2] = 1.0
            state[name] = value
        else:
            one = name.endswith(("norm1.weight", "norm2.weight", "norm3.weight", "running_var"))
            state[name] = np.full(shape, 1.0 if one else 0.0, np.float32)
    return state


def normalise(images: np.ndarray) -> np.ndarray:
    """uint8 NHWC -> float32 (pixel / 255 - mean) / std, airbench's statistics, in NumPy."""
    mean = np.array((0.4914, 0.4822, 0.4465), np.float32)
    std = np.array((0.2470, 0.2435, 0.2616), np.float32)
    return (images.astype(np.float32) / np.float32(255) - mean) / std


def forward_inputs(network: str):
    seed = SEEDS["forward"] + list(FORWARD).index(network)
    state = random_state(network, FORWARD[network], seed)
    images = normalise(cases.random_images(FORWARD_BATCH, SEEDS["images"]))
    return state, images, cases.random_labels(FORWARD_BATCH, SEEDS["labels"])


def activation_paths(network: str) -> dict[str, str]:
    """Reference module path -> Keras layer name of every compared output, network order;
    "blockN" is the block's output (its last GELU), "logits" the network's."""
    convs = airbench_map.NETWORKS[network][1]
    paths = {"whiten": "whiten"}
    for b in (1, 2, 3):
        paths[f"block{b}.conv1"] = f"block{b}_conv1"
        paths[f"block{b}.pool"] = f"block{b}_pool"
        for i in range(1, convs + 1):
            if i > 1:
                paths[f"block{b}.conv{i}"] = f"block{b}_conv{i}"
            paths[f"block{b}.norm{i}"] = f"block{b}_norm{i}"
        paths[f"block{b}"] = f"block{b}_gelu{convs}"
    return paths | {"pool": "pool", "head": "head", "logits": "logits"}


def train_batches(count: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    images, labels = cases.learnable_images(count * TRAIN_BATCH, seed)
    x = normalise(images).astype(np.float64)
    return [
        (x[i : i + TRAIN_BATCH], labels[i : i + TRAIN_BATCH]) for i in range(0, len(x), TRAIN_BATCH)
    ]


def whitening_images(count: int = 64) -> np.ndarray:
    """float32 (count, 32, 32, 3): smoothed, channel-mixed noise (correlated like images)."""
    noise = np.random.default_rng(SEEDS["whiten"]).normal(size=(count, 34, 34, 3))
    smooth = (noise[:, 1:-1, 1:-1] + noise[:, 2:, 1:-1] + noise[:, 1:-1, 2:]) / 3
    mix = np.array([[1.0, 0.5, 0.2], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]])
    return (smooth @ mix).astype(np.float32)


def whitening_weight(images: np.ndarray, descending: bool = True) -> np.ndarray:
    """The training runs' whitening filters, torch layout: the package's, from `images`
    (the same values on both sides; the filters themselves are compared in "whiten:")."""
    kernel = whitening.whitening_kernel(images, **whitening.AIRBENCH, descending=descending)
    return np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))


def augment_cases() -> dict[str, dict]:
    """Per case: the images' initial flips and one epoch's draws (NumPy, int64), the
    epoch, the translation and the cutout size: airbench94's epochs 0 and 1 (pad 2) and
    airbench96's epoch 3 (pad 4, cutout 12)."""
    rng = np.random.default_rng(SEEDS["augment"])
    count = 32
    flips = rng.integers(0, 2, count)
    result = {}
    for case, epoch, pad, size in (("e0", 0, 2, 0), ("e1", 1, 2, 0), ("cutout", 3, 4, 12)):
        result[case] = {
            "flips": flips,
            "shift_y": rng.integers(-pad, pad + 1, count),
            "shift_x": rng.integers(-pad, pad + 1, count),
            "cutout_y": rng.integers(0, 32 - size + 1, count),
            "cutout_x": rng.integers(0, 32 - size + 1, count),
            "epoch": epoch,
            "pad": pad,
            "size": size,
        }
    return result


def augment_images() -> np.ndarray:
    return cases.random_images(32, SEEDS["augment"])


def ns_matrices() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(SEEDS["ns"])
    return {f"{a}x{b}": rng.normal(size=(a, b)).astype(np.float32) for a, b in NS_SHAPES}


def _flat(prefix: str, arrays: dict) -> dict[str, np.ndarray]:
    return {f"{prefix}:{k}": np.asarray(v) for k, v in arrays.items()}


# The Keras side.


def keras_network(network: str, width: float, state, dtype: str = "float32") -> keras.Model:
    builder = getattr(airbench_models, airbench_map.BUILDERS[network])
    model = builder(width=width, dtype=dtype, **airbench_map.NETWORKS[network][3])
    airbench_map.load_into_keras(model, state)
    return model


def _values(variables):
    return [v.value for v in variables]


def _compiled(fn):
    """`fn` compiled on JAX, where running a network op by op compiles every op anyway
    (minutes for these); as it is on TensorFlow, whose eager ops are quick here."""
    from tf_resnet9 import backends

    return backends.compile_fn(fn, jit=True) if JIT else fn


def keras_passes(model, network: str, images, labels) -> dict:
    """Every compared layer's output in training and inference mode (NCHW), and the loss
    (label smoothing 0.2, mean), its gradients and the BN statistics after one
    training-mode pass: one function (compiled once on JAX), the model left as it is."""
    from tf_resnet9 import backends

    paths = activation_paths(network)
    outputs = {p: model.get_layer(layer).output for p, layer in paths.items()}
    probe = keras.Model(model.input, outputs)

    def loss_fn(trainable, non_trainable, x, y):
        logits, non_trainable = model.stateless_call(trainable, non_trainable, x, training=True)
        return ops.mean(cross_entropy(y, logits, LABEL_SMOOTHING)), non_trainable

    def passes(trainable, non_trainable, x, y):
        train = probe.stateless_call(trainable, non_trainable, x, training=True)[0]
        inference = probe.stateless_call(trainable, non_trainable, x, training=False)[0]
        (loss, stats), grads = backends.value_and_grad(loss_fn)(trainable, non_trainable, x, y)
        return train, inference, loss, stats, grads

    train, inference, loss, stats, grads = _compiled(passes)(
        _values(model.trainable_variables),
        _values(model.non_trainable_variables),
        ops.convert_to_tensor(images, model.compute_dtype),
        ops.convert_to_tensor(labels),
    )
    paths = [v.path for v in model.non_trainable_variables]
    return {
        "train": _nchw_arrays(train),
        "eval": _nchw_arrays(inference),
        "loss": np.float64(ops.convert_to_numpy(loss)),
        "grads": airbench_map.torch_named(
            (v.path, g) for v, g in zip(model.trainable_variables, grads)
        ),
        "stats": {
            name: value
            for name, value in airbench_map.torch_named(zip(paths, stats)).items()
            if name.endswith(("running_mean", "running_var"))
        },
    }


def _nchw_arrays(outputs: dict) -> dict:
    arrays = {p: ops.convert_to_numpy(x) for p, x in outputs.items()}
    return {p: x.transpose(0, 3, 1, 2) if x.ndim == 4 else x for p, x in arrays.items()}


def keras_forward() -> dict[str, np.ndarray]:
    results = {}
    for network, width in FORWARD.items():
        state, images, labels = forward_inputs(network)
        model = keras_network(network, width, state)
        passes = keras_passes(model, network, images, labels)
        for mode in ("train", "eval"):
            results |= _flat(f"{network}:{mode}", passes[mode])
        results[f"{network}:loss32"] = passes["loss"]
        results |= _flat(f"{network}:grads32", passes["grads"])
        results |= _flat(f"{network}:stats", passes["stats"])
        for name in passes["stats"]:  # values each BN layer averages over, for the rule
            layer = model.get_layer(name.rpartition(".")[0].replace(".", "_"))
            _, height, width_px, _ = layer.input.shape
            results[f"{network}:count:{name}"] = np.int64(len(images) * height * width_px)
        with keras_side.float64_enabled():
            model64 = keras_network(network, width, state, "float64")
            passes64 = keras_passes(model64, network, images.astype(np.float64), labels)
        results[f"{network}:eval64:logits"] = passes64["eval"]["logits"]
        results[f"{network}:loss64"] = passes64["loss"]
        results |= _flat(f"{network}:grads64", passes64["grads"])
    return results


def legacy_optimizer(total: int, steps_per_epoch: int, batch: int) -> TorchNesterovSGD:
    """airbench94's optimizer for `total` updates of `batch`, in mean-loss units."""
    lr, wd = from_airbench_units(11.5, 0.0153, 0.85, batch)
    schedule = WarmupLinearDecay(lr, total, int(total * 0.23), 0.2, 0.07)
    groups = [
        {"match": "beta", "lr_scale": 64.0, "wd_scale": 1 / 64},
        {"match": "whiten/bias", "last_update": 3 * steps_per_epoch},
    ]
    return TorchNesterovSGD(schedule, momentum=0.85, weight_decay=wd, groups=groups)


def muon_optimizer(total: int, steps_per_epoch: int, batch: int, ns_dtype: str) -> muon.ConvMuon:
    """airbench94_muon's optimizers as one `ConvMuon`, in mean-loss units."""
    decay = 2e-6 * batch  # per update, at the schedule's factor 1
    bias_lr, bias_wd = from_summed_loss_units(0.053, decay, batch)
    head_lr, head_wd = from_summed_loss_units(0.67, decay, batch)
    whiten_updates = 3 * steps_per_epoch
    groups = [
        {
            "match": "whiten/bias",
            "learning_rate": WarmupLinearDecay(bias_lr, whiten_updates),
            "wd_scale": bias_wd / head_wd,
            "last_update": whiten_updates,
        },
        {
            "match": "beta",
            "learning_rate": WarmupLinearDecay(bias_lr, total),
            "wd_scale": bias_wd / head_wd,
        },
    ]
    return muon.ConvMuon(
        WarmupLinearDecay(head_lr, total),
        muon_learning_rate=WarmupLinearDecay(0.24, total),
        muon_momentum=0.6,
        ns_dtype=ns_dtype,
        ns_epsilon=1e-7 / batch,  # airbench's 1e-7 on a summed loss's momentum
        momentum=0.85,
        weight_decay=head_wd,
        groups=groups,
    )


def training_inputs(kind: str):
    """(network, initial state, whitening weight, batches) of the training experiments."""
    network = "airbench94" if kind == "train" else "airbench94_muon"
    updates = TRAIN_UPDATES if kind == "train" else MUON_UPDATES
    state = initial_state(network, TRAIN_WIDTH, SEEDS[kind])
    batches = train_batches(updates, SEEDS[kind])
    images = np.concatenate([x for x, _ in batches]).astype(np.float32)
    return network, state, whitening_weight(images, descending=kind == "train"), batches


def keras_train(kind: str) -> dict[str, np.ndarray]:
    """airbench94 (`kind` "train": lookahead, `TorchNesterovSGD`) or airbench94_muon
    ("muon": `ConvMuon`, Newton-Schulz in float64) trained on the same batches, float64,
    with the package's training step; the lookahead between steps, on the variables."""
    network, state, weight, batches = training_inputs(kind)
    total = len(batches)
    with keras_side.float64_enabled():
        model = keras_network(network, TRAIN_WIDTH, state, "float64")
        variables = model.trainable_variables + model.non_trainable_variables
        averages = [ops.copy(v.value) for v in variables]  # before the whitening kernel
        model.get_layer("whiten").kernel.assign(to_keras_layout(weight, CONV).astype("float64"))
        if kind == "train":
            optimizer = legacy_optimizer(total, TRAIN_STEPS_PER_EPOCH, TRAIN_BATCH)
        else:
            optimizer = muon_optimizer(total, MUON_STEPS_PER_EPOCH, TRAIN_BATCH, "float64")
        steps = CompiledSteps(model, optimizer, jit=JIT, grad_norms=False, label_smoothing=0.2)
        move = _compiled(functools.partial(lookahead.lookahead_update, total_steps=total))
        losses, whiten_bias = [], []
        for k, (x, y) in enumerate(batches, start=1):
            state_k = keras.tree.map_structure(ops.copy, steps.initial_state())
            state_k, totals = steps.train_on_batches(
                state_k,
                ops.convert_to_tensor(x[None]),
                ops.convert_to_tensor(y[None].astype("int32")),
            )
            steps.finish(state_k)
            losses.append(float(ops.convert_to_numpy(totals.loss_sum)))
            if kind == "train":
                values = [v.value for v in variables]
                step = ops.convert_to_tensor(k, "int32")
                averages, values = move(step, averages=averages, values=values)
                if k == total:
                    values = lookahead.lookahead_finish(averages, values)
                for variable, value in zip(variables, values):
                    variable.assign(value)
            whiten_bias.append(ops.convert_to_numpy(model.get_layer("whiten").bias))
        velocity = airbench_map.torch_named(
            (v.path, u.value) for v, u in zip(model.trainable_variables, optimizer.velocities)
        )
        return (
            {
                f"{kind}:losses": np.array(losses),
                f"{kind}:whiten_bias": np.stack(whiten_bias),
            }
            | _flat(f"{kind}:state", _mapped_state(airbench_map.state_from_keras(model)))
            | _flat(f"{kind}:velocity", velocity)
        )


def _mapped_state(state: dict) -> dict:
    return {
        k: v
        for k, v in state.items()
        if not k.endswith("num_batches_tracked") and airbench_map.entry(k) is not None
    }


def keras_tta() -> dict[str, np.ndarray]:
    state = random_state("airbench94", TTA_WIDTH, SEEDS["tta"])
    model = airbench_models.airbench94(width=TTA_WIDTH, logit_scale=TTA_LOGIT_SCALE)
    airbench_map.load_into_keras(model, state)
    images = normalise(cases.random_images(FORWARD_BATCH, SEEDS["tta"]))

    def predict(x):
        return model(x, training=False)

    return {
        f"tta:{level}": ops.convert_to_numpy(tta.tta_logits(predict, images, level))
        for level in tta.LEVELS
    }


def keras_whitening() -> dict[str, np.ndarray]:
    images = whitening_images()
    return {
        f"whiten:{order}": whitening_weight(images, descending=order == "descending")
        for order in ("descending", "ascending")
    }


def keras_augment() -> dict[str, np.ndarray]:
    images = augment_images()
    results = {}
    for case, c in augment_cases().items():
        draws = airbench_augment.EpochDraws(
            *(c[k].astype("int32") for k in airbench_augment.EpochDraws._fields)
        )
        padded = reflect_pad(images, c["pad"])
        out = airbench_augment.augment(
            padded, c["flips"].astype("int32"), draws, c["epoch"], c["pad"], c["size"]
        )
        results[f"augment:{case}"] = ops.convert_to_numpy(out).transpose(0, 3, 1, 2)
    return results


def keras_ns() -> dict[str, np.ndarray]:
    results = {}
    for key, matrix in ns_matrices().items():
        for dtype in ("bfloat16", "float32"):

            def orthogonalise(m, dtype=dtype):
                return ops.cast(muon.newton_schulz(m, dtype=dtype), "float32")

            x = _compiled(orthogonalise)(ops.convert_to_tensor(matrix))
            results[f"ns:{dtype}:{key}"] = ops.convert_to_numpy(x)
    return results


def keras_airbench() -> dict[str, np.ndarray]:
    """Every airbench experiment's Keras results."""
    return (
        keras_forward()
        | keras_train("train")
        | keras_train("muon")
        | keras_tta()
        | keras_whitening()
        | keras_augment()
        | keras_ns()
    )


# The reference side (needs torch).


def torch_network(network: str, width: float, state, dtype: str = "float32"):
    import torch

    from reference import torch_airbench as ab

    convs, scale = airbench_map.NETWORKS[network][1:3]
    recipe = ab.RECIPES[network]
    net = ab.AirbenchNet(airbench_map.widths(network, width), convs == 3, recipe.bn_momentum, scale)
    tensors = {k: torch.from_numpy(np.asarray(v)) for k, v in state.items()}
    result = net.load_state_dict(tensors, strict=False)
    assert not result.unexpected_keys and all(
        k.endswith("num_batches_tracked") for k in result.missing_keys
    ), result
    return net.to({"float32": torch.float32, "float64": torch.float64}[dtype])


def _nchw(images):
    import torch

    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))


def torch_forward_pass(net, network: str, x, training: bool) -> dict:
    import torch

    outputs = {}
    modules = dict(net.named_modules())
    handles = [
        modules[p].register_forward_hook(lambda m, a, out, p=p: outputs.__setitem__(p, out))
        for p in activation_paths(network)
        if p != "logits"
    ]
    net.train(training)
    with torch.no_grad():
        outputs["logits"] = net(x)
    for handle in handles:
        handle.remove()
    return {p: out.detach().numpy().copy() for p, out in outputs.items()}


def torch_training_pass(net, x, labels) -> dict:
    import torch

    from reference import torch_airbench as ab

    net.train()
    net.zero_grad()
    loss = ab.summed_loss(net(x), torch.from_numpy(labels.astype(np.int64)))
    loss.backward()
    batch = len(labels)
    state = net.state_dict()
    return {
        "loss": loss.item() / batch,
        "grads": {n: p.grad.numpy() / batch for n, p in net.named_parameters() if p.requires_grad},
        "stats": {
            n: v.numpy().copy()
            for n, v in state.items()
            if n.endswith(("running_mean", "running_var"))
        },
    }


@contextlib.contextmanager
def _tanh_gelu():
    """The reference's GELU as the tanh approximation (a planted error)."""
    import torch.nn.functional as F

    exact = F.gelu
    F.gelu = functools.partial(exact, approximate="tanh")
    try:
        yield
    finally:
        F.gelu = exact


def _bn_modules(net):
    import torch

    return [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]


def torch_forward() -> dict[str, np.ndarray]:
    results = {}
    for network, width in FORWARD.items():
        state, images, labels = forward_inputs(network)
        x = _nchw(images)
        for mode in ("train", "eval"):
            net = torch_network(network, width, state)  # fresh BN statistics
            results |= _flat(
                f"{network}:{mode}", torch_forward_pass(net, network, x, mode == "train")
            )
        step = torch_training_pass(torch_network(network, width, state), x, labels)
        results[f"{network}:loss32"] = np.float64(step["loss"])
        results |= _flat(f"{network}:grads32", step["grads"])
        results |= _flat(f"{network}:stats", step["stats"])
        net64 = torch_network(network, width, state, "float64")
        x64 = _nchw(images.astype(np.float64))
        results[f"{network}:eval64:logits"] = torch_forward_pass(net64, network, x64, False)[
            "logits"
        ]
        step64 = torch_training_pass(torch_network(network, width, state, "float64"), x64, labels)
        results[f"{network}:loss64"] = np.float64(step64["loss"])
        results |= _flat(f"{network}:grads64", step64["grads"])
    # Planted errors, on airbench94's network.
    network, width = "airbench94", FORWARD["airbench94"]
    state, images, labels = forward_inputs(network)
    x = _nchw(images)
    with _tanh_gelu():
        for mode in ("train", "eval"):
            net = torch_network(network, width, state)
            out = torch_forward_pass(net, network, x, mode == "train")["logits"]
            results[f"planted:gelu_tanh:{network}:{mode}:logits"] = out
    net64 = torch_network(network, width, state, "float64")
    for module in _bn_modules(net64):
        module.eps = 1e-3  # Keras' default
    x64 = _nchw(images.astype(np.float64))
    out = torch_forward_pass(net64, network, x64, False)["logits"]
    results[f"planted:bn_eps:{network}:eval64:logits"] = out
    net = torch_network(network, width, state)
    for module in _bn_modules(net):
        module.momentum = 0.1  # PyTorch's default, Keras' 0.9
    stats = torch_training_pass(net, x, labels)["stats"]
    results |= _flat(f"planted:bn_momentum:{network}:stats", stats)
    return results


def _biased_batch_norm(net) -> None:
    """The reference's BatchNorm layers, their running variance updated with the biased
    batch variance, as Keras does (normalisation unchanged: both use the biased one).
    Test 3 shows the unbiased rule's difference; here it would add 1/n per update."""
    import torch
    import torch.nn.functional as F

    class BiasedVarianceBatchNorm(torch.nn.BatchNorm2d):
        def forward(self, x):
            if not self.training:
                return super().forward(x)
            with torch.no_grad():
                mean = x.mean(dim=(0, 2, 3))
                var = x.var(dim=(0, 2, 3), unbiased=False)
                self.running_mean.lerp_(mean, self.momentum)
                self.running_var.lerp_(var, self.momentum)
            return F.batch_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)

    for module in _bn_modules(net):
        module.__class__ = BiasedVarianceBatchNorm


def torch_train(kind: str, planted: str | None = None) -> dict[str, np.ndarray]:
    """`keras_train`'s run on the reference (`reference.torch_airbench.Trainer`), or with a
    planted error: "no_freeze", "lookahead_square", "lr_inside", "bias_lr_1x" (airbench94)
    or "muon_per_filter" (airbench94_muon)."""
    import torch

    from reference import torch_airbench as ab

    network, state, weight, batches = training_inputs(kind)
    recipe = dataclasses.replace(ab.RECIPES[network], batch_size=TRAIN_BATCH)
    net = torch_network(network, TRAIN_WIDTH, state, "float64")
    _biased_batch_norm(net)
    average = ab.Lookahead(net) if kind == "train" else None
    with torch.no_grad():
        net.whiten.weight.copy_(torch.from_numpy(weight))
    per_epoch = TRAIN_STEPS_PER_EPOCH if kind == "train" else MUON_STEPS_PER_EPOCH
    trainer = ab.Trainer(net, recipe, per_epoch, len(batches), average, torch.float64)
    _plant(trainer, planted)
    losses, whiten_bias = [], []
    decay = ab.lookahead_decay
    if planted == "lookahead_square":
        ab.lookahead_decay = lambda t, total: ab.LOOKAHEAD_BASE * (t / total) ** 2
    try:
        for x, y in batches:
            loss = trainer.step(_nchw(x), torch.from_numpy(y.astype(np.int64)))
            losses.append(loss.item())
            whiten_bias.append(net.whiten.bias.detach().numpy().copy())
    finally:
        ab.lookahead_decay = decay
    weights = {n: v.detach().numpy().copy() for n, v in net.state_dict().items()}
    velocity = {}
    for optimizer in (trainer.sgd, trainer.muon):
        for group in optimizer.param_groups if optimizer is not None else ():
            for p in group["params"]:
                buffer = optimizer.state[p].get(
                    "velocity", optimizer.state[p].get("momentum_buffer")
                )
                if buffer is not None:
                    velocity[_param_name(net, p)] = buffer.numpy() / TRAIN_BATCH
    prefix = kind if planted is None else f"planted:{planted}:{kind}"
    return (
        {f"{prefix}:losses": np.array(losses), f"{prefix}:whiten_bias": np.stack(whiten_bias)}
        | _flat(f"{prefix}:state", _mapped_state(weights))
        | _flat(f"{prefix}:velocity", velocity)
    )


def _param_name(net, param) -> str:
    return next(n for n, p in net.named_parameters() if p is param)


def _plant(trainer, planted: str | None) -> None:
    """Plants an error into a `Trainer`'s optimizers."""
    import torch

    if planted in (None, "lookahead_square"):
        return
    if planted == "no_freeze":
        for group in trainer.sgd.param_groups:
            group["updates"] = None
    elif planted == "bias_lr_1x":
        trainer.sgd.param_groups[0]["lr0"] /= 64  # the BN biases' group
    elif planted == "lr_inside":  # Page's form: the lr multiplies the gradient going in

        @torch.no_grad()
        def step(optimizer=trainer.sgd):
            for group in optimizer.param_groups:
                if group["updates"] is not None and optimizer.count >= group["updates"]:
                    continue
                for w in group["params"]:
                    state = optimizer.state[w]
                    v = state.setdefault("velocity", torch.zeros_like(w))
                    d = -group["lr"] * (w.grad + group["weight_decay"] * w)
                    v.mul_(group["momentum"]).add_(d)
                    w.add_(d + group["momentum"] * v)
            optimizer.count += 1

        trainer.sgd.step = step
    elif planted == "muon_per_filter":  # each filter renormalised, not the whole kernel
        muon_step = trainer.muon.step

        @torch.no_grad()
        def step():
            for group in trainer.muon.param_groups:
                for w in group["params"]:  # then Muon's own rescaling changes nothing
                    w.div_(w.flatten(1).norm(dim=1)[:, None, None, None])
            muon_step()

        trainer.muon.step = step
    else:
        raise ValueError(f"planted={planted!r} is invalid.")


def torch_tta(planted: bool = False) -> dict[str, np.ndarray]:
    import torch

    from reference import torch_airbench as ab

    state = random_state("airbench94", TTA_WIDTH, SEEDS["tta"])
    net = torch_network("airbench94", TTA_WIDTH, state).eval()
    net.logit_scale = TTA_LOGIT_SCALE
    x = _nchw(normalise(cases.random_images(FORWARD_BATCH, SEEDS["tta"])))
    with torch.no_grad():
        results = {f"tta:{level}": ab.tta_logits(net, x, level).numpy() for level in (0, 1, 2)}
        # Planted: the six views weighted alike.
        ones = torch.ones(len(x), dtype=torch.long)
        views = [x, ab.translate(x, ones, ones, 1), ab.translate(x, -ones, -ones, 1)]
        uniform = sum(net(v) + net(ab.mirror(v)) for v in views) / 6
    return results | {"planted:tta_uniform:tta:2": uniform.numpy()}


def torch_whitening() -> dict[str, np.ndarray]:
    import torch

    from reference import torch_airbench as ab

    x = _nchw(whitening_images())
    results = {
        f"whiten:{order}": ab.whitening_filters(x, descending=order == "descending").numpy()
        for order in ("descending", "ascending")
    }
    # Planted: Page's eps; moments about the mean (centred).
    results["planted:whiten_eps:whiten:descending"] = ab.whitening_filters(x, eps=1e-2).numpy()
    centred = x - x.mean(dim=(0, 2, 3), keepdim=True)
    results["planted:whiten_centred:whiten:descending"] = ab.whitening_filters(centred).numpy()
    del torch
    return results


def torch_augment() -> dict[str, np.ndarray]:
    import torch

    from reference import torch_airbench as ab

    images = ab.normalise(augment_images())
    results = {}
    for case, c in augment_cases().items():
        recipe = dataclasses.replace(ab.RECIPES["airbench94"], translate=c["pad"], cutout=c["size"])
        flipped = ab.mirror(images, torch.from_numpy(c["flips"]).bool())
        draws = ab.EpochDraws(
            torch.arange(len(images)),
            *(torch.from_numpy(c[k]) for k in ("shift_y", "shift_x", "cutout_y", "cutout_x")),
        )
        results[f"augment:{case}"] = ab.epoch_images(flipped, draws, c["epoch"], recipe).numpy()
        if case == "e1":  # planted: no alternation (as epoch 0)
            same = ab.epoch_images(flipped, draws, 0, recipe)
            results["planted:no_alternation:augment:e1"] = same.numpy()
            reversed_draws = draws._replace(shift_y=-draws.shift_y, shift_x=-draws.shift_x)
            moved = ab.epoch_images(flipped, reversed_draws, c["epoch"], recipe)
            results["planted:translation_reversed:augment:e1"] = moved.numpy()
    return results


def torch_ns() -> dict[str, np.ndarray]:
    import torch

    from reference import torch_muon

    results = {}
    for key, matrix in ns_matrices().items():
        for name, dtype in (("bfloat16", torch.bfloat16), ("float32", torch.float32)):
            x = torch_muon.newton_schulz(torch.from_numpy(matrix), dtype=dtype)
            results[f"ns:{name}:{key}"] = x.float().numpy()
    return results


def torch_airbench() -> dict[str, np.ndarray]:
    """Every airbench experiment's reference results, planted errors included."""
    import torch

    torch.set_num_threads(1)
    results = torch_forward() | torch_train("train") | torch_train("muon")
    for planted in ("no_freeze", "lookahead_square", "lr_inside", "bias_lr_1x"):
        results |= torch_train("train", planted)
    results |= torch_train("muon", "muon_per_filter")
    return results | torch_tta() | torch_whitening() | torch_augment() | torch_ns()
