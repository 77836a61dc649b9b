"""The PointTransformer: Point-BERT's parameter count and key names, its numerics, and the frozen-LLM graft."""

from __future__ import annotations

import argparse

import pytest
import torch
from pc_fixtures import TINY

from common.frozen_lm import LLMSpec
from point_cloud.models import PointBertConfig, PointTransformer
from point_cloud.optim import build_optimizer, point_param_groups


def test_parameter_count_equals_point_berts():
    """Point-BERT's fine-tuning PointTransformer (trans_dim 384, depth 12, 6 heads, encoder_dims 256, cls_dim 40),
    counted from its modules (models/Point_BERT.py, models/dvae.py Encoder):

    encoder.first_conv   Conv1d(3,128): 3*128+128 = 512; BN(128): 256; Conv1d(128,256): 128*256+256 = 33,024
    encoder.second_conv  Conv1d(512,512): 262,144+512 = 262,656; BN(512): 1,024; Conv1d(512,256): 131,328
                         -> encoder 428,800
    reduce_dim           Linear(256,384): 98,304+384 = 98,688
    cls_token, cls_pos   384 + 384 = 768
    pos_embed            Linear(3,128): 512; Linear(128,384): 49,536 -> 50,048
    one block            norm1 768; qkv (no bias) 384*1152 = 442,368; proj 147,456+384 = 147,840; norm2 768;
                         fc1 384*1536+1536 = 591,360; fc2 1536*384+384 = 590,208 -> 1,773,312; x 12 = 21,279,744
    norm                 768
    cls_head_finetune    Linear(768,256): 196,864; Linear(256,40): 10,280 -> 207,144
    total                428,800 + 98,688 + 768 + 50,048 + 21,279,744 + 768 + 207,144 = 22,065,960
    """
    model = PointTransformer()
    assert sum(p.numel() for p in model.parameters()) == 22_065_960
    assert all(p.requires_grad for p in model.parameters())
    assert sum(p.numel() for p in model.encoder.parameters()) == 428_800
    assert sum(p.numel() for p in model.blocks.blocks[0].parameters()) == 1_773_312
    assert sum(p.numel() for p in model.cls_head_finetune.parameters()) == 207_144


def point_bert_keys(depth: int) -> set[str]:
    """Every state-dict key of Point-BERT's PointTransformer, spelled out from its module names."""
    keys = {"cls_token", "cls_pos", "reduce_dim.weight", "reduce_dim.bias", "norm.weight", "norm.bias"}
    for conv in ("first_conv", "second_conv"):
        keys |= {f"encoder.{conv}.{i}.{p}" for i in (0, 3) for p in ("weight", "bias")}
        keys |= {f"encoder.{conv}.1.{p}" for p in ("weight", "bias", "running_mean", "running_var",
                                                   "num_batches_tracked")}
    keys |= {f"pos_embed.{i}.{p}" for i in (0, 2) for p in ("weight", "bias")}
    keys |= {f"cls_head_finetune.{i}.{p}" for i in (0, 3) for p in ("weight", "bias")}
    for i in range(depth):
        keys |= {f"blocks.blocks.{i}.{m}.{p}" for m in ("norm1", "norm2", "attn.proj", "mlp.fc1", "mlp.fc2")
                 for p in ("weight", "bias")}
        keys.add(f"blocks.blocks.{i}.attn.qkv.weight")
    return keys


def test_state_dict_keys_are_point_berts():
    assert set(PointTransformer().state_dict()) == point_bert_keys(12)


def test_scaled_configs_and_drop_path():
    model = PointTransformer(PointBertConfig(num_group=512, cls_dim=15))
    assert model.cls_head_finetune[3].out_features == 15 and model.config.num_group == 512
    rates = [getattr(b.drop_path, "drop_prob", 0.0) for b in model.blocks.blocks]
    assert rates == pytest.approx(torch.linspace(0, 0.1, 12).tolist())


