"""A tiny tensorflow-datasets data set built here, no download: `tf_resnet9_tiny`, with two
configs, `grey` (grey images of two sizes, 8x8 and 6x6) and `rgb` (RGB images of one size,
8x8), three classes, a train and a test split.

    python -m tests.tfds_fixture     # rewrites tests/fixtures/tfds (needs TensorFlow)

Preparing a tfds data set needs TensorFlow; reading one prepared as array_record does not.
The copy in tests/fixtures/tfds (array_record) is what the tests read on Keras' JAX backend
without TensorFlow; `test_tfds_source.py` checks it against a fresh build where TensorFlow
is present.
"""

from __future__ import annotations

import functools
import os
import shutil
import sys

import numpy as np

NAME = "tf_resnet9_tiny"
CLASS_NAMES = ("circle", "square", "triangle")
COUNTS = {"train": 12, "test": 6}
FIXTURE_DIR = os.path.join(os.path.dirname(__file__), "fixtures", "tfds")


def examples(config: str, split: str) -> list[tuple[np.ndarray, int]]:
    """The (image, label) pairs of a split, in the order generated: uint8 images (8, 8, 1)
    and (6, 6, 1) alternating for `grey`, (8, 8, 3) for `rgb`."""
    rng = np.random.default_rng([0 if config == "grey" else 1, 0 if split == "train" else 1])
    pairs = []
    for k in range(COUNTS[split]):
        if config == "grey":
            side = 8 if k % 2 == 0 else 6
            image = rng.integers(0, 256, (side, side, 1), dtype=np.uint8)
        else:
            image = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        pairs.append((image, k % len(CLASS_NAMES)))
    return pairs


@functools.cache
def builder_class():
    """The builder (defined once: defining it registers its name with tfds)."""
    import tensorflow_datasets as tfds

    class TfResnet9Tiny(tfds.core.GeneratorBasedBuilder):
        """Three classes of random images (`tests.tfds_fixture`)."""

        VERSION = tfds.core.Version("1.0.0")
        BUILDER_CONFIGS = [
            tfds.core.BuilderConfig(name="grey", description="grey, 8x8 and 6x6"),
            tfds.core.BuilderConfig(name="rgb", description="RGB, 8x8"),
        ]

        def _info(self):
            channels = 1 if self.builder_config.name == "grey" else 3
            side = None if self.builder_config.name == "grey" else 8
            return tfds.core.DatasetInfo(
                builder=self,
                description="Random images for tf_resnet9's tests.",
                features=tfds.features.FeaturesDict(
                    {
                        "image": tfds.features.Image(shape=(side, side, channels)),
                        "label": tfds.features.ClassLabel(names=CLASS_NAMES),
                    }
                ),
                supervised_keys=("image", "label"),
            )

        def _split_generators(self, dl_manager):
            del dl_manager  # nothing to download
            return {split: self._generate_examples(split) for split in COUNTS}

        def _generate_examples(self, split):
            for k, (image, label) in enumerate(examples(self.builder_config.name, split)):
                yield k, {"image": image, "label": label}

    return TfResnet9Tiny


def prepare(data_dir: str | os.PathLike, file_format: str = "tfrecord") -> None:
    """Prepares both configs in `data_dir` (needs TensorFlow)."""
    for config in ("grey", "rgb"):
        builder = builder_class()(
            config=config, data_dir=os.fspath(data_dir), file_format=file_format
        )
        builder.download_and_prepare()
    shutil.rmtree(os.path.join(data_dir, "downloads"), ignore_errors=True)


def main() -> int:
    shutil.rmtree(FIXTURE_DIR, ignore_errors=True)
    prepare(FIXTURE_DIR, "array_record")
    print(f"wrote {FIXTURE_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
