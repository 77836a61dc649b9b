"""LLMAdapter / LLMSpec: the paper's variants and controls, gradients, resume with fingerprints."""

from __future__ import annotations

import argparse
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from common.frozen_lm import FrozenLM, LLMAdapter, LLMSpec, check_fingerprints, lm_fingerprints

VISUAL = 24


class TinyHost(nn.Module):
    """A stand-in for a task model: trainable stem, the adapter, trainable head."""

    def __init__(self, spec: LLMSpec):
        super().__init__()
        self.stem = nn.Linear(6, VISUAL)
        self.llm = LLMAdapter.from_spec(VISUAL, spec)
        self.head = nn.Linear(VISUAL, 3)

    def forward(self, x, padding_mask=None):
        return self.head(self.llm(self.stem(x), padding_mask))


def spec_for(path, variant: str, **kwargs) -> LLMSpec:
    return LLMSpec(variant=variant, path=str(path), **kwargs)


@pytest.mark.parametrize("variant", ["frozen", "finetune", "random_frozen", "random_trainable", "mlp"])
def test_variants_train_what_they_should(variant, hf_from_meta):
    host = TinyHost(spec_for(hf_from_meta.path, variant))
    adapter = host.llm
    assert adapter.in_proj.weight.shape == (64, VISUAL) and adapter.out_proj.weight.shape == (VISUAL, 64)
    assert adapter.in_proj.bias is None and adapter.out_proj.bias is None
    x = torch.randn(2, 5, 6, requires_grad=True)
    host(x).square().mean().backward()
    frozen_lm = variant in ("frozen", "random_frozen")
    for name, p in host.named_parameters():
        if frozen_lm and name.startswith("llm.lm."):
            assert not p.requires_grad and p.grad is None, name
        else:
            assert p.requires_grad and p.grad is not None and p.grad.abs().sum() > 0, name
    assert x.grad.abs().sum() > 0
    keys = set(host.state_dict())
    assert any(k.startswith("llm.lm.") for k in keys) == (variant in ("finetune", "random_trainable"))


def test_variant_weights_come_from_the_right_place(hf_from_meta):
    pretrained = FrozenLM.from_checkpoint(hf_from_meta.path)
    w = pretrained.blocks[0].attn.qkv.weight
    frozen = LLMAdapter.from_spec(VISUAL, spec_for(hf_from_meta.path, "frozen"))
    finetune = LLMAdapter.from_spec(VISUAL, spec_for(hf_from_meta.path, "finetune"))
    random_a = LLMAdapter.from_spec(VISUAL, spec_for(hf_from_meta.path, "random_frozen", seed=1))
    random_b = LLMAdapter.from_spec(VISUAL, spec_for(hf_from_meta.path, "random_trainable", seed=1))
    assert torch.equal(frozen.lm.blocks[0].attn.qkv.weight, w) and torch.equal(finetune.lm.blocks[0].attn.qkv.weight, w)
    assert not torch.equal(random_a.lm.blocks[0].attn.qkv.weight, w)
    assert torch.equal(random_a.lm.blocks[0].attn.qkv.weight, random_b.lm.blocks[0].attn.qkv.weight)
    assert random_a.lm.config == pretrained.config


def test_mlp_control_has_the_same_projections_and_a_gelu_layernorm(hf_from_meta):
    adapter = LLMAdapter.from_spec(VISUAL, spec_for(hf_from_meta.path, "mlp"))
    assert adapter.lm is None
    assert isinstance(adapter.mlp[0], nn.GELU) and isinstance(adapter.mlp[1], nn.LayerNorm)
    assert adapter.mlp[1].normalized_shape == (64,)
    x = torch.randn(2, 3, VISUAL)
    with torch.no_grad():
        expected = adapter.out_proj(adapter.mlp[1](nn.functional.gelu(adapter.in_proj(x))))
        assert torch.allclose(adapter(x), expected)


def test_residual_mode_adds_the_input(hf_from_meta):
    replace = LLMAdapter.from_spec(VISUAL, spec_for(hf_from_meta.path, "frozen"))
    residual = LLMAdapter(VISUAL, replace.lm, mode="residual")
    residual.load_state_dict(replace.state_dict(), strict=True)
    x = torch.randn(2, 4, VISUAL)
    with torch.no_grad():
        assert torch.allclose(residual(x), x + replace(x), atol=1e-6)


def test_two_last_layers_and_padding_mask(hf_from_meta):
    adapter = LLMAdapter.from_spec(VISUAL, spec_for(hf_from_meta.path, "frozen", layers=(-2, -1)))
    assert adapter.lm.layer_indices == [1, 2]
    x = torch.randn(2, 6, VISUAL)
    padding = torch.tensor([[False] * 4 + [True] * 2, [False] * 6])
    with torch.no_grad():
        assert torch.allclose(adapter(x, padding)[0, :4], adapter(x[:1, :4])[0], atol=1e-5)


