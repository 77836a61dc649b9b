"""FrozenLM behaviour: freezing and state dicts, gradients, dtypes, checkpointing, hooks, random init."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from common.frozen_lm import FrozenLM, LMConfig

TINY = LMConfig("llama", dim=32, n_layers=4, n_heads=4, n_kv_heads=2, head_dim=8, ffn_hidden=64, norm_eps=1e-5)
LLAMA_7B = LMConfig("llama", dim=4096, n_layers=32, n_heads=32, n_kv_heads=32, head_dim=128, ffn_hidden=11008,
                    norm_eps=1e-6)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def test_frozen_weights_are_out_of_state_dict_and_load_strictly(meta_dir):
    lm = FrozenLM.from_checkpoint(meta_dir, layers=(-2, -1))
    assert lm.state_dict() == {}
    assert all(not p.requires_grad for p in lm.parameters())
    host = nn.Sequential(nn.Linear(8, 64), lm)
    assert set(host.state_dict()) == {"0.weight", "0.bias"}
    before = {k: v.clone() for k, v in lm.named_parameters()}
    host.load_state_dict({"0.weight": torch.zeros(64, 8), "0.bias": torch.zeros(64)}, strict=True)
    assert all(torch.equal(before[k], v) for k, v in lm.named_parameters())
    with pytest.raises(RuntimeError, match="Missing key"):
        host.load_state_dict({"0.weight": torch.zeros(64, 8)}, strict=True)  # trainable keys are still checked


def test_trainable_weights_are_in_state_dict(meta_dir):
    lm = FrozenLM.from_checkpoint(meta_dir, layers=[-1], trainable=True)
    sd = lm.state_dict()
    assert "blocks.0.attn.qkv.weight" in sd and all(p.requires_grad for p in lm.parameters())
    other = FrozenLM.from_config(lm.config, trainable=True)
    with pytest.raises(RuntimeError):
        other.load_state_dict({}, strict=True)
    other.load_state_dict(sd, strict=True)
    assert torch.equal(other.blocks[0].ffn.down.weight, lm.blocks[0].ffn.down.weight)
    lm.trainable = False
    assert lm.state_dict() == {} and not any(p.requires_grad for p in lm.parameters())


def test_gradient_reaches_input_through_frozen_block(meta_dir):
    lm = FrozenLM.from_checkpoint(meta_dir)
    x = torch.randn(2, 6, 64, requires_grad=True)
    lm(x).square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in lm.parameters())


def test_activation_checkpointing_gives_same_values_and_recomputes():
    lm = FrozenLM.from_config(TINY, n_blocks=2, seed=3)
    calls = []
    lm.blocks[0].attn.register_forward_hook(lambda *a: calls.append(1))
    x = torch.randn(2, 5, 32, requires_grad=True)
    lm(x).sum().backward()
    plain = x.grad.clone()
    x.grad = None
    lm.grad_checkpointing = True
    calls.clear()
    lm(x).sum().backward()
    assert len(calls) == 2  # the forward ran again during backward
    assert torch.allclose(x.grad, plain, atol=1e-6)


def test_bf16_storage_is_close_to_fp32_and_keeps_input_dtype(meta_dir):
    fp32 = FrozenLM.from_checkpoint(meta_dir, dtype=torch.float32)
    bf16 = FrozenLM.from_checkpoint(meta_dir, dtype="bfloat16")
    assert {p.dtype for p in bf16.parameters()} == {torch.bfloat16}
    x = torch.randn(2, 10, 64)
    with torch.no_grad():
        out = bf16(x)
        assert out.dtype == torch.float32
        assert rel_err(out, fp32(x)) < 2e-2
        assert bf16(x.bfloat16()).dtype == torch.bfloat16


def test_generic_host_init_does_not_touch_loaded_weights(meta_dir):
    lm = FrozenLM.from_checkpoint(meta_dir, final_norm="pretrained")
    before = {k: v.clone() for k, v in lm.named_parameters()}

    def timm_like_init(m):  # what e.g. timm's ViT init_weights does to every submodule
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
        elif isinstance(m, (nn.LayerNorm, nn.RMSNorm)):
            nn.init.zeros_(m.weight)

    lm.apply(timm_like_init)
    assert all(torch.equal(before[k], v) for k, v in lm.named_parameters())


def test_hooks_see_attention_and_ffn_outputs_before_residual():
    lm = FrozenLM.from_config(TINY, final_norm="none", seed=1)
    seen = {}
    block = lm.blocks[0]
    block.attn.register_forward_hook(lambda m, i, o: seen.__setitem__("attn", o))
    block.ffn.register_forward_hook(lambda m, i, o: seen.__setitem__("ffn", o))
    x = torch.randn(2, 5, 32)
    with torch.no_grad():
        out = lm(x)
    assert torch.allclose(out, x + seen["attn"] + seen["ffn"], atol=1e-5)


def test_fully_padded_sequence_gives_no_nan():
    lm = FrozenLM.from_config(TINY, seed=0)
    padding = torch.zeros(2, 5, dtype=torch.bool)
    padding[1] = True
    with torch.no_grad():
        out = lm(torch.randn(2, 5, 32), padding)
    assert torch.isfinite(out).all()


def test_random_init_is_seeded_and_shaped_like_the_source_models():
    a, b = FrozenLM.from_config(TINY, seed=7), FrozenLM.from_config(TINY, seed=7, dtype="bfloat16")
    c = FrozenLM.from_config(TINY, seed=8)
    wa = a.blocks[0].ffn.gate_up.weight
    assert torch.equal(wa.bfloat16(), b.blocks[0].ffn.gate_up.weight)
    assert not torch.equal(wa, c.blocks[0].ffn.gate_up.weight)
    assert abs(wa.std().item() - 0.02) < 2e-3 and abs(wa.mean().item()) < 2e-3
    assert torch.equal(a.blocks[0].attn_norm.weight, torch.ones(32))
    assert a.fingerprint["random_seed"] == 7 and a.fingerprint["source"] == "random"


def test_param_counts_on_meta_device():
    lm = FrozenLM.from_config(LLAMA_7B, device="meta")
    assert sum(p.numel() for p in lm.parameters()) == LLAMA_7B.params_per_layer() == 202_383_360
    smollm2 = LMConfig("llama", dim=576, n_layers=30, n_heads=9, n_kv_heads=3, head_dim=64, ffn_hidden=1536,
                       norm_eps=1e-5)
    assert smollm2.params_per_layer() == 3_540_096  # "3.54M params per block"


def test_unbuilt_module_and_bad_inputs_are_refused():
    with pytest.raises(RuntimeError, match="no weights yet"):
        FrozenLM(TINY)(torch.randn(1, 2, 32))
    lm = FrozenLM.from_config(TINY)
    with pytest.raises(ValueError, match=r"expects \(B, N, 32\)"):
        lm(torch.randn(1, 2, 16))
    with pytest.raises(ValueError, match="padding_mask"):
        lm(torch.randn(1, 2, 32), torch.zeros(1, 3, dtype=torch.bool))


def test_deepcopy_keeps_frozen_state_dict_behaviour(meta_dir):
    lm = FrozenLM.from_checkpoint(meta_dir)
    twin = copy.deepcopy(lm)
    assert twin.state_dict() == {}
    twin.load_state_dict({}, strict=True)
    assert twin.fingerprint == lm.fingerprint
