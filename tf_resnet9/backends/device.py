"""What training runs on: the first accelerator the Keras backend sees, else the CPU."""

from __future__ import annotations

import dataclasses
import os
import platform


@dataclasses.dataclass(frozen=True)
class Device:
    """The device training runs on.

    Attributes:
        kind: "gpu" or "cpu".
        name: e.g. "NVIDIA H100 80GB HBM3", or the CPU's description.
        compute_capability: (major, minor) for an NVIDIA GPU, else None.
        count: How many devices of this kind this process sees (data parallel may use
            them all).
    """

    kind: str
    name: str
    compute_capability: tuple[int, int] | None = None
    count: int = 1

    @classmethod
    def from_record(cls, record: dict) -> Device:
        """The device a results.json's "device" entry (`dataclasses.asdict`) describes."""
        capability = record.get("compute_capability")
        return cls(
            record["kind"],
            record["name"],
            None if capability is None else tuple(capability),
            record.get("count", 1),
        )

    @property
    def supports_bfloat16(self) -> bool:
        # Ampere (8.0) and newer have bf16 tensor cores.
        return self.compute_capability is not None and self.compute_capability >= (8, 0)


def current_device() -> Device:
    """The first GPU visible to the Keras backend, else the CPU."""
    from tf_resnet9 import backends  # starts the backend: only when asked

    gpu = backends.gpu()
    if gpu is not None:
        name, capability, count = gpu
        return Device("gpu", name, capability, count)
    return Device("cpu", cpu_name(), count=backends.local_device_count())


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
