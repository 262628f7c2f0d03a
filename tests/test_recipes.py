"""Recipes (`--recipe`): each a valid set of defaults, overridden by any setting given, and
a 1-epoch run of the command line for every model and recipe pair."""

import dataclasses
import json

import pytest
from absl import flags

from tests.cifar_files import fake_cifar10, write_folder
from tests.test_train_cli import run_in_process
from tf_resnet9.config import TrainConfig
from tf_resnet9.config.flags import config_from_flags, define_config_flags
from tf_resnet9.config.recipes import RECIPES
from tf_resnet9.errors import ConfigError

FIELDS = {field.name for field in dataclasses.fields(TrainConfig)}


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_recipe_sets_known_settings_and_builds_a_valid_config(name):
    recipe = RECIPES[name]
    assert set(recipe.defaults) <= FIELDS - {"recipe"}
    assert recipe.source and recipe.summary and recipe.note
    assert all(0 < accuracy < 1 for accuracy in recipe.reported.values())
    config = TrainConfig.from_recipe(name)  # validated in __post_init__
    assert config.recipe == name
    for key, value in recipe.defaults.items():
        if not callable(value):
            assert getattr(config, key) == value, key


def test_page24_is_the_default_config():
    assert TrainConfig.from_recipe("page24") == TrainConfig()
    assert TrainConfig().recipe == "page24"


def test_settings_given_override_the_recipe_and_derived_defaults_follow_them():
    he = TrainConfig.from_recipe("he2016")
    assert (he.model, he.optimizer, he.batch_size, he.peak_lr) == ("resnet20", "sgd", 128, 0.1)
    assert (he.weight_decay, he.lr_schedule, he.lr_milestones) == (1e-4, "multi_step", (0.5, 0.75))
    assert (he.init, he.pad, he.cutout, he.logit_scale) == ("he_normal", "zero", False, 1.0)
    # 64k iterations of 128: 164 epochs of 50k images, 182 of 45k.
    assert he.epochs == 164
    assert TrainConfig.from_recipe("he2016", val_split=5000).epochs == 182
    assert TrainConfig.from_recipe("he2016", val_split=5000, epochs=7).epochs == 7
    changed = TrainConfig.from_recipe("he2016", model="resnet56", batch_size=64)
    assert (changed.model, changed.batch_size, changed.peak_lr) == ("resnet56", 64, 0.1)


def test_unknown_recipe_is_a_config_error():
    with pytest.raises(ConfigError, match="recipe='he2015' is invalid: expected one of page24"):
        TrainConfig.from_recipe("he2015")


@pytest.fixture
def flag_values():
    values = flags.FlagValues()
    return values, define_config_flags(flag_values=values)


def test_flags_given_override_the_recipe_even_at_page24_values(flag_values):
    values, names = flag_values
    values(["prog", "--recipe=he2016", "--batch_size=512", "--lr_milestones=0.3,0.6"])
    config = config_from_flags(names, values)
    # --batch_size 512 is page24's default, given explicitly: it still wins over he2016's 128.
    assert (config.recipe, config.batch_size, config.lr_milestones) == ("he2016", 512, (0.3, 0.6))
    assert (config.peak_lr, config.model) == (0.1, "resnet20")  # not given: the recipe's


def test_bad_milestones_name_the_flag(flag_values):
    values, names = flag_values
    values(["prog", "--lr_milestones=half,0.75"])
    with pytest.raises(ConfigError, match="lr_milestones='half,0.75' is invalid"):
        config_from_flags(names, values)
    values(["prog", "--lr_milestones=0.75,0.5"])
    with pytest.raises(ConfigError, match="increasing fractions"):
        config_from_flags(names, values)


def test_val_loss_needs_a_validation_set():
    with pytest.raises(ConfigError, match="plateau_monitor='val_loss' is invalid"):
        TrainConfig.from_recipe("adam_plateau", plateau_monitor="val_loss")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    # 5 x 24 = 120 training images, 20 test images.
    return write_folder(tmp_path_factory.mktemp("cifar"), fake_cifar10(train_per_batch=24, test=20))


# Narrow, 3 steps, no XLA (its compile is the cost here; the first CLI test compiles with
# it): what is tested is that a recipe runs from the command line and records what it
# resolved. he2016's parts are tested one by one (multi_step, MomentumSGD, zero padding,
# cifar_resnet at every depth; the suite's time budget leaves no room for its own run);
# page10 runs end to end in tests/test_fast_recipe.py.
PAIRS = [
    ("resnet18", "adam_plateau", ["--val_split", "40", "--plateau_monitor", "val_loss"]),
]


@pytest.mark.parametrize("model, recipe, extra", PAIRS, ids=[f"{m}-{r}" for m, r, _ in PAIRS])
def test_one_epoch_of_each_model_and_recipe_from_the_command_line(
    capsys, data_dir, tmp_path, model, recipe, extra
):
    args = ["--data_dir", data_dir, "--workdir", tmp_path, "--model", model, "--recipe", recipe]
    args += ["--epochs", "1", "--width", "0.125", "--batch_size", "32", "--nojit"]
    args += ["--notensorboard", *extra]
    status, out, err = run_in_process(capsys, *args)
    assert status == 0, err
    assert f"{model} by the {recipe} recipe" in out
    results = json.loads((tmp_path / "results.json").read_text())
    # What the run must have used, written out here from the recipe's source (a ResNet-18
    # study's Adam settings) and the flags given, not taken from the package's recipe table.
    expected = {
        "model": model,
        "optimizer": "adam",
        "peak_lr": 1e-3,
        "weight_decay": 1e-5,
        "lr_schedule": "plateau",
        "lr_decay": 0.1,
        "min_lr": 1e-6,
        "plateau_patience": 3,
        "plateau_monitor": "val_loss",
        "init": "torch",
        "logit_scale": 1.0,
        "pad": "zero",
        "cutout": False,
        "epochs": 1,
        "width": 0.125,
        "batch_size": 32,
        "jit": False,
        "tensorboard": False,
        "val_split": 40,
    }
    assert {k: results["config"][k] for k in expected} == expected
    assert results["recipe"] == {"name": recipe, "source": RECIPES[recipe].source}
    assert (tmp_path / f"{model}.keras").is_file()
    validation = 40
    assert results["data"]["validation_images"] == validation
    assert results["data"]["train_images"] == 120 - validation
    assert "val_acc" in results["epochs"][0] and "val loss" in out
