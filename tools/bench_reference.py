"""The yardstick for ``tools.bench``: a LLaMA block written the way the paper's official code runs it.

It mirrors the style of LM4VisualEncoding's ``llama.py`` (commit e34e919), not its code: separate q/k/v (and
w1/w3) GEMMs, the score matrix materialised and soft-maxed explicitly in fp32, frozen weights kept in fp32
(under autocast every GEMM re-casts them), RMSNorm statistics in fp32, a weight-free final RMSNorm, output
cast to fp32. Bidirectional, no RoPE, no padding mask. It exists only to measure against and to check that the
fused block computes the same function (``tests/common/test_frozen_lm_numerics.py``); it is never used to train.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from common.frozen_lm import FrozenLM, LMConfig


class ReferenceRMSNorm(nn.Module):
    """``x * rsqrt(mean(x^2) + eps)`` in fp32, cast back, times the weight (Meta's RMSNorm)."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x) * self.weight


class ReferenceAttention(nn.Module):
    """Three separate projections, explicit ``softmax(q k^T / sqrt(d))`` in fp32 over the full score matrix."""

    def __init__(self, cfg: LMConfig):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        self.wq = nn.Linear(cfg.dim, cfg.n_heads * cfg.head_dim, bias=False)
        self.wk = nn.Linear(cfg.dim, cfg.n_kv_heads * cfg.head_dim, bias=False)
        self.wv = nn.Linear(cfg.dim, cfg.n_kv_heads * cfg.head_dim, bias=False)
        self.wo = nn.Linear(cfg.n_heads * cfg.head_dim, cfg.dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, n, _ = x.shape
        q = self.wq(x).view(batch, n, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.wk(x).view(batch, n, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = self.wv(x).view(batch, n, self.n_kv_heads, self.head_dim).transpose(1, 2)
        if self.n_kv_heads != self.n_heads:  # Meta's LLaMA-2 repeat_kv
            k = k.repeat_interleave(self.n_heads // self.n_kv_heads, dim=1)
            v = v.repeat_interleave(self.n_heads // self.n_kv_heads, dim=1)
        scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(self.head_dim)
        probs = F.softmax(scores.float(), dim=-1).type_as(q)
        out = torch.matmul(probs, v).transpose(1, 2).contiguous().view(batch, n, -1)
        return self.wo(out)


class ReferenceFeedForward(nn.Module):
    """``w2(silu(w1 x) * w3 x)`` with w1 and w3 as two GEMMs."""

    def __init__(self, cfg: LMConfig):
        super().__init__()
        self.w1 = nn.Linear(cfg.dim, cfg.ffn_hidden, bias=False)
        self.w2 = nn.Linear(cfg.ffn_hidden, cfg.dim, bias=False)
        self.w3 = nn.Linear(cfg.dim, cfg.ffn_hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class ReferenceBlock(nn.Module):
    """Pre-norm LLaMA block: ``h = x + attention(attention_norm(x)); out = h + feed_forward(ffn_norm(h))``."""

    def __init__(self, cfg: LMConfig):
        super().__init__()
        self.attention_norm = ReferenceRMSNorm(cfg.dim, cfg.norm_eps)
        self.attention = ReferenceAttention(cfg)
        self.ffn_norm = ReferenceRMSNorm(cfg.dim, cfg.norm_eps)
        self.feed_forward = ReferenceFeedForward(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x + self.attention(self.attention_norm(x))
        return h + self.feed_forward(self.ffn_norm(h))


class ReferenceLM(nn.Module):
    """Consecutive reference blocks + weight-free final RMSNorm, output in fp32; frozen fp32 weights.

    Takes the ``padding_mask`` argument of ``FrozenLM.forward`` only to be a drop-in for ``LLMAdapter``; like the
    official image code it has no masking and refuses a mask.
    """

    def __init__(self, cfg: LMConfig, n_blocks: int = 1):
        super().__init__()
        if cfg.family not in ("llama", "qwen2") or cfg.qkv_bias:
            raise ValueError(f"the reference-style block is a bias-free LLaMA block; {cfg.family!r} "
                             f"(qkv_bias={cfg.qkv_bias}) is not one")
        self.config, self.dim = cfg, cfg.dim
        self.layers = nn.ModuleList(ReferenceBlock(cfg) for _ in range(n_blocks))
        self.norm = ReferenceRMSNorm(cfg.dim, cfg.norm_eps)
        self.requires_grad_(False)

    @classmethod
    @torch.no_grad()
    def from_frozen_lm(cls, lm: FrozenLM) -> ReferenceLM:
        """The same weights as ``lm`` (a non-FP8 llama-family FrozenLM with final_norm 'unit'), un-fused into
        separate fp32 q/k/v and w1/w3 matrices."""
        if lm.final_norm_mode != "unit" or lm.fp8:
            raise ValueError("ReferenceLM.from_frozen_lm needs a non-FP8 FrozenLM with final_norm='unit'")
        ref = cls(lm.config, len(lm.blocks)).to(lm.blocks[0].attn.qkv.weight.device)
        for ours, theirs in zip(lm.blocks, ref.layers):
            q, k, v = ours.attn.qkv.weight.float().split(ours.attn.split, dim=0)
            w1, w3 = ours.ffn.gate_up.weight.float().split(ours.ffn.hidden, dim=0)
            pairs = [(theirs.attention.wq, q), (theirs.attention.wk, k), (theirs.attention.wv, v),
                     (theirs.attention.wo, ours.attn.out.weight), (theirs.feed_forward.w1, w1),
                     (theirs.feed_forward.w3, w3), (theirs.feed_forward.w2, ours.ffn.down.weight),
                     (theirs.attention_norm, ours.attn_norm.weight), (theirs.ffn_norm, ours.ffn_norm.weight)]
            for module, tensor in pairs:
                module.weight.copy_(tensor.float())
        return ref

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        if padding_mask is not None:
            raise ValueError("the reference-style block has no padding mask (neither has the official image code)")
        h = x
        for layer in self.layers:
            h = layer(h)
        return self.norm(h).float()