def test_spec_parsing_and_validation():
    spec = LLMSpec.from_namespace(argparse.Namespace(llm_variant="frozen", llm_path="/x", llm_layers="-2,-1",
                                                     llm_dtype="bfloat16", llm_seed=None, lr=1.0))
    assert spec.layers == (-2, -1) and spec.dtype == "bfloat16" and spec.seed == 0 and spec.enabled
    assert LLMSpec(layers=31).layers == (31,) and not LLMSpec().enabled
    with pytest.raises(ValueError, match="llm_variant='bogus'"):
        LLMSpec(variant="bogus")
    with pytest.raises(ValueError, match="needs llm_path"):
        LLMSpec(variant="frozen")
    with pytest.raises(ValueError, match="llm_mode"):
        LLMSpec(variant="mlp", path="/x", mode="sum")
    with pytest.raises(ValueError, match="random block"):
        LLMSpec(variant="random_frozen", path="/x", final_norm="pretrained")
    with pytest.raises(ValueError, match="has no adapter"):
        LLMAdapter.from_spec(VISUAL, LLMSpec())
    with pytest.raises(ValueError, match="llm_proj_init='xavier'"):
        LLMSpec(variant="mlp", path="/x", proj_init="xavier")


@pytest.mark.parametrize("variant", ["frozen", "mlp"])
def test_projection_inits(variant, hf_from_meta):
    """trunc_normal: both projections N(0, 0.02) cut at +-2 (timm's trunc_normal_, the official code);
    orthogonal: the pair is the identity at the start (LLM at least as wide as the encoder), a symmetric
    projection when the LLM is narrower."""
    torch.manual_seed(0)
    default = LLMAdapter.from_spec(VISUAL, spec_for(hf_from_meta.path, variant))
    for proj in (default.in_proj, default.out_proj):
        assert proj.weight.std().item() == pytest.approx(0.02, rel=0.1)
    spec = spec_for(hf_from_meta.path, variant, proj_init="orthogonal")
    ortho = LLMAdapter.from_spec(VISUAL, spec)
    assert torch.equal(ortho.out_proj.weight, ortho.in_proj.weight.T)
    x = torch.randn(5, VISUAL)
    torch.testing.assert_close(ortho.out_proj(ortho.in_proj(x)), x, atol=1e-5, rtol=1e-5)
    narrow = LLMAdapter(VISUAL, None, mlp_hidden=VISUAL // 2, proj_init="orthogonal")
    pair = narrow.out_proj.weight @ narrow.in_proj.weight
    torch.testing.assert_close(pair @ pair, pair, atol=1e-5, rtol=1e-5)  # a projection, of rank VISUAL // 2
    assert torch.linalg.matrix_rank(pair).item() == VISUAL // 2
    with pytest.raises(ValueError, match="projection init 'xavier'"):
        LLMAdapter(VISUAL, None, mlp_hidden=8, proj_init="xavier")


def test_projection_init_flag_reaches_the_spec():
    from common.frozen_lm.options import add_llm_args

    parser = argparse.ArgumentParser()
    add_llm_args(parser)
    assert LLMSpec.from_config(parser.parse_args([])).proj_init == "trunc_normal"
    args = parser.parse_args(["--llm-variant", "mlp", "--llm-path", "/x", "--llm-proj-init", "orthogonal"])
    assert LLMSpec.from_config(args).proj_init == "orthogonal"
    with pytest.raises(SystemExit):
        parser.parse_args(["--llm-proj-init", "xavier"])


def test_resume_reattaches_the_same_frozen_block_and_refuses_another(tmp_path, hf_from_meta, meta_dir):
    spec = spec_for(hf_from_meta.path, "frozen")
    host = TinyHost(spec)
    saved = {"model": host.state_dict(), "lm_fingerprints": lm_fingerprints(host)}
    assert list(saved["lm_fingerprints"]) == ["llm.lm"]
    assert all(not k.startswith("llm.lm.") for k in saved["model"])
    torch.save(saved, tmp_path / "ckpt.pth")

    loaded = torch.load(tmp_path / "ckpt.pth", weights_only=True)
    moved = shutil.copytree(hf_from_meta.path, tmp_path / "moved")  # same weights at another path: accepted
    resumed = TinyHost(spec_for(moved, "frozen"))
    check_fingerprints(loaded["lm_fingerprints"], resumed)
    resumed.load_state_dict(loaded["model"], strict=True)
    x = torch.randn(2, 5, 6)
    with torch.no_grad():
        assert torch.equal(resumed(x), host(x))

    with pytest.raises(ValueError, match="'llm.lm'.*layers was \\[2\\], now \\[1\\]"):
        check_fingerprints(loaded["lm_fingerprints"], TinyHost(spec_for(hf_from_meta.path, "frozen", layers=1)))
    with pytest.raises(ValueError, match="format was 'hf-safetensors', now 'meta'"):
        check_fingerprints(loaded["lm_fingerprints"], TinyHost(spec_for(meta_dir, "frozen")))
    shard = moved / json.loads((moved / "model.safetensors.index.json").read_text())["weight_map"][
        "model.layers.2.mlp.down_proj.weight"]
    tensors = load_file(shard)
    tensors["model.layers.2.mlp.down_proj.weight"] *= 2  # same file layout, different weights
    save_file(tensors, shard, metadata={"format": "pt"})
    with pytest.raises(ValueError, match="sha256 was"):
        check_fingerprints(loaded["lm_fingerprints"], TinyHost(spec_for(moved, "frozen")))
    with pytest.raises(ValueError, match="the model has none there"):
        check_fingerprints(loaded["lm_fingerprints"], TinyHost(spec_for(hf_from_meta.path, "mlp")))
