"""Checkpoints: what they hold, how many stay, and clear errors for bad ones."""

import dataclasses

import keras
import numpy as np
import pytest

from tf_resnet9.config import TrainConfig
from tf_resnet9.models.resnet9 import resnet9
from tf_resnet9.outputs import checkpoints
from tf_resnet9.training.optimizers import NesterovSGD
from tf_resnet9.training.records import EpochRecord
from tf_resnet9.training.steps import CompiledSteps

CONFIG = TrainConfig(width=0.0625)
FIGURES = dict(lr=0.1, train_loss=2.0, train_acc=0.2, test_loss=2.1, test_acc=0.5)


def model_and_optimizer(seed: int):
    keras.utils.set_random_seed(seed)
    model = resnet9(width=CONFIG.width)
    optimizer = NesterovSGD(0.1)
    optimizer.build(model.trainable_variables)
    for velocity in optimizer.velocities:  # something else than the zeros it starts with
        velocity.assign(np.random.default_rng(seed).normal(size=velocity.shape))
    return model, optimizer


def record(epoch: int) -> EpochRecord:
    times = dict(test_top5_acc=0.9, epoch_time_s=1.0, training_time_s=float(epoch))
    return EpochRecord(epoch=epoch, **FIGURES, **times)


def meta(epoch: int, config=CONFIG) -> dict:
    return {
        "epoch": epoch,
        "records": [record(e).as_dict() for e in range(1, epoch + 1)],
        "eval_time_s": 1.5,
        "hooks_time_s": 0.5,
        "confusion_matrix": np.eye(10, dtype=int).tolist(),
        "compile_time_s": 3.0,
        "config": dataclasses.asdict(config),
    }


def values(model, optimizer):
    return [keras.ops.convert_to_numpy(v) for v in model.variables + optimizer.variables]


def steps_of(seed: int) -> CompiledSteps:
    """A run's compiled steps with its optimizer's velocities set (not the zeros they start
    with), as after some training."""
    model, optimizer = model_and_optimizer(seed)
    return CompiledSteps(model, optimizer, jit=False)


def save(path, steps: CompiledSteps, epoch: int, config=CONFIG) -> str:
    arrays = steps.arrays(steps.initial_state())
    return checkpoints.save(path, arrays, meta(epoch, config), keep=2)


def test_restore_puts_back_every_variable_and_the_progress(tmp_path):
    saved = steps_of(1)
    save(tmp_path, saved, 3)
    steps = steps_of(2)
    checkpoint = checkpoints.load_latest(tmp_path)
    checkpoints.check_resumable(checkpoint, CONFIG, steps.shapes)
    steps.restore(checkpoint.arrays)
    after = values(steps.model, steps.optimizer)
    for got, want in zip(after, values(saved.model, saved.optimizer)):
        np.testing.assert_array_equal(got, want)  # a copy: exact
    progress = checkpoint.progress
    assert progress.records == tuple(record(e) for e in (1, 2, 3))
    assert (progress.eval_time_s, progress.hooks_time_s) == (1.5, 0.5)
    # What a finished run needs to write its results again.
    np.testing.assert_array_equal(checkpoint.confusion_matrix, np.eye(10))
    assert checkpoint.compile_time_s == 3.0


def test_only_the_latest_are_kept_and_nothing_temporary(tmp_path):
    steps = steps_of(1)
    for epoch in range(1, 5):
        save(tmp_path, steps, epoch)
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["epoch-0003.npz", "epoch-0004.npz"]
    assert checkpoints.load_latest(tmp_path).epoch == 4


def test_no_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(checkpoints.CheckpointError, match="no checkpoint to resume from"):
        checkpoints.load_latest(tmp_path)


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_a_damaged_checkpoint_is_named(tmp_path, damage):
    path = save(tmp_path, steps_of(1), 1)
    content = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(content[: len(content) // 2] if damage == "truncate" else b"not a checkpoint")
    with pytest.raises(checkpoints.CheckpointError, match=f"{path}: truncated or corrupt"):
        checkpoints.load_latest(tmp_path)


def test_a_checkpoint_of_other_settings_is_refused_by_name(tmp_path):
    steps = steps_of(1)
    save(tmp_path, steps, 1)
    other = dataclasses.replace(CONFIG, peak_lr=0.2, keep_checkpoints=5)  # keep may change
    said = r"with that run's: --peak_lr=0\.4 \(given here: peak_lr=0\.2\), or start afresh"
    with pytest.raises(checkpoints.CheckpointError, match=said):
        checkpoint = checkpoints.load_latest(tmp_path)
        checkpoints.check_resumable(checkpoint, other, steps.shapes)


def test_a_setting_an_earlier_version_lacked_had_its_default(tmp_path):
    # A checkpoint written before a setting existed ran with its default: the same value
    # resumes, another is refused.
    steps = steps_of(1)
    path = save(tmp_path, steps, 1)
    checkpoint = checkpoints.load(path)
    del checkpoint.meta["config"]["label_smoothing"]
    checkpoints.check_resumable(checkpoint, CONFIG, steps.shapes)
    other = dataclasses.replace(CONFIG, label_smoothing=0.2)
    said = r"--label_smoothing=0 \(given here: label_smoothing=0\.2\)"
    with pytest.raises(checkpoints.CheckpointError, match=said):
        checkpoints.check_resumable(checkpoint, other, steps.shapes)


def test_a_setting_unset_there_is_said_as_a_flag_to_leave_out(tmp_path):
    steps = steps_of(1)
    save(tmp_path, steps, 1)
    other = dataclasses.replace(CONFIG, train_limit=64, peak_lr=0.2)
    said = (
        r"with that run's: --peak_lr=0\.4, without --train_limit \(given here: peak_lr=0\.2, "
        r"train_limit=64\)"
    )
    with pytest.raises(checkpoints.CheckpointError, match=said):
        checkpoints.check_resumable(checkpoints.load_latest(tmp_path), other, steps.shapes)


def test_a_checkpoint_of_another_model_is_refused(tmp_path):
    save(tmp_path, steps_of(1), 1)
    wider = resnet9(width=0.125)
    other = CompiledSteps(wider, NesterovSGD(0.1), jit=False)
    with pytest.raises(checkpoints.CheckpointError, match="do not fit this model"):
        checkpoint = checkpoints.load_latest(tmp_path)
        checkpoints.check_resumable(checkpoint, CONFIG, other.shapes)
