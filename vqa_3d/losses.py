"""ScanQA's losses (``lib/loss_helper.py``, VoteNet's detection losses + answer BCE + auxiliary situation MSE).

total = 10 x (vote w_v + objectness w_o + box w_b + sem_cls w_s + aux w_a + answer w_ans), upstream's weights
1.0 / 0.5 / 1.0 / 0.1 / 0.1 / 0.1 by default; box = center + 0.1 heading_cls + heading_reg + 0.1 size_cls +
size_reg. As upstream, the ground-truth centre set is the padded (128, 3) array, zeros included.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

FAR_THRESHOLD = 0.6
NEAR_THRESHOLD = 0.3
GT_VOTE_FACTOR = 3
OBJECTNESS_CLS_WEIGHTS = (0.2, 0.8)


@dataclass
class LossWeights:
    vote: float = 1.0
    objectness: float = 0.5
    box: float = 1.0
    sem_cls: float = 0.1
    aux: float = 0.1
    answer: float = 0.1
    pos: float = 1.0  # --Hpos
    rot: float = 1.0  # --Hrot


def huber_loss(error: torch.Tensor, delta: float = 1.0) -> torch.Tensor:
    abs_error = error.abs()
    quadratic = abs_error.clamp(max=delta)
    return 0.5 * quadratic ** 2 + delta * (abs_error - quadratic)


def nn_distance(pc1: torch.Tensor, pc2: torch.Tensor, l1: bool = False):
    """VoteNet's ``nn_distance``: (B, N, 3) x (B, M, 3) -> dist1 (B, N), idx1, dist2 (B, M), idx2 (squared or L1)."""
    diff = pc1.unsqueeze(2) - pc2.unsqueeze(1)
    dist = diff.abs().sum(-1) if l1 else (diff ** 2).sum(-1)
    dist1, idx1 = dist.min(dim=2)
    dist2, idx2 = dist.min(dim=1)
    return dist1, idx1, dist2, idx2


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (values * mask).sum() / (mask.sum() + 1e-6)


def vote_loss(out: dict, batch: dict) -> torch.Tensor:
    seed_xyz, seed_inds = out["seed_xyz"], out["seed_inds"].long()
    b, s = seed_inds.shape
    mask = torch.gather(batch["vote_label_mask"], 1, seed_inds).float()
    gt = torch.gather(batch["vote_label"], 1, seed_inds.unsqueeze(-1).expand(-1, -1, 3 * GT_VOTE_FACTOR))
    gt = gt + seed_xyz.repeat(1, 1, 3)
    _, _, dist2, _ = nn_distance(out["vote_xyz"].reshape(b * s, -1, 3), gt.reshape(b * s, GT_VOTE_FACTOR, 3), l1=True)
    return _masked_mean(dist2.min(dim=1).values.view(b, s), mask)


def objectness_loss(out: dict, batch: dict):
    dist1, ind1, _, _ = nn_distance(out["aggregated_vote_xyz"], batch["center_label"])
    euclid = torch.sqrt(dist1 + 1e-6)
    label = (euclid < NEAR_THRESHOLD).long()
    mask = ((euclid < NEAR_THRESHOLD) | (euclid > FAR_THRESHOLD)).float()
    weight = torch.tensor(OBJECTNESS_CLS_WEIGHTS, device=euclid.device)
    loss = F.cross_entropy(out["objectness_scores"].transpose(2, 1), label, weight=weight, reduction="none")
    return _masked_mean(loss, mask), label, ind1


def box_and_sem_cls_loss(out: dict, batch: dict, label: torch.Tensor, assignment: torch.Tensor):
    obj = label.float()
    num_heading_bin = out["heading_scores"].shape[-1]
    num_size_cluster = out["size_scores"].shape[-1]
    dist1, _, dist2, _ = nn_distance(out["center"], batch["center_label"])
    center = _masked_mean(dist1, obj) + _masked_mean(dist2, batch["box_label_mask"])

    heading_label = torch.gather(batch["heading_class_label"], 1, assignment)
    heading_cls = _masked_mean(F.cross_entropy(out["heading_scores"].transpose(2, 1), heading_label,
                                               reduction="none"), obj)
    heading_res_label = torch.gather(batch["heading_residual_label"], 1, assignment) / (math.pi / num_heading_bin)
    one_hot = F.one_hot(heading_label, num_heading_bin).float()
    heading_reg = _masked_mean(huber_loss((out["heading_residuals_normalized"] * one_hot).sum(-1)
                                          - heading_res_label), obj)

    size_label = torch.gather(batch["size_class_label"], 1, assignment)
    size_cls = _masked_mean(F.cross_entropy(out["size_scores"].transpose(2, 1), size_label, reduction="none"), obj)
    size_res_label = torch.gather(batch["size_residual_label"], 1, assignment.unsqueeze(-1).expand(-1, -1, 3))
    size_one_hot = F.one_hot(size_label, num_size_cluster).float().unsqueeze(-1)  # (B, K, NS, 1)
    pred = (out["size_residuals_normalized"] * size_one_hot).sum(2)
    mean_size = (size_one_hot * out["mean_size_arr"]).sum(2)
    size_reg = _masked_mean(huber_loss(pred - size_res_label / mean_size).mean(-1), obj)

    sem_label = torch.gather(batch["sem_cls_label"], 1, assignment)
    sem_cls = _masked_mean(F.cross_entropy(out["sem_cls_scores"].transpose(2, 1), sem_label, reduction="none"), obj)
    box = center + 0.1 * heading_cls + heading_reg + 0.1 * size_cls + size_reg
    return box, sem_cls


def answer_loss(out: dict, batch: dict) -> torch.Tensor:
    scores = out["answer_scores"]
    return F.binary_cross_entropy_with_logits(scores, batch["answer_cat_scores"], reduction="sum") / scores.shape[0]


def aux_situation_loss(out: dict, batch: dict, w: LossWeights) -> torch.Tensor:
    pred, target = out["aux_scores"], batch["auxiliary_task"]
    return w.pos * F.mse_loss(pred[:, :3], target[:, :3]) + w.rot * F.mse_loss(pred[:, 3:], target[:, 3:])


def total_loss(out: dict, batch: dict, w: LossWeights, detection: bool = True) -> dict[str, torch.Tensor]:
    """``{"loss": 10 x weighted sum, term: value...}`` (``get_loss``)."""
    terms = {"answer_loss": answer_loss(out, batch)}
    zero = terms["answer_loss"].new_zeros(())
    terms["aux_loss"] = aux_situation_loss(out, batch, w) if "aux_scores" in out else zero
    if detection:
        terms["vote_loss"] = vote_loss(out, batch)
        terms["objectness_loss"], label, assignment = objectness_loss(out, batch)
        terms["box_loss"], terms["sem_cls_loss"] = box_and_sem_cls_loss(out, batch, label, assignment)
    else:
        terms.update(vote_loss=zero, objectness_loss=zero, box_loss=zero, sem_cls_loss=zero)
    loss = (w.vote * terms["vote_loss"] + w.objectness * terms["objectness_loss"] + w.box * terms["box_loss"]
            + w.sem_cls * terms["sem_cls_loss"] + w.aux * terms["aux_loss"] + w.answer * terms["answer_loss"])
    return {"loss": 10 * loss, **terms}
