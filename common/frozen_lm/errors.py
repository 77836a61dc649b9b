"""The one exception type the frozen-LM loader raises for bad checkpoints."""


class CheckpointError(ValueError):
    """A path that is not a usable LLM checkpoint: missing, unknown format or family, missing/extra/mis-shaped
    tensor, truncated or unreadable file. The message names the file and, where there is one, the tensor key."""
