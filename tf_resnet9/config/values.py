"""A setting's value written as text, and back: the one parser of the command line's tuple
flags and the sweeps' `--set NAME=V1,V2,...`, so that a value means the same in both."""

from __future__ import annotations

import typing

from tf_resnet9.config.train_config import TrainConfig
from tf_resnet9.errors import ConfigError

_TRUE, _FALSE = ("true", "yes", "1"), ("false", "no", "0")
NONE = "none"  # an optional setting left unset (the run resolves it), e.g. precision=none


def setting_type(name: str) -> tuple[type, bool]:
    """(int, float, bool, str or tuple; whether None is allowed) of a `TrainConfig` field
    annotated `T`, `T | None` or `tuple[...]`."""
    hint = typing.get_type_hints(TrainConfig)[name]
    if typing.get_origin(hint) is tuple:
        return tuple, False
    args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    return (args[0] if args else hint), bool(typing.get_args(hint))


def parse_value(name: str, text: str):
    """The value of setting `name` written as `text` (a tuple as comma-separated numbers,
    booleans true/false, an optional setting unset as "none").

    Raises:
        ConfigError: `text` is not a value of the setting's type.
    """
    kind, optional = setting_type(name)
    text = text.strip()
    if optional and text.lower() == NONE:
        return None
    if kind is tuple:
        try:
            return tuple(float(part) for part in text.split(","))
        except ValueError:
            raise ConfigError(name, text, "expected comma-separated numbers.") from None
    if kind is bool:
        if text.lower() not in _TRUE + _FALSE:
            raise ConfigError(name, text, "expected true or false.")
        return text.lower() in _TRUE
    if kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            what = "an integer" if kind is int else "a number"
            raise ConfigError(name, text, f"expected {what}.") from None
    return text  # a choice: TrainConfig checks it against the allowed values


def format_value(value) -> str:
    """A setting's value as `parse_value` reads it: a tuple comma-separated, None as none, a
    whole float as the integer it is (`--epochs 10`, a float setting, shown as given)."""
    if value is None:
        return NONE
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(format_value(v) for v in value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)  # repr: shortest exact
    return str(value)
