"""Pseudo-mask mIoU (paper §6, Fig. 4 / Fig. D): how well a token-activation map segments the object.

Per image: the ground-truth foreground is downsampled to the token grid; the pseudo-mask is
``activation > t``; IoU is taken at every t in 0.1 ... 0.9 and the best t is kept for that image (the same
rule for every stage and method); the score of a stage is the mean of these best IoUs over images.

Downsampling: a token is foreground when more than half of its non-ignored pixels are foreground, and it
is left out of the IoU when half or more of its pixels are "ignore" (ImageNet-S label 1000).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

THRESHOLDS: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(1, 10))


def downsample_mask(foreground: np.ndarray, grid: tuple[int, int],
                    ignore: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Pixel masks (H, W) -> (token foreground (h, w) bool, token valid (h, w) bool) by area fractions."""
    fg = torch.as_tensor(np.asarray(foreground, dtype=np.float64))[None, None]
    ign = torch.zeros_like(fg) if ignore is None else torch.as_tensor(np.asarray(ignore, dtype=np.float64))[None, None]
    fg_share = F.adaptive_avg_pool2d(fg, grid)[0, 0].numpy()
    ignore_share = F.adaptive_avg_pool2d(ign, grid)[0, 0].numpy()
    valid_share = 1.0 - ignore_share
    valid = ignore_share < 0.5
    token_fg = fg_share > 0.5 * np.maximum(valid_share, 1e-12)
    return token_fg & valid, valid


def iou(prediction: np.ndarray, target: np.ndarray, valid: np.ndarray | None = None) -> float:
    """Intersection over union of two boolean masks over the valid tokens (0 when both are empty)."""
    prediction, target = np.asarray(prediction, bool), np.asarray(target, bool)
    if valid is not None:
        prediction, target = prediction & valid, target & valid
    union = np.logical_or(prediction, target).sum()
    return float(np.logical_and(prediction, target).sum() / union) if union else 0.0


def best_threshold_iou(activation: np.ndarray, target: np.ndarray, valid: np.ndarray | None = None,
                       thresholds: tuple[float, ...] = THRESHOLDS) -> tuple[float, float]:
    """(best IoU, its threshold) of ``activation > t`` over ``thresholds``; ties keep the lowest t."""
    activation = np.asarray(activation, dtype=np.float64)
    best, best_t = -1.0, thresholds[0]
    for t in thresholds:
        score = iou(activation > t, target, valid)
        if score > best:
            best, best_t = score, t
    return best, best_t


@dataclass
class StageScore:
    """mIoU of one map type over images, with each image's best IoU and threshold."""

    miou: float
    ious: list[float]
    thresholds: list[float]

    @property
    def n_images(self) -> int:
        return len(self.ious)


def pseudo_mask_miou(maps: np.ndarray, targets: list[np.ndarray], valids: list[np.ndarray] | None = None,
                     thresholds: tuple[float, ...] = THRESHOLDS) -> StageScore:
    """mIoU over images of (n, h, w) activation maps in [0, 1] against token-grid foreground masks.

    Images whose downsampled foreground is empty cannot score and must be filtered out by the caller.
    """
    if len(maps) != len(targets):
        raise ValueError(f"{len(maps)} maps but {len(targets)} masks")
    ious, ts = [], []
    for index, (activation, target) in enumerate(zip(maps, targets)):
        valid = valids[index] if valids is not None else None
        score, t = best_threshold_iou(activation, target, valid, thresholds)
        ious.append(score)
        ts.append(t)
    return StageScore(float(np.mean(ious)) if ious else float("nan"), ious, ts)
