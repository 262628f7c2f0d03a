"""What a run's unset settings become on this machine and data: the device, the precision,
where augmentation runs, steps per compiled call. One record, stored in results.json."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from tf_resnet9 import backends
from tf_resnet9.backends.device import Device, current_device, device_memory_bytes, parse_bytes
from tf_resnet9.config.train_config import TrainConfig
from tf_resnet9.data.cifar import DATASETS, IMAGE_SHAPE
from tf_resnet9.data.splits import Splits
from tf_resnet9.data.stats import AIRBENCH, MEAN, STD
from tf_resnet9.errors import ConfigError

CIFAR_SIZE = IMAGE_SHAPE[0]


@dataclasses.dataclass(frozen=True)
class RunSettings:
    """The resolved settings of one run: what the config leaves open, decided once for this
    backend, device and data (`resolve`).

    Attributes:
        backend: Keras' backend, "tensorflow" or "jax".
        device: Where training runs.
        precision: Keras dtype policy ("float32", "mixed_bfloat16", ...).
        augment: "device" or "host".
        jit: Whether the steps are XLA-compiled.
        steps_per_epoch: Training images // batch size.
        steps_per_call: Training steps per compiled call.
        eval_batch_size: Test images per evaluation call.
        devices: Devices the run uses: each batch is split over them (data parallel, of
            all processes), or with seeds trained together, their runs.
        seeds_together: Whether several seeds train together in one compiled program
            (`tf_resnet9.training.lanes`), else one after another.
        image_size: The side of the images the model takes.
        normalize: "cifar10" (the recipe's constants), "data" (the training images' own) or
            "airbench" (airbench's constants).
        normalization: (mean, std) per channel on the 0..255 scale, as `normalize` says.
        stream: Whether the training set streams from the host each epoch
            (`tf_resnet9.data.streaming`) instead of being placed on the device.
        placement: Why it is placed or streamed (`streaming.fits_on_device`).
    """

    backend: str
    device: Device
    precision: str
    augment: str
    jit: bool
    steps_per_epoch: int
    steps_per_call: int
    eval_batch_size: int
    devices: int = 1
    seeds_together: bool = False
    image_size: int = CIFAR_SIZE
    normalize: str = "cifar10"
    normalization: tuple[tuple[float, ...], tuple[float, ...]] = (MEAN, STD)
    stream: bool = False
    placement: str = ""

    def record(self) -> dict:
        """The resolved values, as results.json stores them beside the config (the device
        has an entry of its own there)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "device"}

    @classmethod
    def from_record(cls, record: dict, device: dict) -> RunSettings:
        """The settings `record` and the device entry of a results.json give back."""
        names = {field.name for field in dataclasses.fields(cls)} - {"device"}
        values = {name: record[name] for name in names if name in record}
        if "normalization" in values:  # JSON's lists
            values["normalization"] = tuple(tuple(part) for part in values["normalization"])
        return cls(device=Device.from_record(device), **values)

    def seed_groups(self, seeds: Sequence[int]) -> list[tuple[int, ...]]:
        """The seeds as they train: all in one group where together, else one by one."""
        return [tuple(seeds)] if self.seeds_together else [(seed,) for seed in seeds]


def default_precision(device: Device) -> str:
    """bf16 mixed precision where the GPU has it, fp16 on older GPUs, float32 on the CPU.

    bf16 needs no loss scaling; fp16 gets a dynamic loss scale (`tf_resnet9.build`). On
    the CPU, reduced precision is slower, not faster, in most builds.
    """
    if device.kind != "gpu":
        return "float32"
    return "mixed_bfloat16" if device.supports_bfloat16 else "mixed_float16"


def default_steps_per_call(augment: str, device: Device, steps_per_epoch: int) -> int:
    """A whole epoch per compiled call on a GPU with device augmentation; else one step.

    Host batches arrive one at a time anyway, and XLA's CPU backend runs convolutions
    inside a loop ~70x slower than outside one (measured on ResNet9).
    """
    return steps_per_epoch if augment == "device" and device.kind == "gpu" else 1


