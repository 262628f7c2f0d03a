"""Command-line flags generated from `TrainConfig`, so that every program takes a setting
under the same name, with the same default and help, written once (in
`tf_resnet9.config.train_config`).

Unset optional settings stay None; the run resolves them (`tf_resnet9.config.settings`). A
flag's default is the default recipe's; with `--recipe`, the flags not given take that
recipe's.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterable

from absl import flags

from tf_resnet9.config.recipes import DEFAULT_RECIPE
from tf_resnet9.config.train_config import TrainConfig
from tf_resnet9.errors import ConfigError

_DEFINE = {
    int: flags.DEFINE_integer,
    float: flags.DEFINE_float,
    bool: flags.DEFINE_boolean,
    str: flags.DEFINE_string,
}


def _field_type(field: dataclasses.Field):
    """int, float, bool, str or tuple of a field annotated `T`, `T | None` or `tuple[...]`."""
    hint = typing.get_type_hints(TrainConfig)[field.name]
    if typing.get_origin(hint) is tuple:
        return tuple
    args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    return args[0] if args else hint


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
        elif _field_type(field) is tuple:  # numbers, comma-separated
            default = ",".join(str(v) for v in field.default)
            flags.DEFINE_list(field.name, default, help_text, flag_values=flag_values)
        else:
            define = _DEFINE[_field_type(field)]
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
    given = {
        name: _value(name, flag_values[name].value)
        for name in names
        if not flag_values[name].using_default_value
    }
    settings = given | overrides
    return TrainConfig.from_recipe(settings.pop("recipe", DEFAULT_RECIPE), **settings)


def _value(name: str, value):
    field = {f.name: f for f in dataclasses.fields(TrainConfig)}[name]
    if _field_type(field) is not tuple:
        return value
    try:
        return tuple(float(v) for v in value)
    except ValueError:
        raise ConfigError(name, ",".join(value), "expected comma-separated numbers.") from None
