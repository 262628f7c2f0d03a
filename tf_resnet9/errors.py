"""The errors a run reports to its user as one `error:` line: each names what is wrong (the
setting, the file, the epoch) and, where there is one, the way out. Nothing heavy is
imported here: the commands catch these before Keras starts."""

from __future__ import annotations


class ConfigError(ValueError):
    """A training setting is invalid.

    Attributes:
        setting: The setting's name (the same as its command-line flag).
        value: The value given.
        reason: What is wrong, or what is allowed.
    """

    def __init__(self, setting: str, value, reason: str):
        super().__init__(f"{setting}={value!r} is invalid: {reason}")
        self.setting, self.value, self.reason = setting, value, reason


class DatasetError(Exception):
    """A data set could not be found or read; the message says where and how to fix it."""


class CheckpointError(Exception):
    """A checkpoint is missing, unreadable, or does not fit the run; the message names it."""


class TrainingDiverged(RuntimeError):
    """A loss or metric became NaN or infinite; the message says at which epoch (and step)."""


class OutputError(OSError):
    """A file of the run could not be written (a full disk, a folder that is read-only or
    gone); the message names the file and the cause. What was written before stays.

    Attributes:
        path: The file (or folder) not written.
        cause: Why, in a few words.
    """

    def __init__(self, path, cause: str):
        super().__init__(f"{path} not written: {cause}")
        self.path, self.cause = path, cause


class MissingPackage(ImportError):
    """A package the run will need is not installed, or does not import; the message says
    what needs it and how to install it (or to switch that part off)."""


# What the commands turn into one `error:` line and exit status 1.
USER_ERRORS = (
    ConfigError,
    DatasetError,
    CheckpointError,
    TrainingDiverged,
    MissingPackage,
    OutputError,
)
