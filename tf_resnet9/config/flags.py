"""Command-line flags generated from `TrainConfig`, so that every program takes a setting
under the same name, with the same default and help, written once (in
`tf_resnet9.config.train_config`).

Unset optional settings stay None; the run resolves them (`tf_resnet9.config.settings`). A
flag's default is the default recipe's; with `--recipe`, the flags not given take that
recipe's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from absl import flags

from tf_resnet9.config.recipes import DEFAULT_RECIPE
from tf_resnet9.config.train_config import TrainConfig
from tf_resnet9.config.values import parse_value, setting_type

_DEFINE = {
    int: flags.DEFINE_integer,
    float: flags.DEFINE_float,
    bool: flags.DEFINE_boolean,
    str: flags.DEFINE_string,
}


def define_config_flags(
    only: Iterable[str] | None = None,
    flag_values: flags.FlagValues = flags.FLAGS,
    exclude: Iterable[str] = (),
) -> list[str]:
    """Defines a flag per `TrainConfig` field (or per field in `only`), but those in
    `exclude` (a command's own flag of the same name).

    Returns:
        The names defined.
    """
    names = []
    for field in dataclasses.fields(TrainConfig):
        if (only is not None and field.name not in only) or field.name in exclude:
            continue
        help_text, choices = field.metadata["help"], field.metadata["choices"]
        if choices is not None:
            flags.DEFINE_enum(
                field.name, field.default, choices, help_text, flag_values=flag_values
            )
        elif setting_type(field.name)[0] is tuple:  # numbers, comma-separated
            default = ",".join(str(v) for v in field.default)
            flags.DEFINE_list(field.name, default, help_text, flag_values=flag_values)
        else:
            define = _DEFINE[setting_type(field.name)[0]]
            define(field.name, field.default, help_text, flag_values=flag_values)
        names.append(field.name)
    return names


def config_from_flags(
    names: Iterable[str], flag_values: flags.FlagValues = flags.FLAGS, **overrides
) -> TrainConfig:
    """The `TrainConfig` of the parsed flags `names`, with `overrides` on top: the recipe's
    (`--recipe`, else the default recipe's) defaults, then the flags given (on the command
    line or set), then `overrides`.

    Raises:
        ConfigError: a value is invalid; the error names the setting, which is the flag.
    """
    settings = given_settings(names, flag_values) | overrides
    return TrainConfig.from_recipe(settings.pop("recipe", DEFAULT_RECIPE), **settings)


def given_settings(names: Iterable[str], flag_values: flags.FlagValues = flags.FLAGS) -> dict:
    """{name: value} of the flags `names` given on the command line (or set), as the
    settings take them (a list flag's items as one tuple).

    Raises:
        ConfigError: a tuple flag holds something that is not a number.
    """
    given = {}
    for name in names:
        if flag_values[name].using_default_value:
            continue
        value = flag_values[name].value
        if setting_type(name)[0] is tuple:
            value = parse_value(name, ",".join(value))
        given[name] = value
    return given
