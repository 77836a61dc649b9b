"""mmTransformer (Liu et al., CVPR 2021): LaneNet subgraph + the stacked transformer (STF) + parallel heads, ± the
frozen LLM block. Follows decisionforce/mmTransformer (lib/models/mmTransformer.py, TF_version/
stacked_transformer.py, TF_utils.py; inference code only): d_model 128, FFN 256, 2 heads, 2 layers per stack,
dropout 0, K learned queries (one orthogonally initialised ``Embedding(K, 128)``), history encoder unmasked,
lane memory and social tokens masked.

    HISTORY (B, A, H-1, 4) [dx, dy, t_mid, valid] -> hist_tf (encoder-decoder, queries as decoder input)
      -> fusion1(+ pos_emb(POS)) -> lane_dec over lane_enc(lane_emb(LaneNet(LANE)))  (per agent x query)
      -> dist_emb(flattened queries) -> fusion2(+ pos) -> social_enc over agents
      -> prediction_header(cat[social, lane_out]) : K trajectories (cumulative offsets) + K logits per agent

``llm_placement`` (where the adapter runs; padded tokens masked in its attention):
  ``lanes+social`` (default): the lane memory (after lane_enc) and the social tokens (after social_enc), one
      adapter module called on each — the only per-lane and per-agent token sets of STF, the paper's "agent and
      lane tokens ... before the regression decoder";
  ``lanes``: the lane memory only;  ``social``: the social tokens only;
  ``header``: the 256-d (agent x query) features before the prediction header.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from common.frozen_lm import build_adapter

from .layers import MultiHeadAttention, PolylineSubgraph, ensure_one

PLACEMENTS = ("lanes+social", "lanes", "social", "header")


class FeedForward(nn.Module):
    """``w_2(relu(w_1(x)))`` (TF_utils.PointerwiseFeedforward)."""

    def __init__(self, d_model: int, d_ff: int):
        super().__init__()
        self.w_1, self.w_2 = nn.Linear(d_model, d_ff), nn.Linear(d_ff, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w_2(torch.relu(self.w_1(x)))


class EncoderLayer(nn.Module):
    """Pre-norm self-attention + feed-forward, residual (Annotated Transformer, as TF_utils)."""

    def __init__(self, d_model: int, heads: int, d_ff: int):
        super().__init__()
        self.self_attn = MultiHeadAttention(heads, d_model)
        self.feed_forward = FeedForward(d_model, d_ff)
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.self_attn(h, h, h, mask)
        return x + self.feed_forward(self.norm2(x))


class DecoderLayer(nn.Module):
    """Pre-norm self-attention, source attention, feed-forward."""

    def __init__(self, d_model: int, heads: int, d_ff: int):
        super().__init__()
        self.self_attn = MultiHeadAttention(heads, d_model)
        self.src_attn = MultiHeadAttention(heads, d_model)
        self.feed_forward = FeedForward(d_model, d_ff)
        self.norm1, self.norm2, self.norm3 = (nn.LayerNorm(d_model) for _ in range(3))

    def forward(self, x: torch.Tensor, memory: torch.Tensor, src_mask: torch.Tensor | None) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.self_attn(h, h, h, None)
        h = self.norm2(x)
        x = x + self.src_attn(h, memory, memory, src_mask)
        return x + self.feed_forward(self.norm3(x))


class Stack(nn.Module):
    """N layers and a final LayerNorm."""

    def __init__(self, layer: type, n: int, d_model: int, heads: int, d_ff: int):
        super().__init__()
        self.layers = nn.ModuleList([layer(d_model, heads, d_ff) for _ in range(n)])
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor, *args) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, *args)
        return self.norm(x)


def sinusoid(length: int, d_model: int) -> torch.Tensor:
    pos = torch.arange(length).unsqueeze(1).float()
    div = torch.exp(torch.arange(0, d_model, 2).float() * -(math.log(10000.0) / d_model))
    pe = torch.zeros(length, d_model)
    pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * div), torch.cos(pos * div)
    return pe


def mlp(d_in: int, hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.LayerNorm(hidden), nn.ReLU(), nn.Linear(hidden, d_out))


class Generator(nn.Module):
    """GeneratorWithParallelHeads626: ``reg_mlp`` -> T x 2 offsets, cumulated; ``cls_FFN`` +
    ``classification_layer`` -> one logit per query (softmax over queries at inference)."""

    def __init__(self, d_model: int, steps: int, reg_h: int = 128, cls_h: int = 128):
        super().__init__()
        self.steps = steps
        self.reg_mlp = nn.Sequential(nn.Linear(d_model, reg_h * 2), nn.LayerNorm(reg_h * 2), nn.ReLU(),
                                     nn.Linear(reg_h * 2, reg_h), nn.Linear(reg_h, steps * 2))
        self.cls_FFN = FeedForward(d_model, 2 * d_model)
        self.classification_layer = nn.Sequential(nn.Linear(d_model, cls_h), nn.Linear(cls_h, 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pred = self.reg_mlp(x).reshape(*x.shape[:-1], self.steps, 2).cumsum(-2)
        return pred, self.classification_layer(self.cls_FFN(x)).squeeze(-1)


class MMTransformer(nn.Module):
    """Args: hist_dim (4), lane_dim (7), steps (future), hist_len (H - 1), modes (K queries), subgraph_width (32),
    subgraph_layers (2), d_model (128), d_ff (256), heads (2), layers (2), pos_dim (64), llm, llm_placement."""

    def __init__(self, lane_dim: int, steps: int, hist_len: int, modes: int = 6, hist_dim: int = 4,
                 subgraph_width: int = 32, subgraph_layers: int = 2, d_model: int = 128, d_ff: int = 256,
                 heads: int = 2, layers: int = 2, pos_dim: int = 64, llm=None, llm_placement: str = "lanes+social"):
        super().__init__()
        if llm_placement not in PLACEMENTS:
            raise ValueError(f"llm_placement {llm_placement!r} is not one of {', '.join(PLACEMENTS)}")
        self.modes, self.placement, self.d_model = modes, llm_placement, d_model
        self.subgraph = PolylineSubgraph(lane_dim, subgraph_width, subgraph_layers)
        self.hist_emb = nn.Linear(hist_dim, d_model)
        self.register_buffer("pe", sinusoid(max(hist_len, 1), d_model), persistent=False)
        self.hist_enc = Stack(EncoderLayer, layers, d_model, heads, d_ff)
        self.hist_dec = Stack(DecoderLayer, layers, d_model, heads, d_ff)
        self.lane_emb = nn.Linear(self.subgraph.out_dim, d_model)
        self.lane_enc = Stack(EncoderLayer, layers, d_model, heads, d_ff)
        self.lane_dec = Stack(DecoderLayer, layers, d_model, heads, d_ff)
        self.pos_emb = mlp(2, pos_dim, pos_dim)
        self.dist_emb = mlp(modes * d_model, d_model, d_model)
        self.fusion1 = mlp(d_model + pos_dim, d_model, d_model)
        self.fusion2 = mlp(d_model + pos_dim, d_model, d_model)
        self.social_enc = Stack(EncoderLayer, layers, d_model, heads, d_ff)
        self.prediction_header = Generator(2 * d_model, steps)
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        self.query_embed = nn.Embedding(modes, d_model)
        nn.init.orthogonal_(self.query_embed.weight)
        self.llm = build_adapter(2 * d_model if llm_placement == "header" else d_model, llm)

    def _adapt(self, tokens: torch.Tensor, mask: torch.Tensor, where: str) -> torch.Tensor:
        if self.llm is None or where not in self.placement.split("+"):
            return tokens
        return self.llm(tokens, padding_mask=~mask)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """-> the target's ``traj`` (B, K, T, 2) and ``logits`` (B, K); ``all_traj`` / ``all_logits`` per agent."""
        av, vmask = batch["agent_vec"], batch["agent_vec_mask"]
        hist = torch.stack([av[..., 2] - av[..., 0], av[..., 3] - av[..., 1], av[..., 4], vmask.to(av.dtype)], -1)
        b, a, t, _ = hist.shape
        agent_mask = ensure_one(batch["agent_mask"])
        lane_mask = ensure_one(batch["lane_mask"])
        x = self.hist_emb(hist) * math.sqrt(self.d_model) + self.pe[:t]
        memory = self.hist_enc(x.reshape(b * a, t, -1), None)
        queries = self.query_embed.weight.expand(b * a, -1, -1)
        hist_out = self.hist_dec(queries, memory, None).reshape(b, a, self.modes, -1)
        pos = self.pos_emb(batch["agent_pos"])
        hist_out = self.fusion1(torch.cat([pos.unsqueeze(2).expand(-1, -1, self.modes, -1), hist_out], -1))
        lane_tok = self.lane_emb(self.subgraph(batch["lane_vec"], batch["lane_vec_mask"]))
        lane_mem = self._adapt(self.lane_enc(lane_tok, lane_mask), lane_mask, "lanes")
        n_l = lane_mem.shape[1]
        lane_out = self.lane_dec(hist_out.reshape(b * a, self.modes, -1),
                                 lane_mem.unsqueeze(1).expand(-1, a, -1, -1).reshape(b * a, n_l, -1),
                                 lane_mask.unsqueeze(1).expand(-1, a, -1).reshape(b * a, n_l))
        lane_out = lane_out.reshape(b, a, self.modes, -1)
        dist = self.dist_emb(lane_out.reshape(b, a, -1))
        social = self.social_enc(self.fusion2(torch.cat([pos, dist], -1)), agent_mask)
        social = self._adapt(social, agent_mask, "social")
        feats = torch.cat([social.unsqueeze(2).expand(-1, -1, self.modes, -1), lane_out], -1)
        if self.placement == "header" and self.llm is not None:
            tok_mask = agent_mask.unsqueeze(2).expand(-1, -1, self.modes).reshape(b, a * self.modes)
            feats = self.llm(feats.reshape(b, a * self.modes, -1), padding_mask=~tok_mask).reshape(feats.shape)
        traj, logits = self.prediction_header(feats)
        return {"traj": traj[:, 0], "logits": logits[:, 0], "all_traj": traj, "all_logits": logits}
