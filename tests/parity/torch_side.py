"""The PyTorch side of every comparison: the reference of `reference.torch_recipe`, run.

Mirrors `tests.parity.keras_side`: torch-named NumPy results, in mean-loss units.
"""

from __future__ import annotations

import numpy as np
import torch

from reference import torch_recipe as reference
from tests.parity import name_map

reference.disable_tf32()
# One thread: these models are small, and with two, OpenMP's spin-waiting makes a step 10-100x
# slower whenever another process shares the two CPU cores of a CI machine.
torch.set_num_threads(1)

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def build(state: dict[str, np.ndarray], width: float, dtype: str = "float32") -> reference.ResNet9:
    """The reference ResNet9 at `width` holding the torch-named `state`."""
    model = reference.ResNet9(width)
    name_map.load_into_torch(model, state)
    return model.to(DTYPES[dtype])


def nchw(images: np.ndarray) -> torch.Tensor:
    """NHWC float images -> an NCHW tensor of the same dtype."""
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))


def _record_outputs(model: reference.ResNet9) -> tuple[dict, list]:
    outputs = {}
    modules = dict(model.named_modules())
    handles = [
        modules[path].register_forward_hook(
            lambda module, args, out, path=path: outputs.__setitem__(path, out)
        )
        for path in name_map.ACTIVATION_MAP
        if path != "logits"
    ]
    return outputs, handles


def forward(
    model: reference.ResNet9, images: torch.Tensor, training: bool
) -> dict[str, np.ndarray]:
    """Every compared module's output (NCHW). In training mode the BN statistics update."""
    outputs, handles = _record_outputs(model)
    model.train(training)
    with torch.no_grad():
        outputs["logits"] = model(images)
    for handle in handles:
        handle.remove()
    return {path: out.numpy().copy() for path, out in outputs.items()}


def training_pass(model: reference.ResNet9, images: torch.Tensor, labels: np.ndarray) -> dict:
    """One forward and backward pass of the summed loss in training mode.

    Returns:
        As `keras_side.training_pass`: the loss and gradients divided by the batch size
        (the mean-loss units Keras uses), and the BN statistics after the pass.
    """
    model.train()
    model.zero_grad()
    batch = images.shape[0]
    loss = reference.summed_loss(model(images), torch.from_numpy(labels.astype(np.int64)))
    loss.backward()
    return {
        "loss": loss.item() / batch,
        "grads": {name: p.grad.numpy() / batch for name, p in model.named_parameters()},
        "stats": {
            name: value
            for name, value in name_map.torch_state(model).items()
            if name.endswith(("running_mean", "running_var"))
        },
    }


def augment_batch(padded: torch.Tensor, draws: dict[str, np.ndarray]) -> np.ndarray:
    """The reference augmentation of padded normalised NCHW images -> NHWC float32."""
    draws = reference.Draws(*(torch.from_numpy(draws[k]) for k in reference.Draws._fields))
    return reference.augment(padded, draws).permute(0, 2, 3, 1).numpy()


def track_biased_variance(model: reference.ResNet9) -> tuple[dict, list]:
    """Running variances as Keras keeps them, alongside torch's own, for comparison.

    BatchNorm2d updates `running_var` with the unbiased batch variance (divided by n - 1);
    Keras' BatchNormalization with the biased one (divided by n). A forward pre-hook on
    every BN layer applies Keras' rule to the same batches, in float64.

    Returns:
        {torch name of the running_var: the Keras-rule running variance (updated in place
        by every training-mode forward)} and the hook handles.
    """
    tracked, handles = {}, []
    for path, module in model.named_modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            name = f"{path}.running_var"
            tracked[name] = module.running_var.detach().double().numpy().copy()

            def hook(module, args, name=name):
                if module.training:
                    batch_var = args[0].detach().double().var(dim=(0, 2, 3), unbiased=False)
                    tracked[name] *= 1.0 - module.momentum
                    tracked[name] += module.momentum * batch_var.numpy()

            handles.append(module.register_forward_pre_hook(hook))
    return tracked, handles


def train(model: reference.ResNet9, batches, lr, optimizer: str = "recipe") -> dict:
    """Trains on `batches` with the reference's summed loss.

    Args:
        model: The reference model, holding the initial weights.
        batches: (float32 NHWC images (B, 32, 32, 3), int labels (B,)) per step.
        lr: lr(step) for the 1-based step, mean-loss units.
        optimizer: "recipe" (`reference.RecipeSGD`) or "torch_nesterov"
            (`torch.optim.SGD(nesterov=True)`, lr outside the velocity).

    Returns:
        As `keras_side.train`, plus "biased_var": the running variances by Keras' rule
        (`track_biased_variance`); "velocity" only for the recipe's optimizer, whose
        velocity has Keras' units.
    """
    params = list(model.parameters())
    if optimizer == "recipe":
        opt = reference.RecipeSGD(params)
    elif optimizer == "torch_nesterov":
        opt = torch.optim.SGD(params, lr=0.0, momentum=reference.MOMENTUM, nesterov=True)
    else:
        raise ValueError(f"optimizer={optimizer!r} is invalid: expected recipe or torch_nesterov.")
    model.train()
    biased_var, handles = track_biased_variance(model)
    losses = []
    for step, (images, labels) in enumerate(batches, start=1):
        reference.set_lr(opt, lr(step), len(labels))
        opt.zero_grad()
        loss = reference.summed_loss(model(nchw(images)), torch.from_numpy(labels.astype(np.int64)))
        loss.backward()
        opt.step()
        losses.append(loss.item() / len(labels))
    for handle in handles:
        handle.remove()
    result = {
        "losses": np.array(losses),
        "state": name_map.torch_state(model),
        "biased_var": biased_var,
    }
    if optimizer == "recipe":
        result["velocity"] = {
            name: reference.velocity_of(opt, p).numpy().copy()
            for name, p in model.named_parameters()
        }
    return result
