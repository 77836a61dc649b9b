"""The released ViT-LLaMA checkpoint format loads strictly and gives the official model's logits.

The official model is re-stated here from ziqipang/LM4VisualEncoding image_classification/models/vit_llama.py and
llama.py: ViT blocks -> llama_dim_mapper1 -> LLaMA TransformerBlock(s) (RMSNorm, attention with no RoPE and no mask,
SwiGLU FFN) -> RMSNorm(llama.norm.weight) -> .float() -> llama_dim_mapper2 -> norm -> head(x[:, 0]).
"""

from __future__ import annotations

import argparse
import json
import math

import pytest
import timm
import torch
import torch.nn.functional as F
from image_fixtures import TINY_LLAMA_HIDDEN, TINY_LLAMA_PARAMS, meta_llama_state
from timm.models.vision_transformer import VisionTransformer

import image_cls.models  # noqa: F401
from common.frozen_lm import LLMSpec, read_lm_config
from image_cls.official import (
    OfficialCheckpointError,
    build_official_model,
    infer_vit_args,
    load_official_checkpoint,
    read_official_checkpoint,
)

VIT = dict(img_size=32, patch_size=16, embed_dim=48, depth=2, num_heads=3, num_classes=10)
N_HEADS, EPS = TINY_LLAMA_PARAMS["n_heads"], TINY_LLAMA_PARAMS["norm_eps"]


# ---- the official forward, re-stated ------------------------------------------------------------------------------
def rms_norm(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return (x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + EPS)).type_as(x) * weight


def llama_attention(x: torch.Tensor, sd: dict, p: str) -> torch.Tensor:
    b, n, d = x.shape
    hd = d // N_HEADS
    q, k, v = (F.linear(x, sd[p + f"attention.{w}.weight"]).view(b, n, N_HEADS, hd).transpose(1, 2)
               for w in ("wq", "wk", "wv"))
    scores = F.softmax((q @ k.transpose(-2, -1) / math.sqrt(hd)).float(), dim=-1).type_as(q)
    return F.linear((scores @ v).transpose(1, 2).reshape(b, n, d), sd[p + "attention.wo.weight"])


def llama_block(x: torch.Tensor, sd: dict, j: int) -> torch.Tensor:
    p = f"llama.layers.{j}."
    h = x + llama_attention(rms_norm(x, sd[p + "attention_norm.weight"]), sd, p)
    z = rms_norm(h, sd[p + "ffn_norm.weight"])
    gate, up = F.linear(z, sd[p + "feed_forward.w1.weight"]), F.linear(z, sd[p + "feed_forward.w3.weight"])
    return h + F.linear(F.silu(gate) * up, sd[p + "feed_forward.w2.weight"])


@torch.no_grad()
def official_logits(sd: dict, x: torch.Tensor, n_blocks: int) -> torch.Tensor:
    vit = VisionTransformer(**VIT).eval()
    vit.load_state_dict({k: v for k, v in sd.items() if not k.startswith("llama")}, strict=True)
    h = vit.blocks(vit._pos_embed(vit.patch_embed(x)))
    h = F.linear(h, sd["llama_dim_mapper1.weight"])
    for j in range(n_blocks):
        h = llama_block(h, sd, j)
    h = rms_norm(h, sd["llama.norm.weight"]).float()
    h = F.linear(h, sd["llama_dim_mapper2.weight"])
    return vit.head(vit.norm(h)[:, 0])


# ---- an official-style checkpoint ----------------------------------------------------------------------------------
def official_state_dict(seed: int, n_blocks: int = 1, norm_weight: torch.Tensor | None = None) -> dict:
    torch.manual_seed(seed)
    sd = dict(VisionTransformer(**VIT).state_dict())
    llama = meta_llama_state(TINY_LLAMA_PARAMS, TINY_LLAMA_HIDDEN, seed=seed)
    first = TINY_LLAMA_PARAMS["n_layers"] - n_blocks  # LLaMATransformer keeps layers first_layer.. as 0, 1, ...
    for j in range(n_blocks):
        prefix = f"layers.{first + j}."
        sd.update({f"llama.layers.{j}.{k[len(prefix):]}": v for k, v in llama.items() if k.startswith(prefix)})
    sd["llama.norm.weight"] = torch.ones(64) if norm_weight is None else norm_weight
    sd["llama_dim_mapper1.weight"] = torch.randn(64, VIT["embed_dim"]) * 0.1
    sd["llama_dim_mapper2.weight"] = torch.randn(VIT["embed_dim"], 64) * 0.1
    return sd


def write_official(path, model_sd: dict, ema_sd: dict | None = None) -> None:
    torch.save({"model": model_sd, "model_ema": ema_sd if ema_sd is not None else model_sd,
                "optimizer": {"state": {}, "param_groups": []}, "epoch": 299,
                "args": argparse.Namespace(model="vit_llama_small_patch16_224", lr=1e-3, llama_path="/tmp/7B/")},
               path)


X = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(7))


def test_build_official_model_matches_official_forward(tmp_path):
    sd, ema = official_state_dict(seed=1), official_state_dict(seed=2)
    write_official(tmp_path / "best_model.pth", sd, ema)
    cfg = read_lm_config(_params_dir(tmp_path))
    for use_ema, state in ((False, sd), (True, ema)):
        model = build_official_model(tmp_path / "best_model.pth", lm_config=cfg, use_ema=use_ema, num_heads=3)
        expected = official_logits(state, X, n_blocks=1)
        with torch.no_grad():
            torch.testing.assert_close(model(X), expected, rtol=1e-4, atol=1e-5)
    assert model.llm.lm.fingerprint["source"] == "official_checkpoint"
    assert model.llm.lm.layer_indices == [1]  # the last of 2 layers, like LLaMA-7B's 31 of 32


