"""The airbench recipes as runs (issue 28): their tables against airbench's own units, the
run's training steps (built from a recipe's config, as a run builds them) against the
PyTorch transcription update for update, airbench's alternating flip through the run's
input, test-time augmentation in the evaluation, the settings' checks, and each recipe
trained end to end at tiny size."""

import dataclasses
import io

import keras
import numpy as np
import pytest
from keras import ops

from tests.cifar_files import fake_cifar10, write_folder
from tests.parity import airbench_checks, airbench_map, airbench_side, checks, keras_side, stored
from tests.parity.name_map import CONV, to_keras_layout
from tf_resnet9 import build
from tf_resnet9.config import TrainConfig
from tf_resnet9.config.recipes import RECIPES
from tf_resnet9.config.settings import resolve
from tf_resnet9.data import augment
from tf_resnet9.data.inputs import DeviceInput, PreparedBatches
from tf_resnet9.data.splits import Splits
from tf_resnet9.errors import ConfigError
from tf_resnet9.experiment import train_and_evaluate
from tf_resnet9.outputs.results import RunResults
from tf_resnet9.training import tta
from tf_resnet9.training.evaluation import EvalSet, evaluate
from tf_resnet9.training.optimizers import from_airbench_units, from_summed_loss_units

AIRBENCH = ("airbench94", "airbench95", "airbench96", "airbench94_muon")
# airbench's own figures per 1,024 examples: lr, weight decay, warm-up share, final factor.
LEGACY = {
    "airbench94": (11.5, 0.0153, 0.23, 0.07),
    "airbench95": (10.0, 0.0153, 0.23, 0.07),
    "airbench96": (9.0, 0.012, 0.1, 0.0),
}
CIFAR_STEPS = 50_000 // 1024  # 48 steps of an epoch of CIFAR-10's training set


@pytest.mark.parametrize("recipe", LEGACY)
def test_the_legacy_recipes_are_airbenchs_figures_in_mean_loss_units(recipe):
    lr, decay, warmup, end = LEGACY[recipe]
    config = TrainConfig.from_recipe(recipe)
    peak, weight_decay = from_airbench_units(lr, decay, 0.85, config.batch_size)
    assert config.batch_size == 1024 and config.momentum == 0.85
    # The recipe writes the conversion's arithmetic out: the same numbers, to round-off.
    assert config.peak_lr == pytest.approx(peak, rel=1e-14)
    assert config.weight_decay == pytest.approx(weight_decay, rel=1e-14)
    assert config.initial_lr == pytest.approx(0.2 * peak, rel=1e-14)
    assert config.min_lr == pytest.approx(end * peak, rel=1e-14)
    updates = config.updates(CIFAR_STEPS)
    assert updates == int(np.ceil(config.epochs * CIFAR_STEPS))  # 476 for airbench94
    assert config.warmup_updates(updates) == int(updates * warmup)  # airbench's int(...)
    assert config.whiten_bias_updates(CIFAR_STEPS) == 3 * CIFAR_STEPS
    assert (config.lookahead, config.flip, config.tta_level) == (True, "alternating", 2)


def test_airbench94_counts_as_airbench_does():
    config = TrainConfig.from_recipe("airbench94")
    assert (config.updates(48), config.warmup_updates(476), config.epochs_run(48)) == (476, 109, 10)