def test_forward_matches_a_hand_written_point_bert_forward():
    """Recompute the forward pass with upstream's explicit formulas (softmax(q k^T * scale) v, pos added before
    each block, [CLS, max] head) from the model's own weights."""
    torch.manual_seed(0)
    model = PointTransformer(TINY).eval()
    points = torch.randn(2, 64, 3)
    neighborhood, center = model.group(points)
    x = model.reduce_dim(model.encoder(neighborhood))
    x = torch.cat([model.cls_token.expand(2, -1, -1), x], 1)
    pos = torch.cat([model.cls_pos.expand(2, -1, -1), model.pos_embed(center)], 1)
    for block in model.blocks.blocks:
        x = x + pos
        h = block.norm1(x)
        b, n, c = h.shape
        q, k, v = block.attn.qkv(h).reshape(b, n, 3, 2, c // 2).permute(2, 0, 3, 1, 4)
        attn = ((q @ k.transpose(-2, -1)) * (c // 2) ** -0.5).softmax(-1)
        x = x + block.attn.proj((attn @ v).transpose(1, 2).reshape(b, n, c))
        x = x + block.mlp.fc2(torch.nn.functional.gelu(block.mlp.fc1(block.norm2(x))))
    x = model.norm(x)
    expected = model.cls_head_finetune(torch.cat([x[:, 0], x[:, 1:].max(1).values], -1))
    torch.testing.assert_close(model(points), expected, atol=1e-5, rtol=1e-5)


def test_the_llm_block_runs_after_the_blocks_and_before_the_norm(tiny_llama_dir):
    model = PointTransformer(TINY, LLMSpec(variant="frozen", path=str(tiny_llama_dir)))
    order = []
    for name in ("blocks", "llm", "llm.in_proj", "llm.lm", "llm.out_proj", "norm", "cls_head_finetune"):
        model.get_submodule(name).register_forward_hook(lambda *_, name=name: order.append(name))
    model(torch.randn(2, 64, 3)).sum().backward()
    assert order == ["blocks", "llm.in_proj", "llm.lm", "llm.out_proj", "llm", "norm", "cls_head_finetune"]
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert frozen and all(n.startswith("llm.lm.") for n in frozen)
    assert all(model.get_parameter(n).grad is None for n in frozen)
    assert model.llm.in_proj.weight.grad.abs().sum() > 0 and model.llm.out_proj.weight.grad.abs().sum() > 0
    state = model.state_dict()
    assert set(state) == point_bert_keys(2) | {"llm.in_proj.weight", "llm.out_proj.weight"}
    assert model.llm.in_proj.weight.shape == (64, 32)  # trans_dim -> the LLaMA's dim, bias-free


@pytest.mark.parametrize("variant", ["mlp", "random_frozen", "random_trainable", "finetune"])
def test_the_paper_controls_build_and_run(tiny_llama_dir, variant):
    model = PointTransformer(TINY, LLMSpec(variant=variant, path=str(tiny_llama_dir), mode="residual"))
    assert model(torch.randn(2, 64, 3)).shape == (2, 40)
    trainable_lm = any(p.requires_grad for n, p in model.named_parameters() if n.startswith("llm.lm."))
    assert trainable_lm == (variant in ("random_trainable", "finetune"))


def _args(**kw) -> argparse.Namespace:
    base = dict(lr=5e-4, weight_decay=0.05, lr_mult=[], no_decay_lr_mult=0.1, adapter_lr=2.5e-4,
                adapter_weight_decay=0.0, opt_betas=[0.9, 0.999], opt_eps=1e-8)
    return argparse.Namespace(**{**base, **kw})


def test_lm4ve_parameter_groups(tiny_llama_dir):
    model = PointTransformer(TINY, LLMSpec(variant="frozen", path=str(tiny_llama_dir)))
    groups = {(g["lr_scale"], g["weight_decay"]): set(g["param_names"]) for g in point_param_groups(model, _args())}
    assert set(groups) == {(1.0, 0.05), (0.1, 0.0), (0.5, 0.0)}
    assert groups[0.5, 0.0] == {"llm.in_proj.weight", "llm.out_proj.weight"}  # 2.5e-4 = 0.5 x 5e-4, no decay
    assert {"cls_token", "norm.weight", "reduce_dim.bias", "encoder.first_conv.1.weight"} <= groups[0.1, 0.0]
    assert {"cls_pos", "reduce_dim.weight", "blocks.blocks.0.attn.qkv.weight"} <= groups[1.0, 0.05]
    n_trainable = sum(1 for p in model.parameters() if p.requires_grad)
    assert sum(len(v) for v in groups.values()) == n_trainable
    optimizer = build_optimizer(_args(adapter_lr=5e-5), model)
    lrs = [g["lr"] for g in optimizer.param_groups if "llm.in_proj.weight" in g["param_names"]]
    assert lrs == [pytest.approx(5e-5)] and all(g["initial_lr"] == 5e-4 for g in optimizer.param_groups)


def test_without_an_adapter_lr_the_adapter_follows_the_base_groups(tiny_llama_dir):
    model = PointTransformer(TINY, LLMSpec(variant="frozen", path=str(tiny_llama_dir)))
    groups = point_param_groups(model, _args(adapter_lr=None))
    decayed = next(g for g in groups if g["weight_decay"] == 0.05)
    assert "llm.in_proj.weight" in decayed["param_names"] and len(groups) == 2
    assert len(point_param_groups(PointTransformer(TINY), _args())) == 2  # baseline: nothing to split off