def _seed_devices(seeds: int, available: int) -> int:
    """The most of `available` devices that `seeds` seeds split evenly over."""
    return max(d for d in range(1, min(seeds, available) + 1) if seeds % d == 0)


def check_seeds_fit(seeds: int, devices: int) -> None:
    """Raises ConfigError where seeds trained together do not split evenly over the devices
    (each device trains the same number of whole runs)."""
    if seeds > 1 and seeds % devices:
        raise ConfigError(
            "seeds",
            seeds,
            f"seeds trained together are split over the devices, the same number on each: "
            f"{seeds} do not split over {devices} (pass a multiple of {devices}, or --devices "
            f"{_seed_devices(seeds, devices)}).",
        )


def resolve_together(config: TrainConfig, seeds: int, device: Device, backend: str) -> bool:
    """Whether `seeds` seeds train together in one compiled program: as `seeds_together`
    says, unset where the backend's measurement says it is faster on this kind of device
    (`backends.default_seeds_together`).

    Raises:
        ConfigError: together asked for on TensorFlow (JAX's vmap maps the program).
    """
    if seeds == 1:
        return False
    if config.seeds_together is None:
        return backends.default_seeds_together(device.kind)
    if config.seeds_together and backend != "jax":
        raise ConfigError(
            "seeds_together",
            True,
            "seeds train together on Keras' JAX backend (jax.vmap); on TensorFlow they "
            "train one after another.",
        )
    return config.seeds_together


def resolve_devices(config: TrainConfig, device: Device, backend: str, together: int = 1) -> int:
    """How many devices the run uses. One seed at a time: the devices its batches are split
    over (data parallel), of this host, and under `jax.distributed` of every process.
    `together` seeds trained together: the devices of this host their runs are split over,
    whole runs on each; unset, as many of a GPU host's as split them evenly.

    Raises:
        ConfigError: more than the host has, a batch or seeds that do not split evenly,
            several devices on TensorFlow, seeds together over several processes.
    """
    if config.devices is None:
        count = device.count if device.kind == "gpu" else 1
        if together > 1:
            count = _seed_devices(together, count)
    else:
        count = device.count if str(config.devices) == "all" else int(config.devices)
    if count > device.count:
        raise ConfigError(
            "devices", config.devices, f"this host has {device.count} ({device.name})."
        )
    processes = backends.process_count()
    if processes > 1 and together > 1:
        raise ConfigError(
            "seeds",
            together,
            f"seeds train together on one host's devices, not over {processes} processes "
            "of jax.distributed: start one run of seeds per host, or pass "
            "--noseeds_together.",
        )
    if processes > 1:  # jax.distributed: every device of every process, one batch split
        if count != device.count:
            raise ConfigError(
                "devices",
                config.devices,
                f"a run over {processes} processes uses each one's {device.count} devices: all.",
            )
        count *= processes
    if count > 1 and backend != "jax":
        raise ConfigError(
            "devices",
            config.devices,
            "training over several devices runs on Keras' JAX backend (KERAS_BACKEND=jax): "
            "Keras' distribution API is not implemented for TensorFlow.",
        )
    if together > 1:
        check_seeds_fit(together, count)
    elif config.batch_size % count:
        raise ConfigError(
            "devices",
            config.devices,
            f"batch_size={config.batch_size} must split evenly over the {count} devices.",
        )
    return count


