"""ViT-T/S/B (DeiT recipe) with an optional frozen-LLM block, built on timm's ``VisionTransformer``.

Paper: Pang et al., "Frozen Transformers in Language Models Are Effective Visual Encoder Layers" (ICLR 2024).
Upstream: ziqipang/LM4VisualEncoding ``image_classification/models/vit_llama.py`` (``ViTLLaMA.forward_features``):
patch embed -> pos embed -> blocks -> mapper1 -> LLaMA block -> mapper2 -> norm -> head(CLS token).

Every variant here is one timm entry point named ``vit_<size>_patch<p>_224_llm`` (suffix ``_llm`` so that no name
collides with timm's own). Without an LLM (``llm=None`` or ``LLMSpec(variant="none")``) the model is exactly timm's
``vit_<size>_patch<p>_224``: same modules, same state-dict keys, same parameter count.

    model = timm.create_model("vit_small_patch16_224_llm", llm=LLMSpec(variant="frozen", path=...), num_classes=1000)
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

import timm
import torch
from timm.models import build_model_with_cfg, checkpoint_seq, generate_default_cfgs, register_model
from timm.models.vision_transformer import VisionTransformer
from timm.models.vision_transformer import _cfg as vit_cfg
from torch import nn

from common.engine.config import config_value
from common.frozen_lm import LLMSpec, build_adapter

LLM_POSITIONS = ("head", "middle", "tail")  # paper Table D; "tail" is the official placement
GREY_DATASETS = ("fashion_mnist", "digits")  # one input channel; every other data set is RGB


class VisionTransformerLLM(VisionTransformer):
    """timm ``VisionTransformer`` with an ``LLMAdapter`` (``self.llm``) at ``head``, ``middle`` or ``tail``.

    Args:
        llm: ``LLMSpec`` (variant, path, layers, mode, ...), a ready adapter module, or None for the plain ViT.
        llm_position: ``tail`` (after all blocks, before the final norm; official), ``middle`` (after block
            ``depth // 2``) or ``head`` (right after patch + position embedding).
        **kwargs: everything timm's ``VisionTransformer`` takes (img_size, patch_size, embed_dim, depth, ...).
    """

    def __init__(self, *args: Any, llm: LLMSpec | nn.Module | None = None, llm_position: str = "tail",
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if llm_position not in LLM_POSITIONS:
            raise ValueError(f"llm_position must be one of {LLM_POSITIONS}, got {llm_position!r}")
        self.llm_position = llm_position
        # The graft: the only place the frozen LLM block enters this model.
        self.llm = build_adapter(self.embed_dim, llm)

    @property
    def llm_split(self) -> int:
        """Number of ViT blocks that run before the LLM adapter."""
        depth = len(self.blocks)
        return {"head": 0, "middle": depth // 2, "tail": depth}[self.llm_position]

    def _run_blocks(self, blocks: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
        if len(blocks) == 0:
            return x
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint_seq(blocks, x)
        return blocks(x)

    def forward_features(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None,
                         is_causal: bool = False) -> torch.Tensor:
        """Patch/pos embed -> blocks, with ``self.llm`` spliced in at ``llm_position`` -> final norm."""
        if attn_mask is not None or is_causal:
            raise ValueError("VisionTransformerLLM does not take attention masks: all image tokens attend to all")
        x = self.patch_embed(x)
        x = self._pos_embed(x)
        x = self.patch_drop(x)
        x = self.norm_pre(x)
        if self.llm is None:
            x = self._run_blocks(self.blocks, x)
        else:
            split = self.llm_split
            x = self._run_blocks(self.blocks[:split], x)
            x = self.llm(x)
            x = self._run_blocks(self.blocks[split:], x)
        return self.norm(x)

    def forward_intermediates(self, *args: Any, **kwargs: Any) -> Any:
        """timm's intermediate-feature API; refused when an LLM is grafted (it would silently skip ``self.llm``)."""
        if self.llm is not None:
            raise RuntimeError("forward_intermediates does not run self.llm; use forward hooks on blocks / llm")
        return super().forward_intermediates(*args, **kwargs)


def _create(variant: str, pretrained: bool, arch: dict[str, Any], overrides: dict[str, Any]) -> VisionTransformerLLM:
    """Build ``variant`` from its architecture ``arch``; ``overrides`` (any timm ViT kwarg, ``llm``, ...) win."""
    if pretrained:
        raise ValueError(f"{variant}: no pretrained weights are registered; train it, or load an official "
                         "checkpoint with image_cls.official.load_official_checkpoint")
    return build_model_with_cfg(VisionTransformerLLM, variant, pretrained=False, **{**arch, **overrides})


default_cfgs = generate_default_cfgs({
    "vit_tiny_patch16_224_llm": vit_cfg(),
    "vit_tiny_patch32_224_llm": vit_cfg(),
    "vit_small_patch16_224_llm": vit_cfg(),
    "vit_small_patch32_224_llm": vit_cfg(),
    "vit_base_patch16_224_llm": vit_cfg(),
    "vit_base_patch32_224_llm": vit_cfg(),
    "vit_demo_llm": vit_cfg(input_size=(1, 28, 28), mean=(0.5,), std=(0.5,), num_classes=10),
})

# Widths/heads as DeiT (facebookresearch/deit models.py) and timm's vit_{tiny,small,base}: depth 12, MLP ratio 4,
# qkv bias, LayerNorm eps 1e-6, CLS-token pooling.
_TINY = dict(embed_dim=192, depth=12, num_heads=3)
_SMALL = dict(embed_dim=384, depth=12, num_heads=6)
_BASE = dict(embed_dim=768, depth=12, num_heads=12)


@register_model
def vit_tiny_patch16_224_llm(pretrained: bool = False, **kwargs: Any) -> VisionTransformerLLM:
    """ViT-T/16 (DeiT-Ti), optional LLM block via ``llm=LLMSpec(...)``."""
    return _create("vit_tiny_patch16_224_llm", pretrained, dict(patch_size=16, **_TINY), kwargs)


@register_model
def vit_tiny_patch32_224_llm(pretrained: bool = False, **kwargs: Any) -> VisionTransformerLLM:
    """ViT-T/32, optional LLM block via ``llm=LLMSpec(...)``."""
    return _create("vit_tiny_patch32_224_llm", pretrained, dict(patch_size=32, **_TINY), kwargs)


@register_model
def vit_small_patch16_224_llm(pretrained: bool = False, **kwargs: Any) -> VisionTransformerLLM:
    """ViT-S/16 (DeiT-S), optional LLM block via ``llm=LLMSpec(...)``."""
    return _create("vit_small_patch16_224_llm", pretrained, dict(patch_size=16, **_SMALL), kwargs)


@register_model
def vit_small_patch32_224_llm(pretrained: bool = False, **kwargs: Any) -> VisionTransformerLLM:
    """ViT-S/32, optional LLM block via ``llm=LLMSpec(...)``."""
    return _create("vit_small_patch32_224_llm", pretrained, dict(patch_size=32, **_SMALL), kwargs)


@register_model
def vit_base_patch16_224_llm(pretrained: bool = False, **kwargs: Any) -> VisionTransformerLLM:
    """ViT-B/16 (DeiT-B), optional LLM block via ``llm=LLMSpec(...)``."""
    return _create("vit_base_patch16_224_llm", pretrained, dict(patch_size=16, **_BASE), kwargs)


@register_model
def vit_base_patch32_224_llm(pretrained: bool = False, **kwargs: Any) -> VisionTransformerLLM:
    """ViT-B/32, optional LLM block via ``llm=LLMSpec(...)``."""
    return _create("vit_base_patch32_224_llm", pretrained, dict(patch_size=32, **_BASE), kwargs)


@register_model
def vit_demo_llm(pretrained: bool = False, **kwargs: Any) -> VisionTransformerLLM:
    """A small ViT for 28x28 grey images (the README demo on Fashion-MNIST): 49 patches of 4x4, width 96, depth 4."""
    args = dict(img_size=28, patch_size=4, in_chans=1, embed_dim=96, depth=4, num_heads=3, num_classes=10)
    return _create("vit_demo_llm", pretrained, args, kwargs)


def build_model(cfg: Mapping[str, Any] | argparse.Namespace, num_classes: int, *,
                in_chans: int | None = None) -> VisionTransformerLLM:
    """The model a run config describes: the one constructor used by train, evaluate and the analysis tools.

    Keys read: ``model`` (a registered ``*_llm`` name), ``input_size``, ``drop``, ``drop_path``, ``llm_position``,
    ``llm_*`` (``LLMSpec.from_config``) and ``dataset`` (``fashion_mnist`` / ``digits`` -> one input channel, else 3;
    absent -> the model's own default). ``in_chans`` overrides the channel count (e.g. read off saved weights).
    """
    name = config_value(cfg, "model")
    if not name:
        raise ValueError("the run config has no 'model' key")
    if name not in timm.list_models("*_llm"):
        raise ValueError(f"unknown model {name!r}; registered: {', '.join(timm.list_models('*_llm'))}")
    kwargs: dict[str, Any] = {
        "num_classes": int(num_classes),
        "drop_rate": float(config_value(cfg, "drop", 0.0)),
        "drop_path_rate": float(config_value(cfg, "drop_path", 0.0)),
        "llm": LLMSpec.from_config(cfg),
        "llm_position": config_value(cfg, "llm_position", "tail"),
    }
    if config_value(cfg, "input_size") is not None:
        kwargs["img_size"] = int(config_value(cfg, "input_size"))
    dataset = config_value(cfg, "dataset")
    if in_chans is None and dataset is not None:
        in_chans = 1 if dataset in GREY_DATASETS else 3
    if in_chans is not None:
        kwargs["in_chans"] = int(in_chans)
    return timm.create_model(name, **kwargs)
