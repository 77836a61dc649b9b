"""Pieces both models share: masked max-pool, the polyline subgraph, padding-aware multi-head attention."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def masked_max(x: torch.Tensor, mask: torch.Tensor, dim: int) -> torch.Tensor:
    """Max over ``dim`` of the entries where ``mask`` (x's shape without the channel dim) is True; 0 if none."""
    m = mask.unsqueeze(-1)
    out = x.masked_fill(~m, float("-inf")).amax(dim)
    return torch.where(m.any(dim), out, torch.zeros_like(out))


def ensure_one(mask: torch.Tensor) -> torch.Tensor:
    """``mask`` (B, N) with slot 0 switched on in rows that have no True (an all-padding key set would give NaN
    attention; slot 0 then holds a zero token)."""
    empty = ~mask.any(-1, keepdim=True)
    first = torch.zeros_like(mask)
    first[..., 0] = True
    return mask | (empty & first)


class MLP(nn.Module):
    """``Linear -> LayerNorm -> ReLU`` (the per-vector layer of VectorNet's subgraph and mmTransformer's LaneNet)."""

    def __init__(self, in_channels: int, hidden_unit: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_channels, hidden_unit), nn.LayerNorm(hidden_unit), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)


class PolylineSubgraph(nn.Module):
    """Layers of per-vector MLP, max-pool over the polyline's valid vectors, concatenation of the pooled feature
    to every vector; a final max-pool gives one token of width 2 x ``hidden`` per polyline (mmTransformer's
    ``LaneNet``, module names kept: ``layer_seq.lmlp_{i}.mlp``; padded vectors are left out of the pools)."""

    def __init__(self, in_channels: int, hidden: int, num_layers: int):
        super().__init__()
        self.layer_seq = nn.Sequential()
        for i in range(num_layers):
            self.layer_seq.add_module(f"lmlp_{i}", MLP(in_channels, hidden))
            in_channels = hidden * 2
        self.out_dim = hidden * 2

    def forward(self, vectors: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``vectors`` (..., V, C), ``mask`` (..., V) -> (..., 2 * hidden)."""
        x = vectors
        for layer in self.layer_seq:
            x = layer(x)
            pooled = masked_max(x, mask, -2)
            x = torch.cat([x, pooled.unsqueeze(-2).expand_as(x)], -1)
        return masked_max(x, mask, -2)


class MultiHeadAttention(nn.Module):
    """Multi-head attention (``linears`` = q, k, v, out as in the Annotated Transformer that mmTransformer uses);
    ``key_mask`` (B, Nk) True = a real key; padded keys get no weight."""

    def __init__(self, heads: int, d_model: int, d_in: int | None = None, d_out: int | None = None,
                 dropout: float = 0.0, scale: bool = True):
        super().__init__()
        if d_model % heads:
            raise ValueError(f"d_model {d_model} is not divisible by {heads} heads")
        self.h, self.d_k = heads, d_model // heads
        self.linears = nn.ModuleList([nn.Linear(d_in or d_model, d_model) for _ in range(3)] +
                                     [nn.Linear(d_model, d_out or d_model)])
        self.dropout, self.scale = dropout, scale

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                key_mask: torch.Tensor | None = None) -> torch.Tensor:
        lead, nq, nk = query.shape[:-2], query.shape[-2], key.shape[-2]
        q, k, v = (lin(x).reshape(-1, x.shape[-2], self.h, self.d_k).transpose(1, 2)
                   for lin, x in zip(self.linears, (query, key, value)))
        mask = None if key_mask is None else key_mask.reshape(-1, 1, 1, nk).to(torch.bool)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0,
                                             scale=None if self.scale else 1.0)
        out = out.transpose(1, 2).reshape(*lead, nq, self.h * self.d_k)
        return self.linears[3](out)