def resolve(
    config: TrainConfig,
    train_images: int,
    test_images: int,
    device: Device | None = None,
    seeds: int = 1,
    data: Splits | None = None,
) -> RunSettings:
    """The settings `config` leaves open, decided for this backend, device and data.

    Args:
        config: The run's settings.
        train_images, test_images: How many images the run trains and tests on.
        device: Where it runs; None: the backend's first device (`current_device`).
        seeds: How many seeds of `config` the run trains.
        data: The run's data, for its image size, statistics and where the training set
            fits; None: CIFAR's 32x32, placed on the device.

    Raises:
        ConfigError: a setting does not fit the backend or the data.
    """
    device = device or current_device()
    augment = _augment(config, device)
    if config.batch_size > train_images:
        raise ConfigError(
            "batch_size",
            config.batch_size,
            f"larger than the {train_images} training images (the last partial batch is "
            "dropped, so no step would run).",
        )
    image_size = CIFAR_SIZE if data is None else data.image_size
    _check_augmentation(config, image_size)
    together = resolve_together(config, seeds, device, backends.NAME)
    devices = resolve_devices(config, device, backends.NAME, seeds if together else 1)
    steps_per_epoch = train_images // config.batch_size
    steps_per_call = config.steps_per_call or default_steps_per_call(
        augment, device, steps_per_epoch
    )
    normalize = config.normalize or ("cifar10" if config.dataset in DATASETS else "data")
    where = _placement(config, data, augment)
    precision = config.precision or default_precision(device)
    return RunSettings(
        backend=backends.NAME,
        device=device,
        precision=precision,
        augment=augment,
        jit=backends.default_jit(device.kind, precision) if config.jit is None else config.jit,
        steps_per_epoch=steps_per_epoch,
        steps_per_call=min(steps_per_call, steps_per_epoch),
        eval_batch_size=_eval_batch_size(
            config.batch_size, test_images, 1 if together else devices
        ),
        devices=devices,
        seeds_together=together,
        image_size=image_size,
        normalize=normalize,
        normalization=_normalization(normalize, data),
        stream=where is not None and where.stream,
        placement="" if where is None else where.reason,
    )


def _augment(config: TrainConfig, device: Device) -> str:
    """Where the augmentation runs: as told, else the backend's default on this device."""
    augment = config.augment or backends.default_augment(device.kind)
    if augment == "host" and not backends.HOST_AUGMENT:
        raise ConfigError(
            "augment",
            augment,
            f"the host pipeline is tf.data, which Keras' {backends.NAME} backend cannot feed; "
            "use 'device'.",
        )
    return augment


def _check_augmentation(config: TrainConfig, size: int) -> None:
    """Raises ConfigError where --translate or --cutout_size do not fit the images' side
    (reflection padding needs less than the side; the cutout square at most all of it)."""
    if config.translate is not None and config.translate >= size:
        raise ConfigError(
            "translate", config.translate, f"expected 0..{size - 1} for {size}x{size} images."
        )
    if config.cutout_size is not None and config.cutout_size > size:
        raise ConfigError(
            "cutout_size", config.cutout_size, f"expected 1..{size} for {size}x{size} images."
        )


def _normalization(normalize: str, data: Splits | None) -> tuple:
    if normalize == "data" and data is not None:
        return tuple(data.normalization.mean), tuple(data.normalization.std)
    return AIRBENCH if normalize == "airbench" else (MEAN, STD)


def _placement(config: TrainConfig, data: Splits | None, augment: str):
    """Whether the training set fits the device (`streaming.fits_on_device`), for the
    device input (tf.data's sets stay on the host anyway); None without data."""
    if data is None or augment != "device":
        return None
    from tf_resnet9.data.augment import geometry  # start Keras: not for the flags
    from tf_resnet9.data.streaming import fits_on_device

    budget = None if config.max_device_memory is None else parse_bytes(config.max_device_memory)
    pad = geometry(data.image_size, config.translate).pad
    return fits_on_device(data.train[0].shape, device_memory_bytes(), budget, pad)


def _eval_batch_size(batch_size: int, test_images: int, devices: int) -> int:
    """The training batch, or the whole test set where smaller, as a multiple of `devices`
    (the last batch is padded anyway)."""
    return max(devices, min(batch_size, test_images) // devices * devices)
