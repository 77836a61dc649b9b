"""Image-text retrieval recall as METER's ``compute_irtr_recall`` (zdou0830/METER ``meter/modules/objectives.py``).

``scores[i, t]`` is the cross-encoder score of image ``i`` with text ``t``; ``text_image[t]`` the index of the
image that caption ``t`` describes. TR R@K: over image queries, the fraction with any of their captions among the
top-K texts; IR R@K: over text queries, the fraction whose image is among the top-K images. In percent.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

KS = (1, 5, 10)


def recall_at_k(scores: torch.Tensor, text_image: torch.Tensor, ks: Sequence[int] = KS) -> dict[str, float]:
    """``{"ir_r1", "ir_r5", "ir_r10", "tr_r1", ...}`` of a (n_images, n_texts) score matrix; also ``ir_mean`` and
    ``tr_mean`` (the mean of the three), and ``rsum``."""
    n_images, n_texts = scores.shape
    if text_image.shape != (n_texts,):
        raise ValueError(f"text_image has shape {tuple(text_image.shape)}, expected ({n_texts},)")
    image_ids = torch.arange(n_images)
    text_image = text_image.long().cpu()
    scores = scores.float().cpu()
    out: dict[str, float] = {}
    for k in ks:
        top_texts = scores.topk(min(k, n_texts), dim=1).indices  # (I, k)
        out[f"tr_r{k}"] = 100.0 * (text_image[top_texts] == image_ids[:, None]).any(dim=1).float().mean().item()
    for k in ks:
        top_images = scores.topk(min(k, n_images), dim=0).indices  # (k, T)
        out[f"ir_r{k}"] = 100.0 * (top_images == text_image[None, :]).any(dim=0).float().mean().item()
    out["ir_mean"] = sum(out[f"ir_r{k}"] for k in ks) / len(ks)
    out["tr_mean"] = sum(out[f"tr_r{k}"] for k in ks) / len(ks)
    out["rsum"] = sum(out[f"{d}_r{k}"] for d in ("ir", "tr") for k in ks)
    return {k: out[k] for k in sorted(out, key=lambda name: (name[:2] != "ir", name))}