def test_the_muon_recipe_is_airbench94_muons_groups_in_mean_loss_units():
    config = TrainConfig.from_recipe("airbench94_muon")
    batch, decay = config.batch_size, 2e-6 * config.batch_size
    head_lr, head_wd = from_summed_loss_units(0.67, decay, batch)
    bias_lr, bias_wd = from_summed_loss_units(0.053, decay, batch)
    assert (config.peak_lr, config.weight_decay) == pytest.approx((head_lr, head_wd), rel=1e-14)
    assert config.peak_lr * config.bn_bias_lr_scale == pytest.approx(bias_lr, rel=1e-14)
    assert config.weight_decay * config.bn_bias_wd_scale == pytest.approx(bias_wd, rel=1e-14)
    assert (config.muon_lr, config.muon_momentum, config.lookahead) == (0.24, 0.6, False)
    assert config.updates(50_000 // batch) == 200 and config.warmup_updates(200) == 0


@pytest.mark.parametrize(
    "settings, named",
    [
        ({"model": "resnet9", "whiten_bias_epochs": 3.0}, "whiten_bias_epochs"),
        ({"model": "resnet20", "dirac_init": True}, "dirac_init"),
        ({"model": "resnet20", "activation": "gelu"}, "activation"),
        ({"model": "airbench94", "activation": "relu"}, "activation"),
        ({"model": "resnet20", "whiten_patch": 2}, "whiten_patch"),
        ({"model": "airbench94", "whiten_bias_epochs": 3.0}, "whiten_bias_epochs"),
        ({"optimizer": "muon", "lr_schedule": "plateau"}, "lr_schedule"),
        ({"lookahead": True, "ema_momentum": 0.99}, "ema_momentum"),
        ({"tta_level": 3}, "tta_level"),
        ({"model": "resnet9", "logit_scale": None}, "logit_scale"),
        ({"flip": "sometimes"}, "flip"),
        ({"lr_schedule": "warmup_linear", "warmup_epochs": 30.0}, "warmup_epochs"),
    ],
)
def test_settings_that_do_not_fit_name_the_setting(settings, named):
    with pytest.raises(ConfigError) as error:
        TrainConfig(**settings)
    assert error.value.setting == named


# The run's steps against the transcription: test 9's training experiments (airbench94's 12
# updates with lookahead and the whitening bias's freeze, airbench94_muon's 6), with the
# optimizer, schedule, lookahead and freeze the run builds from the recipe's config instead
# of the pieces test 9 assembles by hand, checked by test 9's own rows and tolerances.


def _training_config(kind: str) -> TrainConfig:
    """The recipe at test 9's size: batches of 16, its updates per "epoch", its lr in mean-
    loss units for that batch (airbench's rule; a run's config holds them as numbers)."""
    batch = airbench_side.TRAIN_BATCH
    size = dict(width=airbench_side.TRAIN_WIDTH, batch_size=batch, tensorboard=False)
    if kind == "train":
        lr, decay = from_airbench_units(11.5, 0.0153, 0.85, batch)
        epochs = airbench_side.TRAIN_UPDATES / airbench_side.TRAIN_STEPS_PER_EPOCH
        rates = dict(peak_lr=lr, initial_lr=0.2 * lr, min_lr=0.07 * lr, weight_decay=decay)
        return TrainConfig.from_recipe("airbench94", epochs=epochs, **size, **rates)
    decay = 2e-6 * batch
    head_lr, head_wd = from_summed_loss_units(0.67, decay, batch)
    bias_lr, bias_wd = from_summed_loss_units(0.053, decay, batch)
    rates = dict(peak_lr=head_lr, weight_decay=head_wd, bn_bias_lr_scale=bias_lr / head_lr)
    rates |= dict(bn_bias_wd_scale=bias_wd / head_wd)
    epochs = airbench_side.MUON_UPDATES / airbench_side.MUON_STEPS_PER_EPOCH
    return TrainConfig.from_recipe("airbench94_muon", epochs=epochs, **size, **rates)


def _run_training(kind: str) -> dict[str, np.ndarray]:
    """`airbench_side.keras_train`'s results, from the steps `build` makes of the config."""
    network, state, weight, batches = airbench_side.training_inputs(kind)
    config = _training_config(kind)
    per_epoch = len(batches) // int(config.epochs)
    settings = resolve(config, per_epoch * config.batch_size, config.batch_size)
    settings = dataclasses.replace(settings, precision="float64")  # test 9's
    splits = Splits.of_arrays((np.zeros((1, 32, 32, 3), np.uint8), np.zeros(1, np.int32)))
    with keras_side.float64_enabled():
        steps = build.build_steps(config, settings, splits)
        model = steps.model
        if kind == "muon":  # test 9's Newton-Schulz precision (the run's is airbench's bf16)
            steps.optimizer.ns_dtype = "float64"
        airbench_map.load_into_keras(model, state)
        # The lookahead's average starts from the network as initialised, before the
        # whitening kernel: here the loaded state, as test 9's.
        for average, variable in zip(
            steps.average_variables, model.trainable_variables + model.non_trainable_variables
        ):
            average.assign(ops.convert_to_numpy(variable))
        model.get_layer("whiten").kernel.assign(to_keras_layout(weight, CONV).astype("float64"))
        rate = build.learning_rate(config, settings.steps_per_epoch)
        train = steps.train_fn(PreparedBatches())
        state_k, losses, whiten_bias = steps.initial_state(), [], []
        for k, (x, y) in enumerate(batches):
            position = (ops.convert_to_tensor(k % per_epoch, "int32"), rate.lr_at([k]))
            chunk = (ops.convert_to_tensor(x[None]), ops.convert_to_tensor(y[None], "int32"))
            state_k, totals = train(state_k, position, chunk)
            losses.append(float(ops.convert_to_numpy(totals.loss_sum)))
            whiten_bias.append(steps.arrays(state_k)["model/whiten/bias"])
        steps.finish(state_k)
        velocity = airbench_map.torch_named(
            (v.path, u.value) for v, u in zip(model.trainable_variables, steps.optimizer.velocities)
        )
        results = {f"{kind}:losses": np.array(losses), f"{kind}:whiten_bias": np.stack(whiten_bias)}
        mapped = airbench_side._mapped_state(airbench_map.state_from_keras(model))
        results |= {f"{kind}:state:{k}": np.asarray(v) for k, v in mapped.items()}
        return results | {f"{kind}:velocity:{k}": np.asarray(v) for k, v in velocity.items()}


def _reference_training() -> tuple[dict, bool]:
    try:
        import torch  # noqa: F401
    except ImportError:
        return stored.load("airbench"), True
    return airbench_side.torch_train("train") | airbench_side.torch_train("muon"), False


def test_the_runs_steps_train_as_the_transcription():
    ours = _run_training("train") | _run_training("muon")
    reference, sampled = _reference_training()
    rows = airbench_checks.train_rows(ours, reference, sampled)
    assert len(rows) > 2 * 4
    assert all(row.ok for row in rows), checks.failures(rows)
    bias = ours["train:whiten_bias"]  # frozen after update 6, moved by the lookahead at 10
    np.testing.assert_array_equal(bias[6:9], np.broadcast_to(bias[5], bias[6:9].shape))
    assert np.abs(bias[9] - bias[8]).max() > 0


# The input and the evaluation.


def test_the_alternating_flip_mirrors_the_whole_set_every_other_epoch():
    # No translation and no cutout: each image of epoch 1 is itself or its mirror image (a
    # flip drawn once, both kinds drawn), epoch 2's are epoch 1's mirrored, epoch 3's are
    # epoch 1's.
    rng = np.random.default_rng(5)
    images = rng.integers(0, 256, (32, 32, 32, 3), np.uint8)
    labels = np.arange(32) % 10
    source = DeviceInput(
        images,
        labels,
        32,
        1,
        seed=3,
        cutout=False,
        geometry=augment.geometry(32, pad=0),
        flip="alternating",
    )

    def epoch(number):
        (chunk,) = list(source.epoch(number))
        batch, _ = source.batches(chunk, 0)
        order = ops.convert_to_numpy(chunk[2][0])
        return ops.convert_to_numpy(batch)[np.argsort(order)]  # in the set's order

    first, second, third = epoch(1), epoch(2), epoch(3)
    np.testing.assert_array_equal(second, first[:, :, ::-1])
    np.testing.assert_array_equal(third, first)
    plain = ops.convert_to_numpy(augment.normalize(images))
    # The same float32 arithmetic on both sides: equal to the last bit.
    kept = [np.array_equal(first[i], plain[i]) for i in range(32)]
    mirrored = [np.array_equal(first[i], plain[i][:, ::-1]) for i in range(32)]
    assert all(a != b for a, b in zip(kept, mirrored)) and any(kept) and any(mirrored)


def test_tta_level_two_is_airbenchs_six_views_in_the_evaluation():
    keras.utils.set_random_seed(0)
    config = TrainConfig.from_recipe("airbench94", width=0.0625, batch_size=8, tta_level=2)
    settings = resolve(config, 8, 8)
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (8, 32, 32, 3), np.uint8)
    labels = (np.arange(8) % 10).astype(np.int32)
    steps = build.build_steps(config, settings, Splits.of_arrays((images, labels)))
    result = evaluate(steps, steps.initial_state(), EvalSet.build(images, labels, 8))
    x = ops.convert_to_numpy(augment.preprocess(images, settings.normalization))
    logits = ops.convert_to_numpy(tta.tta_logits(lambda v: steps.model(v), x, 2))
    log_p = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
    # Six float32 forward passes, compiled or not: a few ulp of the loss.
    np.testing.assert_allclose(result.mean_loss, -log_p[np.arange(8), labels].mean(), rtol=1e-5)
    assert result.accuracy == np.mean(logits.argmax(-1) == labels)


