"""The multi-modal trajectory head (K trajectories + mode logits) and the winner-take-all loss."""

from __future__ import annotations

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
