"""Metrics exactly as LM4VisualEncoding ``image_classification/engine.py`` / ``main.py`` compute them.

- top-k accuracy: timm ``accuracy`` (percent), optionally on a subset of logit columns (ImageNet-A/-R:
  ``output[:, mask]`` upstream, here an index tensor so column j is the set's label j);
- ImageNet-C: accuracy averaged over the 15 corruptions x 5 severities (the paper's "IN-C" column), and mCE:
  CE_c = (100 - mean_s acc_{c,s}) / (100 * AlexNet error_c), mCE = mean_c CE_c, reported in percent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from timm.utils import accuracy

# AlexNet's error per corruption averaged over severities 1-5 (Hendrycks & Dietterich, ICLR 2019), the normaliser
# of mCE; the same values as LM4VisualEncoding utils.get_ce_alexnet, keyed by ImageNet-C folder name.
ALEXNET_CORRUPTION_ERROR = {
    "gaussian_noise": 0.886428, "shot_noise": 0.894468, "impulse_noise": 0.922640,
    "defocus_blur": 0.819880, "glass_blur": 0.826268, "motion_blur": 0.785948, "zoom_blur": 0.798360,
    "snow": 0.866816, "frost": 0.826572, "fog": 0.819324, "brightness": 0.564592, "contrast": 0.853204,
    "elastic_transform": 0.646056, "pixelate": 0.717840, "jpeg_compression": 0.606500,
}


def topk_accuracy(logits: torch.Tensor, targets: torch.Tensor, topk: Sequence[int] = (1, 5),
                  logit_indices: torch.Tensor | None = None) -> dict[str, float]:
    """``{"acc1": ..., "acc5": ...}`` in percent; ``logit_indices`` restricts (and orders) the classes scored."""
    if logit_indices is not None:
        logits = logits.index_select(1, logit_indices.to(logits.device))
    if len(targets) == 0:
        raise ValueError("accuracy of an empty set")
    values = accuracy(logits.float(), targets, topk=tuple(topk))
    return {f"acc{k}": float(v) for k, v in zip(topk, values)}


def corruption_error(acc1_mean: float, alexnet_error: float) -> float:
    """CE of one corruption (a fraction; AlexNet = 1.0) from the model's top-1 accuracy (%) averaged over severities."""
    return (100.0 - acc1_mean) / (alexnet_error * 100.0)


def imagenet_c_summary(acc1: Mapping[tuple[str, int], float]) -> dict[str, object]:
    """Mean accuracy and mCE (both %) from top-1 accuracy (%) per (corruption, severity).

    Every corruption present must have all of severities 1-5; mCE needs AlexNet's error for each corruption.
    """
    corruptions = sorted({c for c, _ in acc1})
    per_corruption = {}
    for c in corruptions:
        severities = sorted(s for cc, s in acc1 if cc == c)
        if severities != [1, 2, 3, 4, 5]:
            raise ValueError(f"ImageNet-C {c}: severities {severities}, expected 1-5")
        if c not in ALEXNET_CORRUPTION_ERROR:
            raise ValueError(f"ImageNet-C {c}: no AlexNet error for this corruption (not one of the 15 benchmark ones)")
        mean_acc = sum(acc1[c, s] for s in severities) / len(severities)
        per_corruption[c] = {"acc1": mean_acc, "ce": 100.0 * corruption_error(mean_acc, ALEXNET_CORRUPTION_ERROR[c])}
    if not per_corruption:
        raise ValueError("ImageNet-C summary of no results")
    n = len(per_corruption)
    return {
        "acc1": sum(v["acc1"] for v in per_corruption.values()) / n,
        "mce": sum(v["ce"] for v in per_corruption.values()) / n,
        "num_corruptions": n,
        "per_corruption": per_corruption,
    }
