"""The frozen-LLM block of Pang et al. (ICLR 2024): one (or a few consecutive) pretrained LLM decoder block(s),
bidirectional and without RoPE, between two trainable projections. The only implementation in the repo.

Checkpoints: Meta consolidated (``params.json`` + ``consolidated.NN.pth``), Hugging Face directories
(llama/mistral, qwen2, opt; safetensors or legacy .bin) and GGUF files (llama, qwen2) — read lazily (only the
requested layers' tensors) and strictly. CLI: ``python -m common.frozen_lm {inspect,apply} ...``.
"""

from .adapter import LLMAdapter, LLMSpec, build_adapter
from .config import LMConfig, meta_ffn_hidden, resolve_layers
from .errors import CheckpointError
from .fingerprint import check_fingerprints, lm_fingerprints
from .formats import inspect_checkpoint, open_checkpoint, read_lm_config
from .lm4ve import LM4VELlama, check_lm4ve_llama, lm4ve_llama_matches, load_lm4ve_llama, split_lm4ve_state_dict
from .model import FrozenLM
from .options import add_llm_args

__all__ = [
    "CheckpointError",
    "FrozenLM",
    "LLMAdapter",
    "LLMSpec",
    "LM4VELlama",
    "LMConfig",
    "add_llm_args",
    "build_adapter",
    "check_fingerprints",
    "check_lm4ve_llama",
    "inspect_checkpoint",
    "lm4ve_llama_matches",
    "lm_fingerprints",
    "load_lm4ve_llama",
    "meta_ffn_hidden",
    "open_checkpoint",
    "read_lm_config",
    "resolve_layers",
    "split_lm4ve_state_dict",
]
