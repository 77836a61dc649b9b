"""Exceptions the engine raises for conditions a user must act on (not programming errors)."""


class EngineError(Exception):
    """Base class: `loop.run_cli` turns these into a one-line message and a non-zero exit code."""

    exit_code = 1


class ConfigError(EngineError):
    """A preset or command-line value that cannot be used."""

    exit_code = 2


class CheckpointError(EngineError):
    """A checkpoint that cannot be written or does not match the model it is loaded into."""

    exit_code = 1


class TrainingDiverged(EngineError):
    """The loss became NaN or infinite; the last good checkpoint was left untouched."""

    exit_code = 3