# End to end, at tiny size.


@pytest.fixture(scope="module")
def cifar10_dir(tmp_path_factory):
    # 5 x 20 = 100 training images (6 steps of 16), 20 test images.
    return write_folder(tmp_path_factory.mktemp("cifar10"), fake_cifar10(20, 20))


@pytest.mark.parametrize("recipe", AIRBENCH)
def test_each_airbench_recipe_trains_end_to_end(recipe, cifar10_dir, tmp_path):
    # 1.5 epochs of 6 steps: 9 updates, the last epoch 3 steps; the model saved and read.
    config = TrainConfig.from_recipe(
        recipe, width=0.0625, batch_size=16, epochs=1.5, tensorboard=False
    )
    out = io.StringIO()
    results = train_and_evaluate(config, cifar10_dir, tmp_path / "run", out=out)
    assert [record.epoch for record in results.epochs] == [1, 2]
    assert f"| airbench's clock {results.airbench_time_s:.1f} s |" in out.getvalue()
    rate = build.learning_rate(config, 6)
    assert results.epochs[-1].lr == pytest.approx(float(rate.lr_at(8)))
    assert results.whitening_time_s > 0 and results.epochs[-1].eval_time_s > 0
    assert results.airbench_time_s == pytest.approx(
        results.whitening_time_s + results.training_time_s + results.epochs[-1].eval_time_s
    )
    stored_results = RunResults.read(tmp_path / "run" / "results.json")
    assert stored_results.airbench_time_s == pytest.approx(results.airbench_time_s)
    assert stored_results.config.model == RECIPES[recipe].defaults["model"]
    model = keras.models.load_model(tmp_path / "run" / f"{config.model}.keras")
    images = np.zeros((2, 32, 32, 3), np.float32)
    assert model.predict(images, verbose=0).shape == (2, 10)
