"""The multi-modal trajectory head (K trajectories + mode logits) and the winner-take-all loss."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class MultiModalHead(nn.Module):
    """Token (…, D) -> trajectories (…, K, T, 2) and mode logits (…, K) (K = 1: a single trajectory)."""

    def __init__(self, dim: int, hidden: int, modes: int, steps: int):
        super().__init__()
        self.modes, self.steps = modes, steps
        self.traj = nn.Sequential(nn.Linear(dim, hidden), nn.LayerNorm(hidden), nn.ReLU(),
                                  nn.Linear(hidden, modes * steps * 2))
        self.score = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, modes))

    def forward(self, token: torch.Tensor) -> dict[str, torch.Tensor]:
        traj = self.traj(token).reshape(*token.shape[:-1], self.modes, self.steps, 2)
        return {"traj": traj, "logits": self.score(token)}


def best_mode(traj: torch.Tensor, future: torch.Tensor, future_mask: torch.Tensor) -> torch.Tensor:
    """Index of the mode with the smallest error at the last known future step (min-FDE), (B,)."""
    last = (future_mask.long().cumsum(-1) * future_mask).argmax(-1)  # last True per row
    b = torch.arange(traj.shape[0], device=traj.device)
    end_pred = traj[b, :, last]  # (B, K, 2)
    return torch.linalg.vector_norm(end_pred - future[b, last].unsqueeze(1), dim=-1).argmin(-1)


def wta_loss(out: dict[str, torch.Tensor], future: torch.Tensor, future_mask: torch.Tensor,
             cls_weight: float = 1.0, best: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Winner-take-all: smooth-L1 regression of the min-FDE mode (or ``best``) over the known steps, plus
    cross-entropy of the mode logits towards it (none when K = 1)."""
    traj, logits = out["traj"], out["logits"]
    if best is None:
        best = best_mode(traj.detach(), future, future_mask)
    b = torch.arange(traj.shape[0], device=traj.device)
    chosen = traj[b, best]  # (B, T, 2)
    m = future_mask.unsqueeze(-1).to(chosen.dtype)
    reg = (F.smooth_l1_loss(chosen, future, reduction="none") * m).sum() / m.sum().clamp(min=1) / 2
    losses = {"reg": reg}
    if traj.shape[1] > 1:
        losses["cls"] = F.cross_entropy(logits.float(), best)
        losses["loss"] = reg + cls_weight * losses["cls"]
    else:
        losses["loss"] = reg
    return losses


def region_of(endpoint: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """Index of the nearest region centre (M, 2) for each ground-truth endpoint (B, 2)."""
    return torch.cdist(endpoint.float(), centres.float()).argmin(-1)


def rts_best(traj: torch.Tensor, future: torch.Tensor, future_mask: torch.Tensor,
             centres: torch.Tensor) -> torch.Tensor:
    """mmTransformer's region-based training strategy: the K proposals form M equal groups, group g owns region g
    (K-means centre of training endpoints); the trained proposal is the min-FDE one of the group whose region holds
    the ground-truth endpoint. Returns its index (B,)."""
    b, k = traj.shape[:2]
    m = centres.shape[0]
    if k % m:
        raise ValueError(f"{k} proposals cannot be split into {m} regions")
    last = (future_mask.long().cumsum(-1) * future_mask).argmax(-1)
    rows = torch.arange(b, device=traj.device)
    region = region_of(future[rows, last], centres.to(traj.device))
    per = k // m
    end = traj[rows, :, last]  # (B, K, 2)
    err = torch.linalg.vector_norm(end - future[rows, last].unsqueeze(1), dim=-1)
    in_group = (torch.arange(k, device=traj.device) // per).unsqueeze(0) == region.unsqueeze(1)
    return err.masked_fill(~in_group, float("inf")).argmin(-1)


def kmeans_centres(endpoints: np.ndarray, regions: int, seed: int = 0) -> np.ndarray:
    """K-means (scipy ``kmeans2``, k-means++ init) of training endpoints (N, 2) -> (regions, 2), sorted by angle
    so the region order (and the proposal groups) is reproducible."""
    from scipy.cluster.vq import kmeans2

    if len(endpoints) < regions:
        raise ValueError(f"{len(endpoints)} training endpoints cannot make {regions} regions")
    centres, _ = kmeans2(endpoints.astype(np.float64), regions, minit="++", seed=seed)
    return centres[np.argsort(np.arctan2(centres[:, 1], centres[:, 0]), kind="stable")]
