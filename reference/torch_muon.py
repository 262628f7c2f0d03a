"""Muon as `airbench94_muon` uses it, in plain PyTorch, written from its description (K.
Jordan, "Muon: an optimizer for hidden layers in neural networks", 2024, and the recipe's
text), independently of `tf_resnet9`.

Muon keeps a Nesterov momentum of the raw gradient, orthogonalises it with a few
Newton-Schulz iterations (it replaces G = U S V^T by about U V^T), and steps along that. In
airbench94_muon it trains the 4-D convolution filters only; every other parameter is left
to Nesterov SGD (`reference.torch_airbench`).
"""

from __future__ import annotations

import torch

# The quintic iteration X <- a X + (b A + c A^2) X, A = X X^T, with coefficients chosen for
# a steep slope at 0: three steps take the singular values of the normalised update from
# (0, 1] into roughly [0.5, 1.5] (not all the way to 1; the recipe does not need it).
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
NS_STEPS = 3
NS_EPSILON = 1e-7  # added to the Frobenius norm before dividing by it


def newton_schulz(
    matrix: torch.Tensor,
    steps: int = NS_STEPS,
    eps: float = NS_EPSILON,
    dtype: torch.dtype = torch.bfloat16,
) -> torch.Tensor:
    """About U V^T of a 2-D `matrix` = U S V^T, computed in `dtype` (the recipe: bf16).

    The matrix is divided by its Frobenius norm (so its largest singular value is <= 1)
    and, when it has more rows than columns, transposed, so that the Gram matrix A = X X^T
    is the smaller of the two; the result is transposed back. Returned in `dtype`.
    """
    if matrix.ndim != 2:
        raise ValueError(f"matrix of shape {tuple(matrix.shape)} is invalid: expected 2-D.")
    a, b, c = NS_COEFFICIENTS
    x = matrix.to(dtype)
    x = x / (x.norm() + eps)
    tall = x.shape[0] > x.shape[1]
    if tall:
        x = x.T
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + (c * gram) @ gram) @ x
    return x.T if tall else x


class Muon(torch.optim.Optimizer):
    """Muon for convolution filters (out, in, kh, kw), as airbench94_muon steps them.

    Per filter tensor W with gradient g and buffer m (starting at 0), each step:

        m = momentum * m + g
        u = g + momentum * m                      (Nesterov)
        W = W * sqrt(out) / ||W||_F               (the whole tensor, not each filter)
        W = W - lr * NS(u reshaped to (out, in * kh * kw))

    No weight decay: the renormalisation keeps the filters' scale fixed instead. The
    gradient's scale (a summed or a mean loss) does not matter: NS divides it out.
    """

    def __init__(self, params, lr: float, momentum: float, ns_dtype=torch.bfloat16):
        super().__init__(params, {"lr": lr, "momentum": momentum, "ns_dtype": ns_dtype})

    @torch.no_grad()
    def step(self, closure=None):
        if closure is not None:
            raise ValueError("closure is not supported: compute the loss before step().")
        for group in self.param_groups:
            for w in group["params"]:
                if w.grad is None:
                    continue
                state = self.state[w]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(w)
                buffer = state["momentum_buffer"]
                buffer.mul_(group["momentum"]).add_(w.grad)
                update = w.grad + group["momentum"] * buffer
                w.mul_(w.shape[0] ** 0.5 / w.norm())
                direction = newton_schulz(update.reshape(w.shape[0], -1), dtype=group["ns_dtype"])
                w.sub_(group["lr"] * direction.to(w.dtype).reshape(w.shape))
