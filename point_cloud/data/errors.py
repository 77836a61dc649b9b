"""The error a missing or malformed data set raises (a one-line message and exit code 2 from the CLIs)."""

from common.engine.errors import ConfigError


class DataPathError(ConfigError):
    """A data path that is missing, or a file with the wrong keys, shapes or contents; the message names it."""
