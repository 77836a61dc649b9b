"""The error family every task's train and evaluate entry points share: one line on stderr, one exit code per kind.

| exit code | error | meaning |
|---|---|---|
| 1 | ``CheckpointError`` | a run checkpoint that cannot be read, written or does not fit the model |
| 2 | ``ConfigError`` | a preset or command-line value that cannot be used |
| 3 | ``TrainingDiverged`` | the loss became NaN/inf; the last good checkpoint was kept |
| 4 | ``DataPathError`` | a data path that is missing, empty or not in the expected on-disk format |
| 5 | ``LLMCheckpointError`` | ``--llm-path`` is not a usable LLM checkpoint (missing, unknown format, bad tensor) |
"""


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


class DataPathError(EngineError):
    """A data path that is missing, empty, or not laid out in the format the task reads."""

    exit_code = 4


class LLMCheckpointError(CheckpointError):
    """``--llm-path`` (or an LLM block inside a checkpoint) that cannot be used."""

    exit_code = 5
