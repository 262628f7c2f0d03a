"""Flags generated from `TrainConfig`: one per setting, same name, default and choices."""

import dataclasses

import pytest
from absl import flags

from tf_resnet9.config import TrainConfig
from tf_resnet9.config.flags import config_from_flags, define_config_flags
from tf_resnet9.errors import ConfigError


@pytest.fixture
def flag_values():
    return flags.FlagValues()


def test_every_setting_is_a_flag_with_its_default(flag_values):
    names = define_config_flags(flag_values=flag_values)
    assert names == [field.name for field in dataclasses.fields(TrainConfig)]
    flag_values(["prog"])
    assert config_from_flags(names, flag_values) == TrainConfig()
    for name in names:
        assert flag_values[name].help, name  # every flag explains itself


def test_flags_set_the_config_and_overrides_win(flag_values):
    names = define_config_flags(flag_values=flag_values)
    flag_values(["prog", "--epochs=3", "--nojit", "--precision=mixed_bfloat16", "--seed=4"])
    config = config_from_flags(names, flag_values, seed=9)
    assert (config.epochs, config.jit, config.precision, config.seed) == (
        3,
        False,
        "mixed_bfloat16",
        9,
    )


def test_choices_are_enforced_when_parsing(flag_values):
    define_config_flags(flag_values=flag_values)
    with pytest.raises(flags.IllegalFlagValueError, match="init"):
        flag_values(["prog", "--init=xavier"])


def test_a_subset_of_flags(flag_values):
    names = define_config_flags(only=("epochs", "width"), flag_values=flag_values)
    assert names == ["epochs", "width"] and "batch_size" not in flag_values


def test_invalid_values_name_the_setting(flag_values):
    names = define_config_flags(flag_values=flag_values)
    flag_values(["prog", "--batch_size=0"])
    with pytest.raises(ConfigError) as error:
        config_from_flags(names, flag_values)
    assert error.value.setting == "batch_size" and error.value.value == 0
    assert str(error.value) == "batch_size=0 is invalid: expected an integer >= 1."
