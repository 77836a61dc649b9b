"""Training infrastructure shared by every task: config, distributed setup, optimizer, checkpoints, loop, logging.

    from common.engine import checkpoint, config, distributed, loop, optim
    from common.engine import logging as runlog

See ``loop`` for the train.py skeleton.
"""

from . import checkpoint, config, distributed, ema, errors, logging, loop, optim, rng
from .errors import CheckpointError, ConfigError, DataPathError, EngineError, LLMCheckpointError, TrainingDiverged

__all__ = [
    "checkpoint", "config", "distributed", "ema", "errors", "logging", "loop", "optim", "rng",
    "CheckpointError", "ConfigError", "DataPathError", "EngineError", "LLMCheckpointError", "TrainingDiverged",
]
