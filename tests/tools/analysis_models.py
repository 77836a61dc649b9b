"""Stand-in models for the analysis tests: a tiny timm ViT with an adapter shaped like common.frozen_lm's
(``in_proj`` -> ``lm.blocks[i].attn / .ffn`` -> ``out_proj``), so these tests do not depend on the real core."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer
from torch import nn


class StandInAttention(nn.Module):
    """Meta-style names (wq/wk/wv/wo), bidirectional; SDPA, or an explicit softmax that keeps its probabilities."""

    def __init__(self, dim: int, n_heads: int, use_sdpa: bool = True):
        super().__init__()
        self.n_heads, self.head_dim, self.use_sdpa = n_heads, dim // n_heads, use_sdpa
        self.wq, self.wk, self.wv, self.wo = (nn.Linear(dim, dim, bias=False) for _ in range(4))
        self.last_probs: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = (w(x).view(b, n, self.n_heads, self.head_dim).transpose(1, 2) for w in (self.wq, self.wk, self.wv))
        if self.use_sdpa:
            out = F.scaled_dot_product_attention(q, k, v)
        else:
            probs = (q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)).softmax(-1)
            self.last_probs = probs
            out = probs @ v
        return self.wo(out.transpose(1, 2).reshape(b, n, -1))


class StandInBlock(nn.Module):
    def __init__(self, dim: int, n_heads: int, use_sdpa: bool):
        super().__init__()
        self.attn_norm, self.ffn_norm = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = StandInAttention(dim, n_heads, use_sdpa)
        self.ffn = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x))
        return x + self.ffn(self.ffn_norm(x))


class StandInLM(nn.Module):
    def __init__(self, dim: int, n_heads: int, n_blocks: int, use_sdpa: bool):
        super().__init__()
        self.config = SimpleNamespace(n_heads=n_heads, n_kv_heads=n_heads)
        self.blocks = nn.ModuleList(StandInBlock(dim, n_heads, use_sdpa) for _ in range(n_blocks))
        self.final_norm = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.final_norm(x)


class StandInAdapter(nn.Module):
    """in_proj -> lm (or GELU+LayerNorm ``mlp`` control when lm is None) -> out_proj."""

    def __init__(self, visual_dim: int, lm_dim: int, lm: nn.Module | None):
        super().__init__()
        self.in_proj = nn.Linear(visual_dim, lm_dim, bias=False)
        self.lm = lm
        self.mlp = nn.Sequential(nn.GELU(), nn.LayerNorm(lm_dim)) if lm is None else None
        self.out_proj = nn.Linear(lm_dim, visual_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_proj((self.lm if self.lm is not None else self.mlp)(self.in_proj(x)))


class StandInViTLLM(VisionTransformer):
    """timm ViT with ``self.llm`` after all blocks, before the final norm (image_cls's placement)."""

    def __init__(self, llm: nn.Module | None = None, **kwargs):
        super().__init__(**kwargs)
        self.llm = llm

    def forward_features(self, x: torch.Tensor, attn_mask=None, is_causal=False) -> torch.Tensor:
        x = self.norm_pre(self.patch_drop(self._pos_embed(self.patch_embed(x))))
        x = self.blocks(x)
        if self.llm is not None:
            x = self.llm(x)
        return self.norm(x)


def make_vit(kind: str = "lm", use_sdpa: bool = True, n_blocks: int = 1) -> StandInViTLLM:
    """kind: 'lm' (adapter with a stand-in LM), 'mlp' (MLP control) or 'none' (baseline)."""
    torch.manual_seed(0)
    dim, lm_dim = 32, 48
    llm = None
    if kind != "none":
        lm = StandInLM(lm_dim, n_heads=4, n_blocks=n_blocks, use_sdpa=use_sdpa) if kind == "lm" else None
        llm = StandInAdapter(dim, lm_dim, lm)
    model = StandInViTLLM(llm=llm, img_size=32, patch_size=8, embed_dim=dim, depth=2, num_heads=4, num_classes=5)
    return model.eval()


@pytest.fixture
def vit_factory():
    return make_vit
