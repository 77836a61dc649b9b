"""VoteNet as ScanQA builds it: PointNet++ backbone, voting, vote aggregation into object proposals.

Upstream: SilongYong/SQA3D ScanQA/models/{backbone_module,voting_module,proposal_module}.py; names kept
(``sa1``..``sa4``, ``fp1``, ``fp2``, ``conv1``.., ``vote_aggregation``, ``proposal.{0,1,3,4,6}``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .pointnet2 import FPModule, SAModuleVotes

# ScanNet's 18 detection classes (model_util_scannet.ScannetDatasetConfig) and their mean box sizes
# (meta_data/scannet_reference_means.npz, the file ScanQA's DC loads), in class order.
SCANNET_CLASSES = ("cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf", "picture", "counter",
                   "desk", "curtain", "refrigerator", "shower curtain", "toilet", "sink", "bathtub", "others")
MEAN_SIZES = (
    (0.7750491, 0.94897728, 0.96542059), (1.86903267, 1.83214712, 1.19222992), (0.61214778, 0.61928731, 0.70480848),
    (1.44113898, 1.60452036, 0.83652295), (1.04780726, 1.20164188, 0.63457007), (0.56101232, 0.60847217, 1.71950401),
    (1.07894895, 0.82033996, 1.16921199), (0.84171092, 1.35047945, 1.6898925), (0.23051737, 0.47640499, 0.56569256),
    (1.45484899, 1.97119895, 0.2864328), (1.07858031, 1.53705113, 0.86501906), (1.43119644, 0.76923111, 1.64982673),
    (0.62969194, 0.70871287, 1.31433587), (0.43925034, 0.41569594, 1.70002748), (0.58504462, 0.57878438, 0.72029611),
    (0.51158693, 0.50960673, 0.3128736), (1.17320759, 1.0598714, 0.51812528), (0.43294385, 0.51933507, 0.48437456))
# NYU40 id -> detection class (ScanNet's labels.combined.tsv, nyu40class names; wall 1, floor 2, ceiling 22 excluded)
NYU40_TO_CLASS = {3: 0, 4: 1, 5: 2, 6: 3, 7: 4, 8: 5, 9: 6, 10: 7, 11: 8, 12: 9, 14: 10, 16: 11, 24: 12, 28: 13, 33: 14,
                  34: 15, 36: 16, **{i: 17 for i in (13, 15, 17, 18, 19, 20, 21, 23, 25, 26, 27, 29, 30, 31, 32, 35,
                                                     37, 38, 39, 40)}}
NUM_HEADING_BIN = 1


class Pointnet2Backbone(nn.Module):
    """Four SA layers (2048/1024/512/256 points, radius 0.2/0.4/0.8/1.2, 64/32/16/16 samples) and two FP layers:
    1024 seeds x ``seed_feat_dim``."""

    def __init__(self, input_feature_dim: int, width: int = 1, depth: int = 2, seed_feat_dim: int = 256,
                 npoints: tuple[int, int, int, int] = (2048, 1024, 512, 256)):
        super().__init__()
        w = width
        self.sa1 = SAModuleVotes([input_feature_dim] + [64 * w] * depth + [128 * w], npoints[0], 0.2, 64)
        self.sa2 = SAModuleVotes([128 * w] + [128 * w] * depth + [256 * w], npoints[1], 0.4, 32)
        self.sa3 = SAModuleVotes([256 * w] + [128 * w] * depth + [256 * w], npoints[2], 0.8, 16)
        self.sa4 = SAModuleVotes([256 * w] + [128 * w] * depth + [256 * w], npoints[3], 1.2, 16)
        self.fp1 = FPModule([256 * w + 256 * w, 256 * w, 256 * w])
        self.fp2 = FPModule([256 * w + 256 * w, 256 * w, seed_feat_dim])

    def forward(self, pointcloud: torch.Tensor, out: dict) -> dict:
        xyz = pointcloud[..., :3].contiguous()
        features = pointcloud[..., 3:].transpose(1, 2).contiguous() if pointcloud.size(-1) > 3 else None
        xyz1, f1, inds1 = self.sa1(xyz, features)
        xyz2, f2, _ = self.sa2(xyz1, f1)
        xyz3, f3, _ = self.sa3(xyz2, f2)
        xyz4, f4, _ = self.sa4(xyz3, f3)
        f = self.fp1(xyz3, xyz4, f3, f4)
        f = self.fp2(xyz2, xyz3, f2, f)
        out["seed_xyz"] = xyz2
        out["seed_features"] = f  # (B, seed_feat_dim, 1024)
        out["seed_inds"] = inds1[:, : xyz2.shape[1]]  # indices in the input cloud (upstream's fp2_inds)
        return out


class VotingModule(nn.Module):
    """One vote per seed: an xyz offset and a residual feature (vote_factor 1)."""

    def __init__(self, vote_factor: int, seed_feature_dim: int):
        super().__init__()
        self.vote_factor = vote_factor
        self.in_dim = self.out_dim = seed_feature_dim
        self.conv1 = nn.Conv1d(self.in_dim, self.in_dim, 1)
        self.conv2 = nn.Conv1d(self.in_dim, self.in_dim, 1)
        self.conv3 = nn.Conv1d(self.in_dim, (3 + self.out_dim) * vote_factor, 1)
        self.bn1 = nn.BatchNorm1d(self.in_dim)
        self.bn2 = nn.BatchNorm1d(self.in_dim)

    def forward(self, seed_xyz: torch.Tensor, seed_features: torch.Tensor):
        batch, num_seed = seed_xyz.shape[:2]
        num_vote = num_seed * self.vote_factor
        net = F.relu(self.bn1(self.conv1(seed_features)))
        net = F.relu(self.bn2(self.conv2(net)))
        net = self.conv3(net).transpose(2, 1).reshape(batch, num_seed, self.vote_factor, 3 + self.out_dim)
        vote_xyz = (seed_xyz.unsqueeze(2) + net[..., :3]).reshape(batch, num_vote, 3)
        vote_features = seed_features.transpose(2, 1).unsqueeze(2) + net[..., 3:]
        return vote_xyz, vote_features.reshape(batch, num_vote, self.out_dim).transpose(2, 1).contiguous()


class ProposalModule(nn.Module):
    """Vote aggregation (FPS ``num_proposal`` of the votes, ball query ``radius`` / ``nsample``) and the box head."""

    def __init__(self, num_class: int, num_heading_bin: int, num_size_cluster: int, num_proposal: int,
                 seed_feat_dim: int = 256, proposal_size: int = 128, radius: float = 0.3, nsample: int = 16):
        super().__init__()
        self.num_class, self.num_heading_bin, self.num_size_cluster = num_class, num_heading_bin, num_size_cluster
        self.vote_aggregation = SAModuleVotes([seed_feat_dim, proposal_size, proposal_size, proposal_size],
                                              num_proposal, radius, nsample)
        self.proposal = nn.Sequential(
            nn.Conv1d(proposal_size, proposal_size, 1, bias=False), nn.BatchNorm1d(proposal_size), nn.ReLU(),
            nn.Conv1d(proposal_size, proposal_size, 1, bias=False), nn.BatchNorm1d(proposal_size), nn.ReLU(),
            nn.Conv1d(proposal_size, 2 + 3 + num_heading_bin * 2 + num_size_cluster * 4 + num_class, 1))
        self.register_buffer("mean_size_arr", torch.tensor(MEAN_SIZES[:num_size_cluster], dtype=torch.float32),
                             persistent=False)

    def forward(self, xyz: torch.Tensor, features: torch.Tensor, out: dict) -> dict:
        xyz, features, _ = self.vote_aggregation(xyz, features)
        out["aggregated_vote_xyz"] = xyz
        out["aggregated_vote_features"] = features.permute(0, 2, 1).contiguous()  # (B, num_proposal, proposal_size)
        net = self.proposal(features).transpose(2, 1)  # (B, K, 2 + 3 + ...)
        nh, ns = self.num_heading_bin, self.num_size_cluster
        b, k = net.shape[:2]
        out["objectness_scores"] = net[..., 0:2]
        out["center"] = xyz + net[..., 2:5]
        out["heading_scores"] = net[..., 5:5 + nh]
        out["heading_residuals_normalized"] = net[..., 5 + nh:5 + nh * 2]
        out["heading_residuals"] = out["heading_residuals_normalized"] * (math.pi / nh)
        out["size_scores"] = net[..., 5 + nh * 2:5 + nh * 2 + ns]
        out["size_residuals_normalized"] = net[..., 5 + nh * 2 + ns:5 + nh * 2 + ns * 4].reshape(b, k, ns, 3)
        out["size_residuals"] = out["size_residuals_normalized"] * self.mean_size_arr
        out["sem_cls_scores"] = net[..., 5 + nh * 2 + ns * 4:]
        out["bbox_mask"] = out["objectness_scores"].argmax(-1)  # 1 = object
        out["mean_size_arr"] = self.mean_size_arr
        return out