def test_load_into_model_built_from_llm_spec(tmp_path, tiny_llama_dir):
    """The evaluate path: a model built from the preset (--llm-path) takes the official weights, frozen or FT."""
    sd = official_state_dict(seed=3)
    write_official(tmp_path / "ckpt.pth", sd)
    for variant in ("frozen", "finetune"):
        model = timm.create_model("vit_tiny_patch16_224_llm", llm=LLMSpec(variant, str(tiny_llama_dir)), **VIT)
        load_official_checkpoint(model, tmp_path / "ckpt.pth")
        with torch.no_grad():
            torch.testing.assert_close(model.eval()(X), official_logits(sd, X, 1), rtol=1e-4, atol=1e-5)


def test_two_blocks_and_pretrained_final_norm(tmp_path, tiny_llama_dir):
    norm = 1.0 + 0.2 * torch.randn(64)
    sd = official_state_dict(seed=4, n_blocks=2, norm_weight=norm)
    write_official(tmp_path / "ckpt.pth", sd)
    spec = LLMSpec("frozen", str(tiny_llama_dir), layers=(-2, -1), final_norm="pretrained")
    model = timm.create_model("vit_tiny_patch16_224_llm", llm=spec, **VIT)
    load_official_checkpoint(model, tmp_path / "ckpt.pth")
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(X), official_logits(sd, X, 2), rtol=1e-4, atol=1e-5)
    unit = timm.create_model("vit_tiny_patch16_224_llm", llm=LLMSpec("frozen", str(tiny_llama_dir), (-2, -1)), **VIT)
    with pytest.raises(OfficialCheckpointError, match="not all ones") as info:
        load_official_checkpoint(unit, tmp_path / "ckpt.pth")
    assert "--llm-final-norm" not in str(info.value)  # image_cls.evaluate has no such flag: no advice it can't take


@pytest.mark.parametrize("edit,message", [
    (lambda sd: sd.update({"llama.layers.0.attention.rope.freqs": torch.ones(8)}), "unknown LLaMA tensor"),
    (lambda sd: sd.update({"llama.output.weight": torch.ones(8, 64)}), "unknown LLaMA tensor 'llama.output.weight'"),
    (lambda sd: sd.update({"dist_token": torch.ones(1, 1, 48)}), "unexpected.*dist_token"),
    (lambda sd: sd.pop("blocks.1.mlp.fc2.bias"), "missing.*blocks.1.mlp.fc2.bias"),
    (lambda sd: sd.pop("llama.layers.0.feed_forward.w3.weight"), "missing.*llama.layers.0.feed_forward.w3.weight"),
    (lambda sd: sd.pop("llama.norm.weight"), "missing 'llama.norm.weight'"),
    (lambda sd: sd.update({"llama.layers.0.attention.wq.weight": torch.ones(32, 64)}), "attention.wq.weight"),
    (lambda sd: sd.update({"head.weight": torch.ones(5, 48)}), "head.weight"),
])
def test_strict_errors_name_the_key(tmp_path, tiny_llama_dir, edit, message):
    sd = official_state_dict(seed=5)
    edit(sd)
    write_official(tmp_path / "ckpt.pth", sd)
    model = timm.create_model("vit_tiny_patch16_224_llm", llm=LLMSpec("frozen", str(tiny_llama_dir)), **VIT)
    with pytest.raises(OfficialCheckpointError, match=message):
        load_official_checkpoint(model, tmp_path / "ckpt.pth")


def test_model_must_match_the_official_graft(tmp_path, tiny_llama_dir):
    write_official(tmp_path / "ckpt.pth", official_state_dict(seed=6))
    for llm, position in ((LLMSpec("mlp", str(tiny_llama_dir)), "tail"), (LLMSpec(), "tail"),
                          (LLMSpec("frozen", str(tiny_llama_dir), mode="residual"), "tail"),
                          (LLMSpec("frozen", str(tiny_llama_dir)), "middle"),
                          (LLMSpec("frozen", str(tiny_llama_dir), layers=(-2, -1)), "tail")):
        model = timm.create_model("vit_tiny_patch16_224_llm", llm=llm, llm_position=position, **VIT)
        with pytest.raises(OfficialCheckpointError):
            load_official_checkpoint(model, tmp_path / "ckpt.pth")
    torch.save({"state_dict": {}}, tmp_path / "other.pth")
    with pytest.raises(OfficialCheckpointError, match="no 'model' state dict"):
        read_official_checkpoint(tmp_path / "other.pth")


def test_infer_vit_args_of_the_released_shapes():
    sd = {k: v for k, v in timm.create_model("vit_small_patch16_224", device="meta").state_dict().items()}
    args = infer_vit_args(sd)
    assert args == dict(img_size=224, patch_size=16, in_chans=3, embed_dim=384, depth=12, num_heads=6, mlp_ratio=4.0,
                        num_classes=1000)


def _params_dir(tmp_path):
    directory = tmp_path / "params"
    directory.mkdir()
    (directory / "params.json").write_text(json.dumps(TINY_LLAMA_PARAMS))
    return directory
