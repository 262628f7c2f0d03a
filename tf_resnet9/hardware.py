"""What training runs on: the device, its name, a precision that suits it."""

from __future__ import annotations

import dataclasses
import os
import platform

# Deterministic GPU kernels in XLA (JAX's GPU backend reads XLA_FLAGS when it starts).
DETERMINISTIC_XLA_FLAG = "--xla_gpu_deterministic_ops=true"


@dataclasses.dataclass(frozen=True)
class Device:
    """The device training runs on.

    Attributes:
        kind: "gpu" or "cpu".
        name: e.g. "NVIDIA H100 80GB HBM3", or the CPU's description.
        compute_capability: (major, minor) for an NVIDIA GPU, else None.
    """

    kind: str
    name: str
    compute_capability: tuple[int, int] | None = None

    @property
    def supports_bfloat16(self) -> bool:
        # Ampere (8.0) and newer have bf16 tensor cores.
        return self.compute_capability is not None and self.compute_capability >= (8, 0)


def current_device() -> Device:
    """The first GPU visible to the Keras backend, else the CPU."""
    from tf_resnet9 import backends  # starts the backend: only when asked

    gpu = backends.gpu()
    if gpu is not None:
        return Device("gpu", *gpu)
    return Device("cpu", cpu_name())


def cpu_name() -> str:
    """e.g. "AMD EPYC, 2 cores" (Linux reports the model in /proc/cpuinfo)."""
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            name = next(
                line.split(":", 1)[1].strip() for line in f if line.startswith("model name")
            )
    except (OSError, StopIteration):
        pass
    return f"{name}, {os.cpu_count()} cores"


def default_precision(device: Device) -> str:
    """bf16 mixed precision where the GPU has it, fp16 on older GPUs, float32 on the CPU.

    bf16 needs no loss scaling; fp16 gets a dynamic loss scale (Keras adds it). On the CPU,
    reduced precision is slower, not faster, in most builds.
    """
    if device.kind != "gpu":
        return "float32"
    return "mixed_bfloat16" if device.supports_bfloat16 else "mixed_float16"
