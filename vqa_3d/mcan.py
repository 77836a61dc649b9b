"""MCAN layers as ScanQA's ``models/mcan_sqa_module.py`` has them (from MILVLG/mcan-vqa), names kept.

Details that decide parity: ``LayerNorm`` is ``a_2 * (x - mean) / (std + eps) + b_2`` with the *unbiased* std and
eps 1e-6 added to the std; masks are True for padding and filled with -1e9 before the softmax; ``AttFlat`` returns
the attention-weighted sum projected by ``linear_merge`` (and the attention).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class FC(nn.Module):
    def __init__(self, in_size: int, out_size: int, pdrop: float = 0.0, use_gelu: bool = True):
        super().__init__()
        self.pdrop, self.use_gelu = pdrop, use_gelu
        self.linear = nn.Linear(in_size, out_size)
        if use_gelu:
            self.gelu = nn.GELU()
        if pdrop > 0:
            self.dropout = nn.Dropout(pdrop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.linear(x)
        if self.use_gelu:
            x = self.gelu(x)
        return self.dropout(x) if self.pdrop > 0 else x


class MLP(nn.Module):
    def __init__(self, in_size: int, mid_size: int, out_size: int, pdrop: float = 0.0, use_gelu: bool = True):
        super().__init__()
        self.fc = FC(in_size, mid_size, pdrop=pdrop, use_gelu=use_gelu)
        self.linear = nn.Linear(mid_size, out_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.fc(x))


class LayerNorm(nn.Module):
    """MCAN's LayerNorm: unbiased std, eps added to the std (not ``nn.LayerNorm``)."""

    def __init__(self, size: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.a_2 = nn.Parameter(torch.ones(size))
        self.b_2 = nn.Parameter(torch.zeros(size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(-1, keepdim=True)
        std = x.std(-1, keepdim=True)
        return self.a_2 * (x - mean) / (std + self.eps) + self.b_2


class AttFlat(nn.Module):
    """Attention pooling of a sequence to one vector: ``linear_merge(sum_i softmax(mlp(x))_i x_i)``."""

    def __init__(self, hidden_size: int, flat_mlp_size: int = 512, flat_glimpses: int = 1, flat_out_size: int = 1024,
                 pdrop: float = 0.1):
        super().__init__()
        self.mlp = MLP(hidden_size, flat_mlp_size, flat_glimpses, pdrop=pdrop, use_gelu=True)
        self.flat_glimpses = flat_glimpses
        self.linear_merge = nn.Linear(hidden_size * flat_glimpses, flat_out_size)

    def forward(self, x: torch.Tensor, x_mask: torch.Tensor | None):
        """``x`` (B, N, H), ``x_mask`` (B, 1, 1, N) True = ignore -> ((B, flat_out_size), attention (B, N, G))."""
        att = self.mlp(x)
        if x_mask is not None:
            att = att.masked_fill(x_mask.squeeze(1).squeeze(1).unsqueeze(2), -1e9)
        att = F.softmax(att, dim=1)
        x_atted = torch.cat([torch.sum(att[:, :, i:i + 1] * x, dim=1) for i in range(self.flat_glimpses)], dim=1)
        return self.linear_merge(x_atted), att


class MHAtt(nn.Module):
    def __init__(self, hidden_size: int, num_heads: int = 8, pdrop: float = 0.1):
        super().__init__()
        self.linear_v = nn.Linear(hidden_size, hidden_size)
        self.linear_k = nn.Linear(hidden_size, hidden_size)
        self.linear_q = nn.Linear(hidden_size, hidden_size)
        self.linear_merge = nn.Linear(hidden_size, hidden_size)
        self.hidden_size, self.num_heads = hidden_size, num_heads
        self.head_hidden_size = hidden_size // num_heads
        self.dropout = nn.Dropout(pdrop)

    def forward(self, v: torch.Tensor, k: torch.Tensor, q: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        b = q.size(0)

        def heads(t: torch.Tensor, linear: nn.Linear) -> torch.Tensor:
            return linear(t).view(b, -1, self.num_heads, self.head_hidden_size).transpose(1, 2)

        v, k, q = heads(v, self.linear_v), heads(k, self.linear_k), heads(q, self.linear_q)
        scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(q.size(-1))
        if mask is not None:
            scores = scores.masked_fill(mask, -1e9)
        att = self.dropout(F.softmax(scores, dim=-1))
        atted = torch.matmul(att, v).transpose(1, 2).contiguous().view(b, -1, self.hidden_size)
        return self.linear_merge(atted)


class FFN(nn.Module):
    def __init__(self, hidden_size: int, pdrop: float = 0.1):
        super().__init__()
        self.mlp = MLP(hidden_size, hidden_size * 4, hidden_size, pdrop=pdrop, use_gelu=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)


class SA(nn.Module):
    """Self-attention + FFN, post-norm."""

    def __init__(self, hidden_size: int, num_heads: int = 8, pdrop: float = 0.1):
        super().__init__()
        self.mhatt = MHAtt(hidden_size, num_heads, pdrop)
        self.ffn = FFN(hidden_size, pdrop)
        self.dropout1, self.norm1 = nn.Dropout(pdrop), LayerNorm(hidden_size)
        self.dropout2, self.norm2 = nn.Dropout(pdrop), LayerNorm(hidden_size)

    def forward(self, x: torch.Tensor, x_mask: torch.Tensor | None) -> torch.Tensor:
        x = self.norm1(x + self.dropout1(self.mhatt(x, x, x, x_mask)))
        return self.norm2(x + self.dropout2(self.ffn(x)))


class SGA(nn.Module):
    """Self-attention on ``x`` (mask ``x_mask``), attention from ``x`` to ``y`` (mask ``y_mask``), FFN."""

    def __init__(self, hidden_size: int, num_heads: int = 8, pdrop: float = 0.1):
        super().__init__()
        self.mhatt1 = MHAtt(hidden_size, num_heads, pdrop)
        self.mhatt2 = MHAtt(hidden_size, num_heads, pdrop)
        self.ffn = FFN(hidden_size, pdrop)
        self.dropout1, self.norm1 = nn.Dropout(pdrop), LayerNorm(hidden_size)
        self.dropout2, self.norm2 = nn.Dropout(pdrop), LayerNorm(hidden_size)
        self.dropout3, self.norm3 = nn.Dropout(pdrop), LayerNorm(hidden_size)

    def forward(self, x: torch.Tensor, y: torch.Tensor, x_mask: torch.Tensor | None,
                y_mask: torch.Tensor | None) -> torch.Tensor:
        x = self.norm1(x + self.dropout1(self.mhatt1(x, x, x, x_mask)))
        x = self.norm2(x + self.dropout2(self.mhatt2(y, y, x, y_mask)))
        return self.norm3(x + self.dropout3(self.ffn(x)))
