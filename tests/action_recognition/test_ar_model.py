"""VideoViT: VideoMAE's shapes, parameter counts, attention with q/v biases, sinusoid table, head init, layer ids,
and the LLM graft after the blocks and before the pooling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from ar_fixtures import TINY_MODEL

from action_recognition.models import QVBiasAttention, VideoViT, build_model, sinusoid_table


def tiny(**overrides) -> VideoViT:
    return build_model({**TINY_MODEL, "nb_classes": 5, **overrides})


def videomae_sinusoid(n_position, d_hid):
    """VideoMAE modeling_finetune.get_sinusoid_encoding_table (numpy)."""
    table = np.array([[pos / np.power(10000, 2 * (j // 2) / d_hid) for j in range(d_hid)] for pos in range(n_position)])
    table[:, 0::2] = np.sin(table[:, 0::2])
    table[:, 1::2] = np.cos(table[:, 1::2])
    return torch.tensor(table, dtype=torch.float).unsqueeze(0)


def test_videomae_parameter_counts_and_token_count():
    # per block: 2 LN + q/v bias + qkv + proj + fc1 + fc2; embedding Conv3d 3 x 2 x 16 x 16; fc_norm; 174-way head
    for name, dim in (("vit_small_patch16_224", 384), ("vit_base_patch16_224", 768)):
        block = 4 * dim + 2 * dim + 3 * dim * dim + dim * dim + dim + 2 * (4 * dim * dim) + 4 * dim + dim
        expected = (dim * 3 * 2 * 16 * 16 + dim) + 12 * block + 2 * dim + (dim * 174 + 174)
        with torch.device("meta"):
            model = build_model({"model": name})
        assert sum(p.numel() for p in model.parameters()) == expected
        assert model.patch_embed.num_patches == 1568 and model.pos_embed.shape == (1, 1568, dim)
    assert expected == 86_361_006


def test_sinusoid_table_equals_videomae_and_is_never_saved():
    assert torch.allclose(sinusoid_table(64, 48), videomae_sinusoid(64, 48), atol=1e-6)
    model = tiny()
    assert torch.equal(model.pos_embed, sinusoid_table(64, 48))
    assert not any("pos_embed" in k for k in model.state_dict())
    assert "pos_embed" not in dict(model.named_parameters())


def test_attention_has_query_and_value_biases_and_a_fixed_zero_key_bias():
    torch.manual_seed(0)
    attn = QVBiasAttention(48, num_heads=3, qkv_bias=True)
    with torch.no_grad():
        attn.q_bias.normal_()
        attn.v_bias.normal_()
    assert sorted(attn.state_dict()) == ["proj.bias", "proj.weight", "q_bias", "qkv.weight", "v_bias"]
    assert attn.qkv.bias is None and not attn.k_bias.requires_grad
    x = torch.randn(2, 10, 48)
    # VideoMAE Attention.forward
    bias = torch.cat((attn.q_bias, torch.zeros_like(attn.v_bias), attn.v_bias))
    q, k, v = F.linear(x, attn.qkv.weight, bias).reshape(2, 10, 3, 3, 16).permute(2, 0, 3, 1, 4)
    weights = ((q * 16 ** -0.5) @ k.transpose(-2, -1)).softmax(-1)
    expected = attn.proj((weights @ v).transpose(1, 2).reshape(2, 10, 48))
    assert torch.allclose(attn(x), expected, atol=1e-5)


def test_head_init_scale_and_forward_shapes():
    torch.manual_seed(0)
    model = tiny()
    assert model.head.weight.abs().max() < 0.002 * 2 and torch.all(model.head.bias == 0)
    assert float(model.head.weight.detach().std()) == pytest.approx(0.02 * 0.001, rel=0.3)
    assert model(torch.randn(2, 3, 8, 32, 32)).shape == (2, 5)
    with pytest.raises(ValueError, match=r"\(B, C, 8, 32, 32\)"):
        model(torch.randn(2, 3, 6, 32, 32))


def test_layer_ids_are_videomaes():
    model = tiny()
    ids = {name: model.layer_id(name) for name, _ in model.named_parameters()}
    assert ids["patch_embed.proj.weight"] == 0 and model.layer_id("pos_embed") == 0
    assert ids["blocks.0.attn.q_bias"] == 1 and ids["blocks.1.mlp.fc2.bias"] == 2
    assert ids["fc_norm.weight"] == ids["head.weight"] == 3 == model.num_layers + 1


def test_llm_block_runs_after_the_blocks_and_before_the_pooling(tiny_llama_dir):
    model = tiny(llm_variant="frozen", llm_path=str(tiny_llama_dir), llm_layers=[-1], llm_grad_checkpointing=True)
    assert model.llm.lm.layer_indices == [2] and model.llm.lm.grad_checkpointing
    calls = []
    model.blocks[-1].register_forward_hook(lambda m, i, o: calls.append(("block", tuple(o.shape))))
    model.llm.register_forward_hook(lambda m, i, o: calls.append(("llm", tuple(i[0].shape), tuple(o.shape))))
    model.fc_norm.register_forward_hook(lambda m, i, o: calls.append(("fc_norm", tuple(i[0].shape))))
    model.train()
    model(torch.randn(2, 3, 8, 32, 32)).sum().backward()
    assert calls == [("block", (2, 64, 48)), ("llm", (2, 64, 48), (2, 64, 48)), ("fc_norm", (2, 48))]
    assert model.llm.in_proj.weight.grad is not None and model.blocks[0].attn.q_bias.grad is not None
    frozen = [p for p in model.llm.lm.parameters()]
    assert frozen and not any(p.requires_grad for p in frozen)
    assert model.layer_id("llm.in_proj.weight") == model.num_layers + 1
    assert not any(k.startswith("llm.lm.") for k in model.state_dict())


def test_block_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    plain = tiny(drop_path=0.0)
    ckpt = tiny(drop_path=0.0, use_checkpoint=True)
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 8, 32, 32)
    for model in (plain, ckpt):
        model.train()
        model(x).square().sum().backward()
    assert torch.allclose(plain.blocks[0].attn.qkv.weight.grad, ckpt.blocks[0].attn.qkv.weight.grad, atol=1e-6)


def test_bad_model_settings():
    with pytest.raises(ValueError, match="unknown model"):
        build_model({"model": "vit_huge"})
    with pytest.raises(ValueError, match="needs llm_path"):
        tiny(llm_variant="frozen")
    with pytest.raises(ValueError, match="not a multiple"):
        tiny(num_frames=7)
    assert tiny(llm_variant="none").llm is None and isinstance(tiny(nb_classes=0).head, torch.nn.Identity)
