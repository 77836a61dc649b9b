"""Models for the analysis tests: image_cls's own ViT (built by its task, the graft included) with a stand-in
adapter shaped like common.frozen_lm's (``in_proj`` -> ``lm.blocks[i].attn / .ffn`` -> ``out_proj``) whose
attention can also run an explicit softmax (so the tests see its probabilities)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn

from common.engine.config import namespace_from_config
from common.task import get_task


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


IMAGE_SIZE, IN_CHANS, GRID, HEADS = 16, 1, 4, 3  # vit_demo_llm (patch 4, width 96, depth 4, 3 heads) at 16 px


def make_vit(kind: str = "lm", use_sdpa: bool = True, n_blocks: int = 1) -> nn.Module:
    """image_cls's ``vit_demo_llm`` at 16 px (4 x 4 patches + CLS), built by ``get_task("image_cls").build_model``;
    kind: 'lm' (its ``llm`` replaced by a stand-in adapter with a stand-in LM), 'mlp' (MLP control) or 'none'."""
    task = get_task("image_cls")
    args = namespace_from_config(task.build_parser(), {
        "model": "vit_demo_llm", "input_size": IMAGE_SIZE, "in_chans": IN_CHANS, "num_classes": 5, "drop_path": 0.0,
        "llm_variant": "none"})
    torch.manual_seed(0)
    model = task.build_model(args)
    if kind != "none":
        lm_dim = 48
        lm = StandInLM(lm_dim, n_heads=4, n_blocks=n_blocks, use_sdpa=use_sdpa) if kind == "lm" else None
        model.llm = StandInAdapter(model.embed_dim, lm_dim, lm)
    return model.eval()
