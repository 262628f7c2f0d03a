"""A run's results as one typed record (`RunResults`): what `train_and_evaluate` returns,
results.json holds, and the benchmarks read; and the software it was measured with."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import os
import platform

import numpy as np

from tf_resnet9.config import TrainConfig
from tf_resnet9.config.settings import RunSettings
from tf_resnet9.outputs.files import write_json_atomic
from tf_resnet9.training.records import EpochRecord

# torch: the parity reference and the PyTorch baseline record their versions here too.
_PACKAGES = (
    "keras",
    "tensorflow",
    "tensorflow-datasets",
    "jax",
    "jaxlib",
    "numpy",
    "absl-py",
    "tensorboardX",
    "torch",
)
# What a run records of its environment: what XLA was told before it started.
_ENVIRONMENT = ("XLA_FLAGS", "KERAS_BACKEND", "XLA_PYTHON_CLIENT_MEM_FRACTION")


def library_versions() -> dict[str, str]:
    """Versions of Python, the Keras backend and the libraries that are installed."""
    import keras

    versions = {"python": platform.python_version(), "keras_backend": keras.backend.backend()}
    for package in _PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            pass
    return versions


def environment() -> dict[str, str]:
    """The environment variables that change what the backend compiles, where set."""
    return {name: os.environ[name] for name in _ENVIRONMENT if name in os.environ}


@dataclasses.dataclass(frozen=True)
class RunResults:
    """Everything a run reports, as results.json holds it (`as_dict`; `read`).

    Attributes:
        config: The run's settings (its own seed; `seeds` 1).
        settings: What the run decided of the settings left open, and its device.
        recipe: {"name", "source"} of the recipe.
        data: How the splits were drawn (`tf_resnet9.data.splits.Splits.record`).
        epochs: Every epoch's record.
        class_names: The name of each class, in label order.
        confusion_matrix: (classes, classes) counts of the last evaluation of the test set,
            rows the true class.
        resumed_from_epoch: The epoch of the checkpoint this run resumed from, or None.
        compile_time_s, training_time_s, eval_time_s, hooks_time_s, wall_time_s,
            whitening_time_s: Times (README.org, "What the times mean").
        versions: Python's and the libraries' versions.
        environment: The environment variables that change what XLA compiles.
        unwritten: {file: why} of the end-of-run extras that could not be written (not in
            results.json, which is written before them).
    """

    config: TrainConfig
    settings: RunSettings
    recipe: dict
    data: dict
    epochs: tuple[EpochRecord, ...]
    class_names: tuple[str, ...]
    confusion_matrix: np.ndarray
    resumed_from_epoch: int | None
    compile_time_s: float
    training_time_s: float
    eval_time_s: float
    hooks_time_s: float
    wall_time_s: float
    versions: dict
    environment: dict
    whitening_time_s: float = 0.0
    unwritten: dict = dataclasses.field(default_factory=dict)

    @property
    def seed(self) -> int:
        return self.config.seed

    @property
    def device(self) -> dict:
        """The device it trained on, as results.json holds it."""
        return dataclasses.asdict(self.settings.device)

    @property
    def test_accuracy(self) -> float:
        return self.epochs[-1].test_acc

    @property
    def test_top5_accuracy(self) -> float:
        return self.epochs[-1].test_top5_acc

    @property
    def images_per_s(self) -> float:
        """Training images processed per second of DAWNBench training time."""
        steps_per_epoch = self.settings.steps_per_epoch
        updates = min(len(self.epochs) * steps_per_epoch, self.config.updates(steps_per_epoch))
        return updates * self.config.batch_size / self.training_time_s

    @property
    def airbench_time_s(self) -> float:
        """airbench's clock: the whitening, training and the last evaluation. Training
        time here includes the data's move to the device, which airbench's leaves out."""
        return self.whitening_time_s + self.training_time_s + self.epochs[-1].eval_time_s

    @property
    def per_class_accuracy(self) -> dict[str, float | None]:
        """Share of each class's test images classified right (None for a class without any)."""
        totals = self.confusion_matrix.sum(axis=1)
        return {
            name: float(self.confusion_matrix[c, c] / n) if n else None
            for c, (name, n) in enumerate(zip(self.class_names, totals))
        }

    def as_dict(self) -> dict:
        """results.json's content: the fields, and the figures derived from them."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        del fields["unwritten"], fields["settings"]
        return fields | {
            "config": dataclasses.asdict(self.config) | self.settings.record(),
            "steps_per_epoch": self.settings.steps_per_epoch,
            "epochs": [record.as_dict() for record in self.epochs],
            "class_names": list(self.class_names),
            "confusion_matrix": self.confusion_matrix.tolist(),
            "test_accuracy": self.test_accuracy,
            "test_top5_accuracy": self.test_top5_accuracy,
            "per_class_accuracy": self.per_class_accuracy,
            "images_per_s": self.images_per_s,
            "airbench_time_s": self.airbench_time_s,
            "device": self.device,
            "seed": self.seed,
        }

    def write(self, path: str | os.PathLike) -> None:
        write_json_atomic(path, self.as_dict())

    @classmethod
    def read(cls, path: str | os.PathLike) -> RunResults:
        """The results a results.json holds (settings it does not know keep their
        defaults: an earlier version's file)."""
        with open(path) as f:
            stored = json.load(f)
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in stored.items() if k in names}
        config_names = {f.name for f in dataclasses.fields(TrainConfig)}
        config = {k: v for k, v in stored["config"].items() if k in config_names}
        return cls(
            **values
            | {
                "config": TrainConfig(**_tuples(config)),
                "settings": RunSettings.from_record(stored["config"], stored["device"]),
                "epochs": tuple(EpochRecord.from_dict(r) for r in stored["epochs"]),
                "class_names": tuple(stored["class_names"]),
                "confusion_matrix": np.asarray(stored["confusion_matrix"], np.int64),
            }
        )


def _tuples(settings: dict) -> dict:
    """JSON's lists back into the tuples the settings hold."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()}
