"""A sweep's grid: the settings it varies (`Axis`, one per `--set NAME=V1,V2,...`), those it
keeps fixed, and every combination's configs, one per seed, built and checked before
anything trains. Also the names of the run folders and the sweep's spec (sweep.json),
which a resumed sweep must match. No Keras here: the command checks its input without
starting a backend."""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import itertools
import os
import re
from collections.abc import Mapping, Sequence

from tf_resnet9.config import TrainConfig
from tf_resnet9.config.recipes import DEFAULT_RECIPE
from tf_resnet9.config.values import format_value, parse_value, setting_type
from tf_resnet9.errors import ConfigError

SPEC_FILE = "sweep.json"
SEED = "seed"  # the seeds are --seed and --seeds, never an axis
# A run folder's name keeps these characters and replaces the others with "_": letters,
# digits and . _ = , + - are safe in file names on Linux, macOS and Windows.
_UNSAFE = re.compile(r"[^A-Za-z0-9._=,+-]")
_MAX_NAME = 200  # file systems allow 255 bytes per name; longer names end in a hash


class GridError(ValueError):
    """The grid cannot be built; the message names the flag (`--set NAME=...` or
    `--NAME`), the value and what is allowed, ready for an `error:` line."""


@dataclasses.dataclass(frozen=True)
class Axis:
    """One swept setting: its `TrainConfig` name and the values it takes, in order."""

    name: str
    values: tuple


def _fields() -> dict[str, dataclasses.Field]:
    return {field.name: field for field in dataclasses.fields(TrainConfig)}


