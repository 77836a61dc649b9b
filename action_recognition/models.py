"""VideoMAE's fine-tuning ViT with an optional frozen-LLM block, built on timm's ``Block`` / ``Attention``.

Upstreams (read, not copied): MCG-NJU/VideoMAE ``modeling_finetune.py`` (``VisionTransformer``, ``PatchEmbed``,
``Attention`` with ``q_bias`` / ``v_bias``, ``get_sinusoid_encoding_table``) and ziqipang/LM4VisualEncoding
``video_understanding/modeling_finetune_llama.py`` (``ViTLLaMA``: the LLaMA graft).

    clip (B, 3, T, H, W) -> patch_embed: Conv3d, kernel = stride = (tubelet, patch, patch)
    -> tokens (B, T/2 * H/16 * W/16, D) (1568 for 16 x 224 x 224), no CLS token
    -> + fixed sinusoidal table (re-created for the clip size, never loaded or trained)
    -> blocks: 12 x pre-LN timm Block, LN eps 1e-6, MLP ratio 4, GELU, qkv with q/v biases and k bias 0,
       drop path linear 0 .. 0.1, no layer scale
    -> llm: Linear(D -> d_LM) -> frozen LLM block(s) -> Linear(d_LM -> D)           <- the graft (optional)
    -> mean over tokens -> fc_norm (LayerNorm) -> head (174 classes; init scaled by 0.001)

State-dict keys are VideoMAE's (``patch_embed.proj``, ``blocks.N.{norm1, attn.qkv.weight, attn.q_bias,
attn.v_bias, attn.proj, norm2, mlp.fc1, mlp.fc2}``, ``fc_norm``, ``head``), so its checkpoints load key for key
(``action_recognition.checkpoints``). Without an LLM the parameter count is VideoMAE's.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import Attention, trunc_normal_
from timm.models.vision_transformer import Block
from torch import nn
from torch.utils.checkpoint import checkpoint

from common.engine.config import config_value
from common.frozen_lm import LLMSpec, build_adapter

# VideoMAE's ``vit_small_patch16_224`` / ``vit_base_patch16_224`` (modeling_finetune.py register functions).
ARCHS: dict[str, dict[str, int]] = {
    "vit_small_patch16_224": {"embed_dim": 384, "depth": 12, "num_heads": 6, "patch_size": 16},
    "vit_base_patch16_224": {"embed_dim": 768, "depth": 12, "num_heads": 12, "patch_size": 16},
}
SSV2_CLASSES = 174


def sinusoid_table(num_positions: int, dim: int) -> torch.Tensor:
    """VideoMAE ``get_sinusoid_encoding_table``: ``(1, num_positions, dim)`` with angle ``p / 10000^(2 (j // 2) /
    dim)``, sine on even ``j``, cosine on odd ``j`` (computed in float64, returned float32)."""
    position = torch.arange(num_positions, dtype=torch.float64, device="cpu")[:, None]
    exponent = 2 * (torch.arange(dim, device="cpu") // 2).to(torch.float64) / dim
    angles = position / torch.pow(10000.0, exponent)[None, :]
    table = torch.empty_like(angles)
    table[:, 0::2] = torch.sin(angles[:, 0::2])
    table[:, 1::2] = torch.cos(angles[:, 1::2])
    return table.to(torch.float32).unsqueeze(0)


class QVBiasAttention(Attention):
    """timm ``Attention`` with VideoMAE's qkv bias: learnable ``q_bias`` and ``v_bias``, the key bias fixed at 0.

    timm's ``qkv_bias=True`` would give the key a learnable bias too; here ``qkv`` has no bias of its own and the
    concatenation ``(q_bias, 0, v_bias)`` is added, exactly as VideoMAE does (keys ``attn.q_bias`` /
    ``attn.v_bias``). The key bias is a non-persistent buffer: it never trains and never enters a checkpoint.
    """

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = False, **kwargs: Any):
        super().__init__(dim, num_heads=num_heads, qkv_bias=False, **kwargs)
        if qkv_bias:
            self.q_bias = nn.Parameter(torch.zeros(self.attn_dim))
            self.v_bias = nn.Parameter(torch.zeros(self.attn_dim))
            self.register_buffer("k_bias", torch.zeros(self.attn_dim), persistent=False)
        else:
            self.q_bias = self.v_bias = self.k_bias = None

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False) -> torch.Tensor:
        b, n, _ = x.shape
        bias = torch.cat((self.q_bias, self.k_bias, self.v_bias)) if self.q_bias is not None else None
        qkv = F.linear(x, self.qkv.weight, bias)
        q, k, v = qkv.reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=is_causal,
                                           dropout_p=self.attn_drop.p if self.training else 0.0)
        x = self.norm(x.transpose(1, 2).reshape(b, n, self.attn_dim))
        return self.proj_drop(self.proj(x))


class TubeletEmbed(nn.Module):
    """VideoMAE ``PatchEmbed``: Conv3d with kernel = stride = (tubelet, patch, patch); tokens in (t, h, w) order."""

    def __init__(self, img_size: int = 224, patch_size: int = 16, in_chans: int = 3, embed_dim: int = 768,
                 num_frames: int = 16, tubelet_size: int = 2):
        super().__init__()
        for name, value, unit in (("input size", img_size, patch_size), ("frames", num_frames, tubelet_size)):
            if value % unit:
                raise ValueError(f"{name} {value} is not a multiple of {unit}")
        self.img_size, self.patch_size, self.tubelet_size, self.num_frames = img_size, patch_size, tubelet_size, \
            num_frames
        self.grid_size = (num_frames // tubelet_size, img_size // patch_size, img_size // patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1] * self.grid_size[2]
        self.proj = nn.Conv3d(in_chans, embed_dim, kernel_size=(tubelet_size, patch_size, patch_size),
                              stride=(tubelet_size, patch_size, patch_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5 or tuple(x.shape[2:]) != (self.num_frames, self.img_size, self.img_size):
            raise ValueError(f"expected clips (B, C, {self.num_frames}, {self.img_size}, {self.img_size}), got "
                             f"{tuple(x.shape)}")
        return self.proj(x).flatten(2).transpose(1, 2)


class VideoViT(nn.Module):
    """VideoMAE's fine-tuning ViT (mean pooling); ``llm`` adds the frozen LLM block after the blocks.

    Args:
        llm: ``LLMSpec`` (variant, path, layers, ...), a ready adapter module, or None for plain VideoMAE.
        use_checkpoint: activation checkpointing of the ViT blocks (VideoMAE ``--use_checkpoint``); the LLM
            block has its own switch (``LLMSpec.grad_checkpointing``).
        Other arguments as VideoMAE's ``VisionTransformer`` (``all_frames`` is ``num_frames`` here).
    """

    def __init__(self, img_size: int = 224, patch_size: int = 16, in_chans: int = 3,
                 num_classes: int = SSV2_CLASSES, embed_dim: int = 768, depth: int = 12, num_heads: int = 12,
                 mlp_ratio: float = 4.0, qkv_bias: bool = True, drop_rate: float = 0.0, attn_drop_rate: float = 0.0,
                 drop_path_rate: float = 0.1, fc_drop_rate: float = 0.0, init_scale: float = 0.001,
                 num_frames: int = 16, tubelet_size: int = 2, use_checkpoint: bool = False,
                 llm: LLMSpec | nn.Module | None = None):
        super().__init__()
        self.num_classes, self.embed_dim, self.use_checkpoint = num_classes, embed_dim, use_checkpoint
        self.patch_embed = TubeletEmbed(img_size, patch_size, in_chans, embed_dim, num_frames, tubelet_size)
        # fixed, re-created for this clip size: never trained, never saved, never loaded
        self.register_buffer("pos_embed", sinusoid_table(self.patch_embed.num_patches, embed_dim), persistent=False)
        self.pos_drop = nn.Dropout(drop_rate)
        rates = torch.linspace(0, drop_path_rate, depth, device="cpu").tolist()
        norm_layer = partial(nn.LayerNorm, eps=1e-6)
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, proj_drop=drop_rate,
                  attn_drop=attn_drop_rate, drop_path=rates[i], norm_layer=norm_layer, attn_layer=QVBiasAttention)
            for i in range(depth))
        self.fc_norm = norm_layer(embed_dim)
        self.fc_dropout = nn.Dropout(fc_drop_rate) if fc_drop_rate > 0 else nn.Identity()
        self.head = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        self.apply(self._init_weights)
        if isinstance(self.head, nn.Linear):
            with torch.no_grad():
                self.head.weight.mul_(init_scale)
                self.head.bias.mul_(init_scale)
        # The graft, created after the ViT init as in LM4VE (the LLM block's layers are not nn.Linear anyway).
        self.llm = build_adapter(embed_dim, llm)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    @property
    def num_layers(self) -> int:
        """Number of ViT blocks (VideoMAE ``get_num_layers``)."""
        return len(self.blocks)

    def layer_id(self, name: str) -> int:
        """VideoMAE ``get_num_layer_for_vit``: 0 for the embedding, ``i + 1`` for block ``i``, ``num_layers + 1``
        for everything after the blocks (fc_norm, head, the LLM adapter)."""
        if name in ("pos_embed", "cls_token", "mask_token") or name.startswith("patch_embed"):
            return 0
        if name.startswith("blocks."):
            return int(name.split(".")[1]) + 1
        return self.num_layers + 1

    def no_weight_decay(self) -> set[str]:
        """VideoMAE's skip list (``pos_embed`` is a buffer here; 1-D tensors and biases skip decay anyway)."""
        return {"pos_embed", "cls_token"}

    def forward_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Clips ``(B, C, T, H, W)`` -> tokens after the blocks and the LLM block ``(B, N, D)``."""
        x = self.patch_embed(x)
        x = self.pos_drop(x + self.pos_embed.to(x.dtype))
        for block in self.blocks:
            if self.use_checkpoint and self.training and torch.is_grad_enabled():
                x = checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        if self.llm is not None:
            x = self.llm(x)  # all tokens, positions not re-added, no mask (LM4VE ViTLLaMA.forward_features)
        return x

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Mean over tokens, then ``fc_norm``: ``(B, D)``."""
        return self.fc_norm(self.forward_tokens(x).mean(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.fc_dropout(self.forward_features(x)))


def architecture(cfg: Mapping[str, Any] | argparse.Namespace) -> dict[str, int]:
    """``model``'s width/depth/heads/patch, with any ``embed_dim`` / ``depth`` / ``num_heads`` / ``patch_size``
    the config sets (for small test models)."""
    name = config_value(cfg, "model")
    if name not in ARCHS:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(ARCHS)}")
    return {key: int(config_value(cfg, key, default)) for key, default in ARCHS[name].items()}


def build_model(cfg: Mapping[str, Any] | argparse.Namespace, num_classes: int | None = None) -> VideoViT:
    """The model a run config describes (train, evaluate and the analysis tools use this one constructor).

    Keys read: ``model``, ``embed_dim`` / ``depth`` / ``num_heads`` / ``patch_size`` (overrides), ``input_size``,
    ``num_frames``, ``tubelet_size``, ``drop``, ``attn_drop_rate``, ``drop_path``, ``fc_drop_rate``,
    ``init_scale``, ``use_checkpoint``, ``nb_classes`` (unless ``num_classes`` is given) and ``llm_*``.
    """
    def value(key: str, default: Any) -> Any:
        return config_value(cfg, key, default)

    return VideoViT(
        img_size=int(value("input_size", 224)),
        num_classes=int(num_classes if num_classes is not None else value("nb_classes", SSV2_CLASSES)),
        drop_rate=float(value("drop", 0.0)), attn_drop_rate=float(value("attn_drop_rate", 0.0)),
        drop_path_rate=float(value("drop_path", 0.1)), fc_drop_rate=float(value("fc_drop_rate", 0.0)),
        init_scale=float(value("init_scale", 0.001)), num_frames=int(value("num_frames", 16)),
        tubelet_size=int(value("tubelet_size", 2)), use_checkpoint=bool(value("use_checkpoint", False)),
        llm=LLMSpec.from_config(cfg), **architecture(cfg))
