"""VectorNet (Gao et al., CVPR 2020) with the paper's K-mode head, ± the frozen LLM block on its polyline tokens.

    agent / lane vectors -> polyline subgraph (3 x [MLP, max-pool, concat], hidden 64 -> 128-d token, L2-normed)
      -> global interaction graph (1 self-attention layer over all polyline tokens, width 64, padding masked)
      -> [LLM adapter over the same tokens, padding masked]  <- the graft (paper Fig. G)
      -> decoder on the target's token: K trajectories x T steps + K mode logits
Optional node completion (VectorNet's auxiliary task): one random non-target polyline token is hidden before the
global graph and reconstructed from its output (smooth-L1 to the hidden token, detached).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from common.frozen_lm import build_adapter

from .heads import MultiModalHead
from .layers import MultiHeadAttention, PolylineSubgraph, ensure_one


def polyline_inputs(batch: dict[str, torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Agent and lane vectors in one feature layout ``[x0 y0 x1 y1 | agent extras | lane extras | is_agent
    is_lane]``: [(agent vectors (B, A, Va, C), mask (B, A, Va)), (lane vectors (B, L, Vl, C), mask)]. The two
    sets go through the same subgraph separately (their vector counts differ; padding would only cost time)."""
    av, lv = batch["agent_vec"], batch["lane_vec"]
    ea, el = av.shape[-1] - 4, lv.shape[-1] - 4
    a = torch.cat([av[..., :4], av[..., 4:], av.new_zeros(*av.shape[:-1], el), av.new_ones(*av.shape[:-1], 1),
                   av.new_zeros(*av.shape[:-1], 1)], -1)
    lane = torch.cat([lv[..., :4], lv.new_zeros(*lv.shape[:-1], ea), lv[..., 4:], lv.new_zeros(*lv.shape[:-1], 1),
                      lv.new_ones(*lv.shape[:-1], 1)], -1)
    return [(a, batch["agent_vec_mask"]), (lane, batch["lane_vec_mask"])]


class VectorNet(nn.Module):
    """Args: agent_dim / lane_dim (vector features), steps (future), modes (K), subgraph_hidden (64),
    subgraph_layers (3), global_width (64), heads (1), decoder_hidden, normalize (L2 on polyline tokens),
    node_completion (weight; 0 = off), llm (an ``LLMSpec`` / module / None)."""

    def __init__(self, agent_dim: int, lane_dim: int, steps: int, modes: int = 6, subgraph_hidden: int = 64,
                 subgraph_layers: int = 3, global_width: int = 64, heads: int = 1, decoder_hidden: int = 128,
                 normalize: bool = True, node_completion: float = 0.0, llm=None):
        super().__init__()
        in_dim = agent_dim + lane_dim - 4 + 2
        self.normalize, self.node_completion = normalize, node_completion
        self.subgraph = PolylineSubgraph(in_dim, subgraph_hidden, subgraph_layers)
        self.global_graph = MultiHeadAttention(heads, global_width, d_in=self.subgraph.out_dim, d_out=global_width)
        self.llm = build_adapter(global_width, llm)
        self.decoder = MultiModalHead(global_width, decoder_hidden, modes, steps)
        self.completion = nn.Linear(global_width, self.subgraph.out_dim) if node_completion > 0 else None

    def tokens(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """Polyline tokens after the global graph (and the adapter): (B, N, width), their mask (B, N)."""
        parts = polyline_inputs(batch)
        feats = torch.cat([self.subgraph(v, m) for v, m in parts], 1)
        poly_mask = torch.cat([m.any(-1) for _, m in parts], 1)
        if self.normalize:
            feats = F.normalize(feats, dim=-1)
        extra = {}
        if self.completion is not None and self.training:
            feats, extra = self._hide_one(feats, poly_mask)
        poly_mask = ensure_one(poly_mask)
        tokens = self.global_graph(feats, feats, feats, key_mask=poly_mask)
        if self.llm is not None:
            tokens = self.llm(tokens, padding_mask=~poly_mask)
        return tokens, poly_mask, extra

    def _hide_one(self, feats: torch.Tensor, poly_mask: torch.Tensor) -> tuple[torch.Tensor, dict]:
        candidates = poly_mask.clone()
        candidates[:, 0] = False
        has = candidates.any(1)
        pick = torch.multinomial(candidates.float() + (~has).float().unsqueeze(1) * 1e-6, 1).squeeze(1)
        b = torch.arange(feats.shape[0], device=feats.device)
        target = feats[b, pick].detach()
        hidden = feats.clone()
        hidden[b[has], pick[has]] = 0.0
        return hidden, {"pick": pick, "has": has, "target": target}

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """-> ``traj`` (B, K, T, 2) in the target's frame, ``logits`` (B, K) (+ ``completion`` loss in training)."""
        tokens, _, extra = self.tokens(batch)
        out = self.decoder(tokens[:, 0])
        if extra:
            b = torch.arange(tokens.shape[0], device=tokens.device)
            pred = self.completion(tokens[b, extra["pick"]])
            err = F.smooth_l1_loss(pred, extra["target"], reduction="none").mean(-1)
            out["completion"] = (err * extra["has"]).sum() / extra["has"].sum().clamp(min=1)
        return out
