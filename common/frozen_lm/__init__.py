"""The frozen-LLM block of Pang et al. (ICLR 2024): one (or a few consecutive) pretrained LLM decoder block(s),
bidirectional and without RoPE, between two trainable projections. The only implementation in the repo.

Checkpoints: Meta consolidated (``params.json`` + ``consolidated.NN.pth``), Hugging Face directories
(llama/mistral, qwen2, opt; safetensors or legacy .bin) and GGUF files (llama, qwen2) — read lazily (only the
requested layers' tensors) and strictly. CLI: ``python -m common.frozen_lm {inspect,apply} ...``.
"""

from .adapter import LLMAdapter, LLMSpec
from .config import LMConfig, meta_ffn_hidden, resolve_layers
from .errors import CheckpointError
from .fingerprint import check_fingerprints, lm_fingerprints
from .formats import inspect_checkpoint, open_checkpoint, read_lm_config
from .model import FrozenLM

__all__ = [
    "CheckpointError",
    "FrozenLM",
    "LLMAdapter",
    "LLMSpec",
    "LMConfig",
    "check_fingerprints",
    "inspect_checkpoint",
    "lm_fingerprints",
    "meta_ffn_hidden",
    "open_checkpoint",
    "read_lm_config",
    "resolve_layers",
]