def _check_name(name: str) -> None:
    if name in (SEED, "seeds"):
        raise GridError(
            f"--set {name}: the seeds are not an axis: --seed S --seeds K trains every "
            "combination with seeds S, S+1, ..., S+K-1."
        )
    if name not in _fields():
        close = difflib.get_close_matches(name, _fields(), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise GridError(
            f"--set {name}: no such setting{hint}; the settings are the training flags "
            "that --help lists."
        )


def parse_set(text: str) -> Axis:
    """An `Axis` from `--set NAME=V1,V2,...`; a tuple setting's values (e.g. lr_milestones)
    are separated by ':' instead, each a comma list: `lr_milestones=0.5,0.75:0.3,0.6,0.9`.

    Raises:
        GridError: not NAME=VALUES, an unknown NAME, a value of the wrong type, or a value
            given twice.
    """
    name, equals, listed = text.partition("=")
    name = name.strip()
    if not equals or not name or not listed.strip():
        raise GridError(f"--set {text!r} is invalid: expected NAME=V1,V2,...")
    _check_name(name)
    separator = ":" if setting_type(name)[0] is tuple else ","
    try:
        values = tuple(parse_value(name, part) for part in listed.split(separator))
    except ConfigError as error:
        raise GridError(f"--set {error}") from None
    repeated = [v for i, v in enumerate(values) if v in values[:i]]
    if repeated:
        raise GridError(
            f"--set {name}: {format_value(repeated[0])} is given twice; each value once."
        )
    return Axis(name, values)


def _folder_value(value) -> str:
    # A tuple's commas would read as the separator between settings in a folder name.
    if isinstance(value, tuple):
        return "-".join(format_value(v) for v in value)
    return format_value(value)


def _json_value(value):
    return list(value) if isinstance(value, tuple) else value


@dataclasses.dataclass(frozen=True)
class Combination:
    """One point of the grid.

    Attributes:
        settings: The swept settings' values, in the order of the axes.
        name: Its folder in the sweep's workdir, e.g. `weight_decay=0.0001,lr_milestones=0.5-0.75`.
        configs: Its config for each seed, in the order of the seeds.
    """

    settings: Mapping[str, object]
    name: str
    configs: tuple[TrainConfig, ...]

    @property
    def label(self) -> str:
        """The settings as a person reads them, e.g. `weight_decay=0.0001, peak_lr=0.05`."""
        return ", ".join(f"{k}={format_value(v)}" for k, v in self.settings.items()) or "-"

    def run_name(self, seed: int) -> str:
        """A seed's run folder in the sweep's workdir: `<name>/seed-<seed>`."""
        return f"{self.name}/seed-{seed}"


def folder_name(settings: Mapping[str, object]) -> str:
    """A combination's folder name, file-system safe, e.g. `weight_decay=0.0001,peak_lr=0.05`
    (`all` where nothing is swept)."""
    name = ",".join(f"{k}={_folder_value(v)}" for k, v in settings.items()) or "all"
    name = _UNSAFE.sub("_", name)
    if len(name) > _MAX_NAME:  # still unique: the hash is of the whole name
        name = f"{name[: _MAX_NAME - 9]}~{hashlib.sha1(name.encode()).hexdigest()[:8]}"
    return name


@dataclasses.dataclass(frozen=True)
class Grid:
    """Every combination of the axes' values, each trained with `seeds` seeds.

    Attributes:
        fixed: The settings given once for every run (`TrainConfig` names -> values); the
            rest are the recipe's (`fixed["recipe"]`, or an axis, else the default recipe).
        axes: The swept settings, in order (the last varies fastest).
        seeds: Seeds per combination: `fixed["seed"]` (default 0), +1, ...
    """

    fixed: Mapping[str, object]
    axes: tuple[Axis, ...]
    seeds: int = 1

    def __post_init__(self):
        if not isinstance(self.seeds, int) or self.seeds < 1:
            raise GridError(f"--seeds={self.seeds!r} is invalid: expected an integer >= 1.")
        seen = set()
        for axis in self.axes:
            _check_name(axis.name)
            if axis.name in seen:
                raise GridError(f"--set {axis.name}: given twice; give all its values in one.")
            if axis.name in self.fixed:
                raise GridError(
                    f"--set {axis.name}: it is also given as --{axis.name}="
                    f"{format_value(self.fixed[axis.name])}; sweep it or fix it, not both."
                )
            seen.add(axis.name)
        for name in self.fixed:
            if name not in _fields():
                raise GridError(f"--{name}: no such setting of TrainConfig.")

    @property
    def seed_values(self) -> range:
        first = self.fixed.get(SEED, TrainConfig.seed)
        return range(first, first + self.seeds)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(axis.name for axis in self.axes)

    def combinations(self) -> list[Combination]:
        """Every combination with its configs, all built (so checked) before any trains.

        Raises:
            GridError: a combination's config is invalid; the error names the setting's
                flag and, where the swept values are to blame, the combination.
        """
        combinations = []
        for values in itertools.product(*(axis.values for axis in self.axes)):
            settings = dict(zip(self.names, values))
            configs = tuple(self._config(settings, seed) for seed in self.seed_values)
            combinations.append(Combination(settings, folder_name(settings), configs))
        return combinations

    def _config(self, settings: Mapping[str, object], seed: int) -> TrainConfig:
        try:
            return _build(self.fixed | dict(settings) | {SEED: seed})
        except ConfigError as error:
            raise self._grid_error(error, settings) from None

    def _grid_error(self, error: ConfigError, settings: Mapping[str, object]) -> GridError:
        reason = str(error).rstrip(".")
        if error.setting in settings:
            if len(settings) == 1:
                return GridError(f"--set {reason}.")
            return GridError(f"--set {reason}, in the combination {_label(settings)}.")
        try:
            _build(self.fixed)
        except ConfigError:
            return GridError(f"--{reason}.")  # wrong whatever is swept
        return GridError(f"--{reason}, with --set {_label(settings)}.")

    def spec(self, data_dir: str | os.PathLike | None) -> dict:
        """What sweep.json records: the fixed settings, the axes, the seeds, the data."""
        return {
            "fixed": {name: _json_value(value) for name, value in self.fixed.items()},
            "axes": {a.name: [_json_value(v) for v in a.values] for a in self.axes},
            "seeds": self.seeds,
            "data_dir": _data_path(data_dir),
        }


def _build(settings: Mapping[str, object]) -> TrainConfig:
    settings = dict(settings)
    return TrainConfig.from_recipe(settings.pop("recipe", DEFAULT_RECIPE), **settings)


def _label(settings: Mapping[str, object]) -> str:
    return ", ".join(f"{k}={format_value(v)}" for k, v in settings.items())


def _data_path(data_dir) -> str | None:
    return None if data_dir is None else os.path.abspath(os.path.expanduser(os.fspath(data_dir)))


def spec_differences(stored: Mapping, spec: Mapping) -> list[str]:
    """What a sweep with `spec` changes of the one whose sweep.json holds `stored`, as
    `--flag: A there, B here` lines: the fixed settings, the swept settings' names and the
    data. (Other values of the axes, or more seeds, are no difference: they add runs.)"""
    differences = []
    there, here = stored.get("fixed", {}), spec["fixed"]
    for name in sorted(set(there) | set(here)):
        if there.get(name) != here.get(name):
            differences.append(f"--{name}: {_shown(there, name)} there, {_shown(here, name)} here")
    if list(stored.get("axes", {})) != list(spec["axes"]):
        swept = [", ".join(s) or "nothing" for s in (stored.get("axes", {}), spec["axes"])]
        differences.append(f"--set: {swept[0]} there, {swept[1]} here")
    if stored.get("data_dir") != spec["data_dir"]:
        differences.append(f"--data_dir: {stored.get('data_dir')} there, {spec['data_dir']} here")
    return differences


def _shown(settings: Mapping, name: str) -> str:
    if name not in settings:
        return "not given"
    value = settings[name]
    return format_value(tuple(value) if isinstance(value, list) else value)


def grid_from_flags(
    sets: Sequence[str], fixed: Mapping[str, object], seeds: int
) -> tuple[Grid, list[Combination]]:
    """The grid of `--set` texts and fixed settings, and its combinations, all checked.

    Raises:
        GridError: anything wrong, named (`parse_set`, `Grid.combinations`).
    """
    grid = Grid(dict(fixed), tuple(parse_set(text) for text in sets), seeds)
    return grid, grid.combinations()
