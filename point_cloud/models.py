"""Point-BERT's fine-tuning ``PointTransformer`` with an optional frozen-LLM block, in plain torch.

Upstreams (read, not copied): lulutang0608/Point-BERT ``models/Point_BERT.py`` (``PointTransformer``,
``TransformerEncoder``, ``Block``, ``Attention``, ``Mlp``) and ``models/dvae.py`` (``Group``, ``Encoder``);
ziqipang/LM4VisualEncoding ``pointcloud_classification/models/Point_BERT.py`` (the LLaMA graft).

    points (B, N, 3) -> Group: FPS num_group centres, kNN group_size points each, re-centred
    -> Encoder (mini-PointNet, 256-d per group) -> reduce_dim (256 -> 384)
    -> [cls_token; tokens] with [cls_pos; pos_embed(centres)] added before *every* block
    -> blocks (12 x pre-norm ViT block, 6 heads, qkv without bias, drop path 0 .. 0.1)
    -> llm (optional: Linear 384 -> d_LM, frozen LLM block(s), Linear d_LM -> 384)       <- the graft
    -> norm -> cls_head_finetune([CLS, max over group tokens]) -> cls_dim logits

Module and parameter names are Point-BERT's, so its checkpoints load key for key (``point_cloud.checkpoints``).
Without an LLM the model has exactly Point-BERT's parameters (22,065,960 with ``cls_dim=40``).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from timm.layers import DropPath
from torch import nn

from common.frozen_lm import LLMSpec, build_adapter
from point_cloud.grouping import group_points


@dataclass
class PointBertConfig:
    """Architecture of the fine-tuning PointTransformer (Point-BERT ``cfgs/*/PointTransformer*.yaml``)."""

    trans_dim: int = 384
    depth: int = 12
    num_heads: int = 6
    drop_path_rate: float = 0.1
    cls_dim: int = 40  # 40 also for ScanObjectNN's 15 classes, as upstream: the extra logits are never targets
    num_group: int = 64  # 64 for 1024 points, 256 for 4096, 512 for 8192 (ModelNet40 4k/8k configs)
    group_size: int = 32
    encoder_dims: int = 256

    @classmethod
    def from_namespace(cls, args: argparse.Namespace) -> PointBertConfig:
        """From parsed options of the same names (``drop_path`` for ``drop_path_rate``)."""
        values = vars(args)
        found = {f.name: values[f.name] for f in fields(cls) if values.get(f.name) is not None}
        if values.get("drop_path") is not None:
            found["drop_path_rate"] = values["drop_path"]
        return cls(**found)


class Mlp(nn.Module):
    """fc1 -> GELU -> fc2 (Point-BERT/timm ``Mlp``; dropout 0 in every config, so none here)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Attention(nn.Module):
    """Multi-head self-attention; ``qkv`` without bias, ``proj`` with bias, scale head_dim^-0.5 (SDPA)."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"trans_dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class Block(nn.Module):
    """Pre-norm transformer block: x + DropPath(attn(norm1 x)), then + DropPath(mlp(norm2 x))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, drop_path: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class TransformerEncoder(nn.Module):
    """Point-BERT's block stack: the position embedding is added to the input of every block."""

    def __init__(self, dim: int, depth: int, num_heads: int, drop_path_rates: list[float]):
        super().__init__()
        self.blocks = nn.ModuleList(Block(dim, num_heads, drop_path=drop_path_rates[i]) for i in range(depth))

    def forward(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x + pos)
        return x


class Encoder(nn.Module):
    """Mini-PointNet group encoder: per group, shared MLP -> max-pool -> concat -> MLP -> max-pool, one token."""

    def __init__(self, encoder_channel: int):
        super().__init__()
        self.encoder_channel = encoder_channel
        self.first_conv = nn.Sequential(
            nn.Conv1d(3, 128, 1), nn.BatchNorm1d(128), nn.ReLU(inplace=True), nn.Conv1d(128, 256, 1))
        self.second_conv = nn.Sequential(
            nn.Conv1d(512, 512, 1), nn.BatchNorm1d(512), nn.ReLU(inplace=True), nn.Conv1d(512, encoder_channel, 1))

    def forward(self, point_groups: torch.Tensor) -> torch.Tensor:
        """(B, G, S, 3) re-centred groups -> (B, G, encoder_channel)."""
        b, g, s, _ = point_groups.shape
        feature = self.first_conv(point_groups.reshape(b * g, s, 3).transpose(2, 1))  # (BG, 256, S)
        pooled = feature.max(dim=2, keepdim=True).values
        feature = self.second_conv(torch.cat([pooled.expand(-1, -1, s), feature], dim=1))
        return feature.max(dim=2).values.reshape(b, g, self.encoder_channel)


class Group(nn.Module):
    """Point-BERT's ``Group`` (``group_divider``): FPS centres + kNN neighbourhoods, no parameters. A module so
    that hooks (``tools.analyze``: where each group token sits) can read its ``(neighborhood, center)`` output."""

    def __init__(self, num_group: int, group_size: int):
        super().__init__()
        self.num_group, self.group_size = num_group, group_size

    def forward(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.autocast(points.device.type, enabled=False):
            return group_points(points, self.num_group, self.group_size)


class PointTransformer(nn.Module):
    """Point-BERT's fine-tuning classifier; ``llm`` adds the frozen LLM block after the blocks, before ``norm``.

    Args:
        config: the architecture (defaults: Point-BERT's 1024-point configs).
        llm: ``LLMSpec`` (variant, path, layers, mode, ...), a ready adapter module, or None for Point-BERT.
    """

    def __init__(self, config: PointBertConfig | None = None, llm: LLMSpec | nn.Module | None = None):
        super().__init__()
        self.config = cfg = config or PointBertConfig()
        self.group_divider = Group(cfg.num_group, cfg.group_size)
        self.encoder = Encoder(cfg.encoder_dims)
        self.reduce_dim = nn.Linear(cfg.encoder_dims, cfg.trans_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.trans_dim))
        self.cls_pos = nn.Parameter(torch.randn(1, 1, cfg.trans_dim))
        self.pos_embed = nn.Sequential(nn.Linear(3, 128), nn.GELU(), nn.Linear(128, cfg.trans_dim))
        rates = [x.item() for x in torch.linspace(0, cfg.drop_path_rate, cfg.depth)]
        self.blocks = TransformerEncoder(cfg.trans_dim, cfg.depth, cfg.num_heads, rates)
        # The graft: the only place the frozen LLM block enters this model (LM4VE: mapper1 -> LLaMA -> mapper2).
        self.llm = build_adapter(cfg.trans_dim, llm)
        self.norm = nn.LayerNorm(cfg.trans_dim)
        self.cls_head_finetune = nn.Sequential(
            nn.Linear(cfg.trans_dim * 2, 256), nn.ReLU(inplace=True), nn.Dropout(0.5), nn.Linear(256, cfg.cls_dim))

    def no_weight_decay(self) -> set[str]:
        """LM4VE ``builder.add_weight_decay``: names containing 'token' skip decay (``cls_pos`` does not)."""
        return {"cls_token"}

    def group(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(neighborhood (B, G, S, 3), center (B, G, 3)) of ``points`` (B, N, 3), in float32 outside autocast."""
        return self.group_divider(points)

    def forward_features(self, points: torch.Tensor) -> torch.Tensor:
        """(B, N, 3) points -> (B, 1 + num_group, trans_dim) normalised tokens (CLS first)."""
        if points.dim() != 3 or points.shape[-1] != 3:
            raise ValueError(f"expected points of shape (B, N, 3), got {tuple(points.shape)}")
        neighborhood, center = self.group(points)
        tokens = self.reduce_dim(self.encoder(neighborhood))
        batch = tokens.shape[0]
        x = torch.cat((self.cls_token.expand(batch, -1, -1), tokens), dim=1)
        pos = torch.cat((self.cls_pos.expand(batch, -1, -1), self.pos_embed(center)), dim=1)
        x = self.blocks(x, pos)
        if self.llm is not None:
            x = self.llm(x)  # all 1 + G tokens, no position re-added, no mask (LM4VE Point_BERT.forward)
        return self.norm(x)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        """[CLS, max-pool of the group tokens] -> logits (B, cls_dim)."""
        return self.cls_head_finetune(torch.cat([x[:, 0], x[:, 1:].max(dim=1).values], dim=-1))

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(points))


def build_model(args: argparse.Namespace) -> PointTransformer:
    """The model a parsed task config asks for (architecture options + ``llm_*`` options; ``llm_seed`` unset
    means ``seed``)."""
    return PointTransformer(PointBertConfig.from_namespace(args), LLMSpec.from_config(args))
