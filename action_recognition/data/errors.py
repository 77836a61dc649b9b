"""The error a missing or malformed data set raises: the error family's ``DataPathError`` (one line, exit code 4;
``common.engine.errors``)."""

from common.engine.errors import DataPathError

__all__ = ["DataPathError"]
