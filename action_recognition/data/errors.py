"""The error a missing or malformed data set raises (a one-line message and exit code 2 from the CLIs)."""

from common.engine.errors import ConfigError


class DataPathError(ConfigError):
    """A missing data folder or annotation file, or a malformed annotation line; the message names it."""
