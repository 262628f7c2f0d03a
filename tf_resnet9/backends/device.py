"""What training runs on: the first accelerator the Keras backend sees, else the CPU."""

from __future__ import annotations

import dataclasses
import os
import platform
import re


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


def device_memory_bytes() -> int | None:
    """The memory of the device training runs on, where the backend says: JAX's
    `memory_stats()["bytes_limit"]` (a GPU's; a CPU's reports none), else the host's
    physical memory for a CPU, else None."""
    from tf_resnet9 import backends  # starts the backend: only when asked

    if backends.NAME == "jax":
        import jax

        device = jax.local_devices()[0]  # jax.devices() starts with another process's
        stats = device.memory_stats() or {}
        if "bytes_limit" in stats:
            return int(stats["bytes_limit"])
        if device.platform != "cpu":
            return None
    elif backends.gpu() is not None:
        return None  # TensorFlow reports a GPU's use, not its size
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}
_UNITS |= {"ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}


def parse_bytes(text: str) -> int:
    """ "8GiB", "512MB", "2g", "1000000" -> bytes (k, M, G, T: powers of 1000; Ki, Mi, Gi,
    Ti: of 1024; a trailing B optional).

    Raises:
        ValueError: anything else.
    """
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]i?)?b?\s*", text.lower())
    if not match:
        raise ValueError(
            f"{text!r} is invalid: expected an amount of memory such as 8GiB, 512MB or 2G."
        )
    return int(float(match.group(1)) * _UNITS[match.group(2) or ""])


def format_bytes(count: int) -> str:
    """Bytes in GiB (or MiB below one GiB), as the messages and records write them."""
    if count >= 2**30:
        return f"{count / 2**30:.2f} GiB"
    return f"{count / 2**20:.1f} MiB"
