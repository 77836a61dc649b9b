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


class Residual(nn.Module):
    """``x + sublayer(norm(x))`` (TF_utils.SublayerConnection: pre-norm, dropout 0)."""

    def __init__(self, size: int):
        super().__init__()
        self.norm = nn.LayerNorm(size)

    def forward(self, x: torch.Tensor, sublayer) -> torch.Tensor:
        return x + sublayer(self.norm(x))


class EncoderLayer(nn.Module):
    """Self-attention + feed-forward, each in a pre-norm residual (``sublayer.{0,1}``)."""

    def __init__(self, d_model: int, heads: int, d_ff: int):
        super().__init__()
        self.self_attn = MultiHeadAttention(heads, d_model)
        self.feed_forward = FeedForward(d_model, d_ff)
        self.sublayer = nn.ModuleList([Residual(d_model) for _ in range(2)])

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        x = self.sublayer[0](x, lambda h: self.self_attn(h, h, h, mask))
        return self.sublayer[1](x, self.feed_forward)


class DecoderLayer(nn.Module):
    """Self-attention, source attention, feed-forward (``sublayer.{0,1,2}``)."""

    def __init__(self, d_model: int, heads: int, d_ff: int):
        super().__init__()
        self.self_attn = MultiHeadAttention(heads, d_model)
        self.src_attn = MultiHeadAttention(heads, d_model)
        self.feed_forward = FeedForward(d_model, d_ff)
        self.sublayer = nn.ModuleList([Residual(d_model) for _ in range(3)])

    def forward(self, x: torch.Tensor, memory: torch.Tensor, src_mask: torch.Tensor | None) -> torch.Tensor:
        x = self.sublayer[0](x, lambda h: self.self_attn(h, h, h, None))
        x = self.sublayer[1](x, lambda h: self.src_attn(h, memory, memory, src_mask))
        return self.sublayer[2](x, self.feed_forward)


class Stack(nn.Module):
    """N layers and a final LayerNorm (TF_utils.Encoder / Decoder: ``layers``, ``norm``)."""

    def __init__(self, layer: type, n: int, d_model: int, heads: int, d_ff: int):
        super().__init__()
        self.layers = nn.ModuleList([layer(d_model, heads, d_ff) for _ in range(n)])
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor, *args) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, *args)
        return self.norm(x)


class LinearEmbedding(nn.Module):
    """``lut(x) * sqrt(d_model)``."""

    def __init__(self, inp_size: int, d_model: int):
        super().__init__()
        self.lut, self.scale = nn.Linear(inp_size, d_model), math.sqrt(d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lut(x) * self.scale


class PositionalEncoding(nn.Module):
    """Adds the sinusoidal table ``pe`` (max_len 5000, a saved buffer as upstream) over the step axis (-2)."""

    def __init__(self, d_model: int, max_len: int = 5000):
        super().__init__()
        pos = torch.arange(max_len).unsqueeze(1).float()
        div = torch.exp(torch.arange(0, d_model, 2).float() * -(math.log(10000.0) / d_model))
        pe = torch.zeros(max_len, d_model)
        pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * div), torch.cos(pos * div)
        self.register_buffer("pe", pe)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pe[: x.shape[-2]]


class HistoryTransformer(nn.Module):
    """TF_utils.EncoderDecoder: ``src_embed`` (LinearEmbedding, PositionalEncoding), ``encoder``, ``decoder``."""

    def __init__(self, in_dim: int, layers: int, d_model: int, heads: int, d_ff: int):
        super().__init__()
        self.encoder = Stack(EncoderLayer, layers, d_model, heads, d_ff)
        self.decoder = Stack(DecoderLayer, layers, d_model, heads, d_ff)
        self.src_embed = nn.Sequential(LinearEmbedding(in_dim, d_model), PositionalEncoding(d_model))

    def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        return self.decoder(tgt, self.encoder(self.src_embed(src), None), None)


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
    """Args: hist_dim (4), lane_dim (7), steps (future), modes (K queries), subgraph_width (32),
    subgraph_layers (2), d_model (128), d_ff (256), heads (2), layers (2), pos_dim (64), llm, llm_placement."""

    def __init__(self, lane_dim: int, steps: int, modes: int = 6, hist_dim: int = 4,
                 subgraph_width: int = 32, subgraph_layers: int = 2, d_model: int = 128, d_ff: int = 256,
                 heads: int = 2, layers: int = 2, pos_dim: int = 64, llm=None, llm_placement: str = "lanes+social"):
        super().__init__()
        if llm_placement not in PLACEMENTS:
            raise ValueError(f"llm_placement {llm_placement!r} is not one of {', '.join(PLACEMENTS)}")
        self.modes, self.placement, self.d_model = modes, llm_placement, d_model
        self.subgraph = PolylineSubgraph(lane_dim, subgraph_width, subgraph_layers)
        self.hist_tf = HistoryTransformer(hist_dim, layers, d_model, heads, d_ff)
        self.lane_emb = LinearEmbedding(self.subgraph.out_dim, d_model)
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
        queries = self.query_embed.weight.expand(b * a, -1, -1)
        hist_out = self.hist_tf(hist.reshape(b * a, t, -1), queries).reshape(b, a, self.modes, -1)
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
