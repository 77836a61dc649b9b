"""Registry-parametrized forward/backward of every ``*_llm`` model, LLM positions, modes, variants, baseline parity."""

from __future__ import annotations

import pytest
import timm
import torch

import image_cls.models  # noqa: F401  (registers the *_llm entry points)
from common.frozen_lm import LLMAdapter, LLMSpec
from image_cls.models import VisionTransformerLLM

LLM_MODELS = timm.list_models("*_llm")
TINY = dict(img_size=32, patch_size=16, in_chans=3, embed_dim=32, depth=4, num_heads=2, num_classes=7)
ARCH = {  # name -> (embed_dim, depth, heads, patch) as DeiT / timm's vit_{tiny,small,base}
    "vit_tiny_patch16_224_llm": (192, 12, 3, 16), "vit_tiny_patch32_224_llm": (192, 12, 3, 32),
    "vit_small_patch16_224_llm": (384, 12, 6, 16), "vit_small_patch32_224_llm": (384, 12, 6, 32),
    "vit_base_patch16_224_llm": (768, 12, 12, 16), "vit_base_patch32_224_llm": (768, 12, 12, 32),
    "vit_demo_llm": (96, 4, 3, 4),
}


def tiny_model(llm_dir, name: str = "vit_small_patch16_224_llm", position: str = "tail", drop_path_rate: float = 0.0,
               **spec) -> VisionTransformerLLM:
    """A 4-block, width-32 version of ``name`` with the tiny LLaMA checkpoint's block(s) (``spec`` overrides)."""
    llm = LLMSpec(path=str(llm_dir), **{"variant": "frozen", **spec})
    return timm.create_model(name, llm=llm, llm_position=position, drop_path_rate=drop_path_rate, **TINY)


def test_registry_names_do_not_collide_with_timm():
    assert set(LLM_MODELS) == set(ARCH)
    for name in LLM_MODELS:
        assert timm.models.get_pretrained_cfg(name) is not None
        assert name.removesuffix("_llm") not in LLM_MODELS


@pytest.mark.parametrize("name", LLM_MODELS)
def test_registered_architecture(name):
    """Each entry point builds the DeiT architecture it names (built on the meta device: no weights)."""
    model = timm.create_model(name, device="meta")
    dim, depth, heads, patch = ARCH[name]
    assert (model.embed_dim, len(model.blocks), model.blocks[0].attn.num_heads) == (dim, depth, heads)
    assert model.patch_embed.proj.kernel_size == (patch, patch)
    assert model.llm is None and model.global_pool == "token"


@pytest.mark.parametrize("name", LLM_MODELS)
def test_forward_backward_frozen_llm(name, tiny_llama_dir):
    """Frozen LLM parameters get no gradient; every other parameter does (timm's test_model_backward style)."""
    model = tiny_model(tiny_llama_dir, name, drop_path_rate=0.1)
    model.train()
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, TINY["num_classes"]) and torch.isfinite(out).all()
    out.logsumexp(-1).mean().backward()
    frozen = {n for n, _ in model.llm.lm.named_parameters(prefix="llm.lm")}
    assert frozen, "the LLM block has parameters"
    for n, p in model.named_parameters():
        if n in frozen:
            assert not p.requires_grad and p.grad is None, n
        else:
            assert p.requires_grad and p.grad is not None and torch.isfinite(p.grad).all(), n
    assert model.llm.in_proj.weight.grad.abs().sum() > 0 and model.llm.out_proj.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("variant,lm_trains", [("finetune", True), ("random_trainable", True),
                                               ("random_frozen", False), ("frozen", False)])
def test_variants_trainability_and_state_dict(tiny_llama_dir, variant, lm_trains):
    model = tiny_model(tiny_llama_dir, variant=variant)
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    lm_params = list(model.llm.lm.parameters())
    assert all(p.requires_grad == lm_trains for p in lm_params)
    assert all((p.grad is not None) == lm_trains for p in lm_params)
    lm_keys = [k for k in model.state_dict() if k.startswith("llm.lm.")]
    assert bool(lm_keys) == lm_trains  # frozen weights are not part of the training state dict
    twin = tiny_model(tiny_llama_dir, variant=variant)
    twin.load_state_dict(model.state_dict(), strict=True)
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(twin.eval()(x), model.eval()(x))


def test_mlp_control(tiny_llama_dir):
    model = tiny_model(tiny_llama_dir, variant="mlp")
    assert model.llm.lm is None and model.llm.in_proj.out_features == 64  # the LLM's width, from its config
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    assert all(p.requires_grad and p.grad is not None for p in model.parameters())


