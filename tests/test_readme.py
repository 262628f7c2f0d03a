"""README.org's Python example, run as written on tiny data (in the ~/data it names), and its
flag table against the config."""

import dataclasses
import math
import pathlib
import re

import numpy as np

from tests.cifar_files import fake_cifar10, write_folder
from tf_resnet9.config import TrainConfig

README = pathlib.Path(__file__).parent.parent / "README.org"


def python_examples() -> list[str]:
    """The README's Python blocks that run as written (`:tangle no` marks fragments)."""
    return re.findall(r"^#\+begin_src python\n(.*?)^#\+end_src", README.read_text(), re.M | re.S)


def test_the_example_trains_with_a_first_loss_near_ln10(tmp_path, monkeypatch):
    (example,) = python_examples()
    monkeypatch.setenv("HOME", str(tmp_path))  # "~/data" is tmp_path/data
    write_folder(tmp_path / "data", fake_cifar10(train_per_batch=8, test=10))
    namespace = {}
    exec(compile(example, str(README), "exec"), namespace)
    # At the start the logits are small (0.125 x a linear layer of PyTorch's init), so the
    # softmax is near uniform and the loss near ln(10) = 2.303 (measured 2.33 to 2.39).
    # Logits taken for probabilities, the mistake this guards against, give ~10.
    assert abs(namespace["first"]["loss"] - math.log(10)) < 0.25, namespace["first"]
    probabilities = np.asarray(namespace["probabilities"])
    assert probabilities.shape == (8, 10)
    np.testing.assert_allclose(probabilities.sum(axis=-1), 1.0, rtol=1e-5)  # float32 softmax


def test_every_setting_is_in_the_flag_table():
    text = README.read_text()
    missing = [
        field.name
        for field in dataclasses.fields(TrainConfig)
        if not re.search(rf"\| =--(\[no\])?{field.name}=", text)
        and not re.search(rf", =--(\[no\])?{field.name}=", text)
    ]
    assert not missing, f"README.org's flag table lacks {missing}"
