"""What a run's unset settings become, decided from the device: stand-in descriptions of
GPUs the project has not got, so that the GPU's choices are checked on a CPU."""

import pytest

from tf_resnet9 import backends
from tf_resnet9.backends.device import Device
from tf_resnet9.config import TrainConfig
from tf_resnet9.config.settings import resolve, resolve_devices
from tf_resnet9.errors import ConfigError

H100 = Device("gpu", "NVIDIA H100 80GB HBM3", (9, 0))
A100 = Device("gpu", "NVIDIA A100-SXM4-40GB", (8, 0))
V100 = Device("gpu", "Tesla V100-SXM2-16GB", (7, 0))
T4 = Device("gpu", "Tesla T4", (7, 5))
CPU = Device("cpu", "AMD EPYC, 2 cores")


@pytest.mark.parametrize(
    "device, precision",
    [(H100, "mixed_bfloat16"), (A100, "mixed_bfloat16"), (V100, "mixed_float16"),
     (T4, "mixed_float16"), (CPU, "float32")],
)  # fmt: skip
def test_precision_follows_the_device(device, precision):
    # bf16 tensor cores from Ampere (8.0) on; fp16 (with a loss scale) before; a CPU float32.
    assert resolve(TrainConfig(), 50_000, 10_000, device).precision == precision
    given = TrainConfig(precision="float32")
    assert resolve(given, 50_000, 10_000, device).precision == "float32"  # a flag given wins


@pytest.mark.parametrize("device", [H100, V100, CPU])
def test_a_gpu_trains_an_epoch_per_compiled_call_on_device_augmentation(device):
    settings = resolve(TrainConfig(augment="device"), 50_000, 10_000, device)
    assert settings.steps_per_epoch == 97  # 50,000 // 512: the last partial batch dropped
    # On a CPU, XLA runs convolutions inside a loop far slower: one step per call there.
    assert settings.steps_per_call == (97 if device.kind == "gpu" else 1)
    assert settings.eval_batch_size == 512 and settings.device == device
    fixed = resolve(TrainConfig(augment="device", steps_per_call=10), 50_000, 10_000, device)
    assert fixed.steps_per_call == 10
    assert resolve(TrainConfig(steps_per_call=500), 5_000, 1_000, device).steps_per_call == 9


@pytest.mark.parametrize("device", [H100, V100, CPU])
def test_the_input_and_the_compiler_follow_the_backend_and_the_device(device):
    # README.org's defaults: TensorFlow on a CPU without XLA and with the device input (its
    # fastest there, benchmarks.throughput), on a GPU with XLA and tf.data; JAX always with
    # XLA and the device input.
    settings = resolve(TrainConfig(), 50_000, 10_000, device)
    tensorflow_gpu = backends.NAME == "tensorflow" and device.kind == "gpu"
    assert settings.augment == ("host" if tensorflow_gpu else "device")
    assert settings.jit is (backends.NAME == "jax" or device.kind == "gpu")
    given = resolve(TrainConfig(jit=True, augment="device"), 50_000, 10_000, device)
    assert (given.jit, given.augment) == (True, "device")  # flags given win
    assert resolve(TrainConfig(jit=False), 50_000, 10_000, device).jit is False
    # Reduced precision on a CPU: XLA on both backends (TensorFlow's own CPU kernels have no
    # bf16 or fp16 convolution without AVX-512).
    reduced = resolve(TrainConfig(precision="mixed_bfloat16"), 50_000, 10_000, device)
    assert reduced.jit is True


def test_host_augmentation_feeds_one_step_per_call_even_on_a_gpu():
    if not backends.HOST_AUGMENT:
        with pytest.raises(ConfigError, match="augment='host' is invalid: the host pipeline"):
            resolve(TrainConfig(augment="host"), 50_000, 10_000, H100)
        return
    assert resolve(TrainConfig(augment="host"), 50_000, 10_000, H100).steps_per_call == 1


def test_a_batch_larger_than_the_data_is_refused():
    with pytest.raises(ConfigError, match="batch_size=512 is invalid: larger than the 100"):
        resolve(TrainConfig(), 100, 10, CPU)


def test_augmentation_larger_than_the_images_is_refused_naming_the_flag():
    # Reflection padding needs less than the side; the cutout square is at most all of it.
    assert resolve(TrainConfig(translate=31, cutout_size=32), 1000, 10, CPU).image_size == 32
    with pytest.raises(ConfigError, match=r"translate=32 is invalid: expected 0\.\.31 for 32x32"):
        resolve(TrainConfig(translate=32), 1000, 10, CPU)
    with pytest.raises(ConfigError, match=r"cutout_size=33 is invalid: expected 1\.\.32 for 32x32"):
        resolve(TrainConfig(cutout_size=33), 1000, 10, CPU)


@pytest.mark.parametrize("setting", ["seed", "subset_seed"])
def test_seeds_outside_32_bits_are_refused(setting):
    for value in (0, 2**32 - 1):
        assert getattr(TrainConfig(**{setting: value}), setting) == value
    for value in (-1, 2**32):
        with pytest.raises(ConfigError, match=f"{setting}={value} is invalid: expected an int"):
            TrainConfig(**{setting: value})


EIGHT_GPUS = Device("gpu", "NVIDIA H100 80GB HBM3", (9, 0), count=8)


@pytest.mark.parametrize(
    "devices, device, count",
    [(None, EIGHT_GPUS, 8), ("all", EIGHT_GPUS, 8), ("2", EIGHT_GPUS, 2), (None, CPU, 1),
     ("all", Device("cpu", "forced host devices", count=4), 4)],
)  # fmt: skip
def test_data_parallel_over_every_gpu_by_default_and_one_cpu(devices, device, count):
    config = TrainConfig(devices=devices)
    assert resolve_devices(config, device, "jax") == count


@pytest.mark.parametrize(
    "devices, backend, message",
    [
        ("16", "jax", "devices='16' is invalid: this host has 8"),
        ("3", "jax", "batch_size=512 must split evenly over the 3 devices"),
        ("2", "tensorflow", "training over several devices runs on Keras' JAX backend"),
    ],
)
def test_devices_that_do_not_fit_are_refused_by_name(devices, backend, message):
    with pytest.raises(ConfigError, match=message):
        resolve_devices(TrainConfig(devices=devices), EIGHT_GPUS, backend)


def test_one_gpu_of_eight_on_tensorflow_is_fine():
    assert resolve_devices(TrainConfig(devices="1"), EIGHT_GPUS, "tensorflow") == 1