def test_baseline_is_timm_vit():
    ours = timm.create_model("vit_small_patch16_224_llm", llm=LLMSpec(), **TINY)
    theirs = timm.create_model("vit_small_patch16_224", **TINY)
    assert ours.llm is None
    theirs.load_state_dict(ours.state_dict(), strict=True)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(ours.eval()(x), theirs.eval()(x), rtol=0, atol=0)


@pytest.mark.parametrize("position,split", [("head", 0), ("middle", 2), ("tail", 4)])
def test_llm_position(tiny_llama_dir, position, split):
    """The adapter sees the tokens after ``split`` blocks; the rest of the blocks and the norm follow it."""
    model = tiny_model(tiny_llama_dir, position=position).eval()
    seen = {}
    model.llm.register_forward_hook(lambda m, args, out: seen.update(inp=args[0], out=out))
    x = torch.randn(2, 3, 32, 32)
    features = model.forward_features(x)
    tokens = model.norm_pre(model._pos_embed(model.patch_embed(x)))
    expected_in = model.blocks[:split](tokens)
    torch.testing.assert_close(seen["inp"], expected_in)
    torch.testing.assert_close(features, model.norm(model.blocks[split:](seen["out"])))
    assert model.llm_split == split


def test_residual_mode_with_zero_out_proj_is_the_plain_vit(tiny_llama_dir):
    model = tiny_model(tiny_llama_dir, mode="residual").eval()
    torch.nn.init.zeros_(model.llm.out_proj.weight)
    x = torch.randn(2, 3, 32, 32)
    plain = model.norm(model.blocks(model.norm_pre(model._pos_embed(model.patch_embed(x)))))
    torch.testing.assert_close(model.forward_features(x), plain)
    replace = tiny_model(tiny_llama_dir, mode="replace").eval()
    torch.nn.init.zeros_(replace.llm.out_proj.weight)
    assert not torch.allclose(replace.forward_features(x), plain, atol=1e-3)


def test_two_llm_blocks_and_grad_checkpointing(tiny_llama_dir):
    model = tiny_model(tiny_llama_dir, layers=(-2, -1), grad_checkpointing=True)
    assert len(model.llm.lm.blocks) == 2 and model.llm.lm.layer_indices == [0, 1]
    x = torch.randn(2, 3, 32, 32)
    reference = model(x)
    reference.sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    model.set_grad_checkpointing(True)
    out = model(x)
    out.sum().backward()
    torch.testing.assert_close(out, reference)
    for n, p in model.named_parameters():
        if n in grads:
            torch.testing.assert_close(p.grad, grads[n], msg=n)


def test_bad_inputs(tiny_llama_dir):
    with pytest.raises(ValueError, match="llm_position"):
        tiny_model(tiny_llama_dir, position="bottom")
    with pytest.raises(TypeError, match="LLMSpec"):
        timm.create_model("vit_small_patch16_224_llm", llm="frozen", **TINY)
    with pytest.raises(ValueError, match="no pretrained weights"):
        timm.create_model("vit_small_patch16_224_llm", pretrained=True)
    model = timm.create_model("vit_small_patch16_224_llm", **TINY)
    with pytest.raises(ValueError, match="attention masks"):
        model.forward_features(torch.randn(1, 3, 32, 32), is_causal=True)
    assert len(model.forward_intermediates(torch.randn(1, 3, 32, 32), intermediates_only=True)) == TINY["depth"]
    with pytest.raises(RuntimeError, match="does not run self.llm"):
        tiny_model(tiny_llama_dir).forward_intermediates(torch.randn(1, 3, 32, 32))


def test_ready_adapter_and_spec_from_config(tiny_llama_dir):
    spec = LLMSpec.from_namespace({"llm_variant": "frozen", "llm_path": str(tiny_llama_dir), "llm_layers": [-2, -1],
                                 "llm_mode": "residual", "llm_final_norm": "unit", "llm_dtype": "float32",
                                 "llm_position": "tail", "llm_grad_checkpointing": False})
    assert spec == LLMSpec("frozen", str(tiny_llama_dir), (-2, -1), "residual", "unit", "float32", False, 0)
    adapter = LLMAdapter.from_spec(TINY["embed_dim"], spec)
    model = timm.create_model("vit_small_patch16_224_llm", llm=adapter, **TINY)
    assert model.llm is adapter
