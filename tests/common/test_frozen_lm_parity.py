"""Our block == transformers' own decoder layer run bidirectionally with RoPE neutralised (cos=1, sin=0)."""

from __future__ import annotations

import pytest
import torch

from common.frozen_lm import FrozenLM

CHECKPOINTS = ["hf_llama_mha", "hf_from_meta", "hf_qwen2", "hf_opt", "hf_opt350m"]


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def hf_decoder_layers(model):
    return model.model.decoder.layers if model.config.model_type == "opt" else model.model.layers


def hf_blocks_forward(model, layer_ids, x: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
    """transformers' decoder layers on ``x``: additive all-zero (non-causal) mask, -inf at padded keys."""
    batch, n = x.shape[:2]
    mask = torch.zeros(batch, 1, n, n)
    if padding_mask is not None:
        mask = mask.masked_fill(padding_mask[:, None, None, :], torch.finfo(mask.dtype).min)
    h = x
    for i in layer_ids:
        layer = hf_decoder_layers(model)[i]
        if model.config.model_type == "opt":
            h = layer(h, attention_mask=mask)
        else:
            head_dim = model.config.hidden_size // model.config.num_attention_heads
            rope_off = (torch.ones(batch, n, head_dim), torch.zeros(batch, n, head_dim))
            h = layer(h, attention_mask=mask, position_embeddings=rope_off)
        h = h[0] if isinstance(h, tuple) else h
    return h


@pytest.mark.parametrize("name", CHECKPOINTS)
def test_last_block_matches_transformers(name, request):
    ckpt = request.getfixturevalue(name)
    lm = FrozenLM.from_checkpoint(ckpt.path, layers=[-1], final_norm="none")
    x = torch.randn(2, 11, lm.dim)
    with torch.no_grad():
        ours, ref = lm(x), hf_blocks_forward(ckpt.model, [len(hf_decoder_layers(ckpt.model)) - 1], x)
    assert rel_err(ours, ref) <= 1e-5
    assert rel_err(ours, x) > 0.1  # the block really transforms its input


@pytest.mark.parametrize("name", CHECKPOINTS)
def test_padding_mask_matches_transformers_and_unpadded_run(name, request):
    ckpt = request.getfixturevalue(name)
    lm = FrozenLM.from_checkpoint(ckpt.path, layers=[0], final_norm="none")
    x = torch.randn(2, 9, lm.dim)
    padding = torch.zeros(2, 9, dtype=torch.bool)
    padding[0, 6:] = True  # sequence 0 has 6 real tokens, sequence 1 has 9
    with torch.no_grad():
        ours = lm(x, padding)
        ref = hf_blocks_forward(ckpt.model, [0], x, padding)
        alone = lm(x[:1, :6])
    keep = ~padding
    assert rel_err(ours[keep], ref[keep]) <= 1e-5
    assert rel_err(ours[0, :6], alone[0]) <= 1e-5
    assert rel_err(lm(x[:1]).detach()[0, :6], alone[0]) > 1e-3  # without the mask the padded tokens do matter


def test_two_blocks_with_pretrained_final_norm_llama(hf_from_meta):
    lm = FrozenLM.from_checkpoint(hf_from_meta.path, layers=(-2, -1), final_norm="pretrained")
    assert lm.layer_indices == [1, 2]
    x = torch.randn(2, 7, lm.dim)
    with torch.no_grad():
        ref = hf_from_meta.model.model.norm(hf_blocks_forward(hf_from_meta.model, [1, 2], x))
        ours = lm(x)
    assert rel_err(ours, ref) <= 1e-5


def test_two_blocks_with_pretrained_final_norm_opt(hf_opt):
    lm = FrozenLM.from_checkpoint(hf_opt.path, layers=(0, 1), final_norm="pretrained")
    x = torch.randn(2, 7, lm.dim)
    with torch.no_grad():
        ref = hf_opt.model.model.decoder.final_layer_norm(hf_blocks_forward(hf_opt.model, [0, 1], x))
        ours = lm(x)
    assert rel_err(ours, ref) <= 1e-5


def test_unit_final_norm_is_weight_free_rms_norm(hf_from_meta):
    unit = FrozenLM.from_checkpoint(hf_from_meta.path, layers=-1, final_norm="unit")
    none = FrozenLM.from_checkpoint(hf_from_meta.path, layers=-1, final_norm="none")
    assert list(unit.final_norm.parameters()) == []
    x = torch.randn(1, 5, unit.dim)
    with torch.no_grad():
        h = none(x)
        expected = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + 1e-5)
        assert rel_err(unit(x), expected) <= 1e-6
