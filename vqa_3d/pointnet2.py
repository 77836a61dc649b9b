"""PointNet++ layers of VoteNet (ScanQA ``lib/pointnet2``) on ``common.pointsets`` instead of the CUDA extension.

Module and parameter names are upstream's (``mlp_module.layer0.conv.weight``, ``mlp_module.layer0.bn.bn.*``,
``mlp.layer0...``) so the released state dicts load key for key.
"""

from __future__ import annotations

import torch
from torch import nn

from common.pointsets import ball_query, farthest_point_sample, gather_points, knn


class _BN(nn.Sequential):
    """``pytorch_utils._BNBase``: a BatchNorm named ``bn`` inside a Sequential (keys ``bn.bn.*``), weight 1, bias 0."""

    def __init__(self, size: int, norm: type[nn.Module]):
        super().__init__()
        self.add_module("bn", norm(size))
        nn.init.constant_(self[0].weight, 1.0)
        nn.init.constant_(self[0].bias, 0)


class ConvBNReLU(nn.Sequential):
    """``pytorch_utils.Conv2d`` / ``Conv1d`` with bn: ``conv`` (no bias, kaiming-normal), ``bn``, ReLU."""

    def __init__(self, in_size: int, out_size: int, dims: int = 2):
        super().__init__()
        conv = (nn.Conv2d if dims == 2 else nn.Conv1d)(in_size, out_size, kernel_size=1, bias=False)
        nn.init.kaiming_normal_(conv.weight)
        self.add_module("conv", conv)
        self.add_module("bn", _BN(out_size, nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d))
        self.add_module("activation", nn.ReLU(inplace=True))


class SharedMLP(nn.Sequential):
    """``pytorch_utils.SharedMLP(args, bn=True)``: ``layer{i}`` = 1x1 Conv2d + BN + ReLU."""

    def __init__(self, channels: list[int]):
        super().__init__()
        for i in range(len(channels) - 1):
            self.add_module(f"layer{i}", ConvBNReLU(channels[i], channels[i + 1]))


class SAModuleVotes(nn.Module):
    """``PointnetSAModuleVotes`` (use_xyz, normalize_xyz, max pooling): FPS ``npoint`` centres, ball query
    (``radius``, ``nsample``), local xyz / radius concatenated before the features, shared MLP, max over the ball."""

    def __init__(self, mlp: list[int], npoint: int, radius: float, nsample: int):
        super().__init__()
        self.npoint, self.radius, self.nsample = npoint, radius, nsample
        self.mlp_module = SharedMLP([mlp[0] + 3, *mlp[1:]])

    def forward(self, xyz: torch.Tensor, features: torch.Tensor | None):
        """``xyz`` (B, N, 3), ``features`` (B, C, N) -> new_xyz (B, npoint, 3), (B, C', npoint), inds (B, npoint)."""
        inds = farthest_point_sample(xyz.detach(), self.npoint)
        new_xyz = gather_points(xyz, inds)
        idx = ball_query(new_xyz.detach(), xyz.detach(), self.radius, self.nsample)  # (B, npoint, nsample)
        grouped_xyz = (gather_points(xyz, idx) - new_xyz.unsqueeze(2)) / self.radius  # (B, npoint, nsample, 3)
        grouped = grouped_xyz.permute(0, 3, 1, 2)
        if features is not None:
            grouped_feats = gather_points(features.transpose(1, 2), idx).permute(0, 3, 1, 2)
            grouped = torch.cat([grouped, grouped_feats], dim=1)  # (B, 3 + C, npoint, nsample)
        new_features = self.mlp_module(grouped.contiguous()).amax(dim=3)
        return new_xyz, new_features, inds


class FPModule(nn.Module):
    """``PointnetFPModule``: inverse-distance interpolation from the 3 nearest known points, concatenation with the
    unknown points' features, shared MLP (``three_nn`` keeps the earlier index on ties)."""

    def __init__(self, mlp: list[int]):
        super().__init__()
        self.mlp = SharedMLP(mlp)

    def forward(self, unknown: torch.Tensor, known: torch.Tensor, unknown_feats: torch.Tensor | None,
                known_feats: torch.Tensor) -> torch.Tensor:
        idx, dist2 = knn(unknown.detach(), known.detach(), 3, return_distances=True)
        dist_recip = 1.0 / (torch.sqrt(dist2) + 1e-8)
        weight = dist_recip / dist_recip.sum(dim=2, keepdim=True)  # (B, n, 3)
        neighbours = gather_points(known_feats.transpose(1, 2), idx)  # (B, n, 3, C2)
        interpolated = (neighbours * weight.unsqueeze(-1)).sum(dim=2).transpose(1, 2)  # (B, C2, n)
        feats = interpolated if unknown_feats is None else torch.cat([interpolated, unknown_feats], dim=1)
        return self.mlp(feats.unsqueeze(-1)).squeeze(-1)

