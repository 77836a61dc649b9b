"""Parameter counts equal upstream's: ViT-S 22.05M; a LLaMA-7B block adds 202.4M frozen and 3.15M trainable.

The LLaMA-7B-shaped block is built on the meta device from Meta's params.json (as in vit_llama.py's
``llama_default_config``): no weights are allocated.
"""

from __future__ import annotations

import json

import pytest
import timm
import torch

import image_cls.models  # noqa: F401
from common.frozen_lm import FrozenLM, LLMAdapter, read_lm_config

LLAMA_7B_PARAMS = {"dim": 4096, "multiple_of": 256, "n_heads": 32, "n_layers": 32, "norm_eps": 1e-6, "vocab_size": -1}
LLAMA_7B_BLOCK = 4 * 4096**2 + 3 * 4096 * 11008 + 2 * 4096  # wq wk wv wo, w1 w2 w3, attention_norm + ffn_norm
VIT_S = 22_050_664  # timm / DeiT deit_small_patch16_224 with 1000 classes


def count(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, frozen) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    return trainable, frozen


@pytest.fixture(scope="module")
def llama_7b_config(tmp_path_factory):
    directory = tmp_path_factory.mktemp("llama7b_params")
    (directory / "params.json").write_text(json.dumps(LLAMA_7B_PARAMS))
    cfg = read_lm_config(directory)
    assert (cfg.dim, cfg.n_heads, cfg.head_dim, cfg.ffn_hidden) == (4096, 32, 128, 11008)
    return cfg


def block_params(cfg) -> int:
    """One LLaMA block from its config: wq wk wv wo (GQA-aware), w1 w2 w3, attention_norm + ffn_norm."""
    kv = cfg.n_kv_heads * cfg.head_dim
    return 2 * cfg.dim * cfg.dim + 2 * cfg.dim * kv + 3 * cfg.dim * cfg.ffn_hidden + 2 * cfg.dim


def test_vit_s_baseline_count():
    """Without an LLM the model is timm's DeiT-S: same count, and the figure DeiT / the paper report (22.05M)."""
    model = timm.create_model("vit_small_patch16_224_llm", num_classes=1000, device="meta")
    reference = timm.create_model("deit_small_patch16_224", num_classes=1000, device="meta")
    assert count(model) == (sum(p.numel() for p in reference.parameters()), 0) == (VIT_S, 0)


@pytest.mark.parametrize("final_norm", ["unit", "none"])
def test_vit_s_llama_counts(llama_7b_config, final_norm):
    """Frozen: one LLaMA-7B block (the unit final norm has no parameter, as upstream never loads it); trainable:
    DeiT-S + the two bias-free projections 384 -> 4096 -> 384 (the paper's 202.4M / +3.15M)."""
    lm = FrozenLM.from_config(llama_7b_config, n_blocks=1, final_norm=final_norm, device="meta")
    model = timm.create_model("vit_small_patch16_224_llm", num_classes=1000, device="meta",
                              llm=LLMAdapter(384, lm, mode="replace"))
    trainable, frozen = count(model)
    assert frozen == block_params(llama_7b_config) == LLAMA_7B_BLOCK
    assert trainable - VIT_S == 2 * 384 * llama_7b_config.dim
    assert (round(frozen / 1e6, 1), round((trainable - VIT_S) / 1e6, 2)) == (202.4, 3.15)


def test_mapper_counts_per_width_and_two_blocks(llama_7b_config):
    """Mappers add 1.57M (ViT-T), 3.15M (ViT-S), 6.29M (ViT-B); two blocks double the frozen count."""
    lm2 = FrozenLM.from_config(llama_7b_config, n_blocks=2, device="meta")
    for width, millions in ((192, 1.57), (384, 3.15), (768, 6.29)):
        adapter = LLMAdapter(width, lm2)
        trainable, frozen = count(adapter)
        assert round(trainable / 1e6, 2) == millions and frozen == 2 * LLAMA_7B_BLOCK


def test_mlp_control_has_the_same_trainable_projections(llama_7b_config):
    """ViT-S-MLP: the same 384->4096->384 projections (+ the LayerNorm's 2*4096), nothing frozen."""
    adapter = LLMAdapter(384, None, mlp_hidden=llama_7b_config.dim)
    assert count(adapter) == (3_145_728 + 2 * 4096, 0)
