"""The one exception type the frozen-LM loader raises for bad checkpoints: a member of the engine's error family
(``LLMCheckpointError``, exit code 5 from every entry point) and a ``ValueError`` for library users."""

from common.engine.errors import LLMCheckpointError


class CheckpointError(LLMCheckpointError, ValueError):
    """A path that is not a usable LLM checkpoint: missing, unknown format or family, missing/extra/mis-shaped
    tensor, truncated or unreadable file. The message names the file and, where there is one, the tensor key."""
