"""The XLA flags the package sets, and the check both backends make before relying on them.

XLA reads XLA_FLAGS once, when the backend's compiler starts; a flag put into the
environment after that changes nothing. So the commands set them before importing Keras
(`tf_resnet9.train`), and code that needs one checks that it is there.
"""

from __future__ import annotations

import os

# Deterministic GPU kernels in XLA: reductions and scatters without atomic additions.
DETERMINISTIC = "--xla_gpu_deterministic_ops=true"


def with_flag(flag: str, flags: str | None) -> str:
    """`flags` (XLA_FLAGS' value, or None) with `flag` added unless it is there."""
    present = (flags or "").split()
    return " ".join(present if flag in present else [*present, flag])


def require_deterministic(on_gpu: bool, backend: str) -> None:
    """Raises where a GPU would run without deterministic kernels: XLA on the CPU is
    deterministic as it is; on a GPU only with `DETERMINISTIC` in XLA_FLAGS from the start."""
    if on_gpu and DETERMINISTIC not in os.environ.get("XLA_FLAGS", "").split():
        raise RuntimeError(
            f"deterministic=True with XLA on a GPU needs XLA_FLAGS={DETERMINISTIC} before "
            f"{backend} starts (python -m tf_resnet9.train --deterministic sets it)."
        )
