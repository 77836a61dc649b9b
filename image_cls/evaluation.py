"""Evaluation over a data loader, on one process or many: accuracy sums for the training loop, and logits
gathered in dataset order for ``image_cls.evaluate``.

Both use the engine's evaluation sampler (``distributed.ShardSampler``: a contiguous, unpadded slice of the data
set per rank), so concatenating the ranks' outputs in rank order is dataset order and no sample is counted twice.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from common.engine import distributed
from common.engine.loop import to_device


def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def accuracy_sums(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(summed cross-entropy, top-1 hits, top-5 hits, count) of one batch as a float64 vector."""
    logits = logits.float()
    top = logits.topk(min(5, logits.shape[1]), dim=1).indices
    hits = top.eq(targets[:, None])
    return torch.stack([
        F.cross_entropy(logits, targets, reduction="sum").double(), hits[:, :1].sum().double(),
        hits.any(dim=1).sum().double(), torch.tensor(float(len(targets)), dtype=torch.float64, device=logits.device),
    ])


def evaluate_accuracy(model: nn.Module, loader: Iterable) -> dict[str, float]:
    """``{"acc1", "acc5", "loss"}`` (percent; mean cross-entropy) over all ranks' shards of ``loader``.

    The ``loop.fit`` evaluate function: it runs in eval mode under ``no_grad`` and autocast (the caller's).
    """
    device = _device_of(model)
    sums = torch.zeros(4, dtype=torch.float64, device=device)
    for images, targets in loader:
        images, targets = to_device((images, targets), device)
        sums += accuracy_sums(model(images), targets)
    loss, top1, top5, count = distributed.all_reduce_sum(sums).tolist()
    if count == 0:
        raise ValueError("evaluation over an empty data set")
    return {"acc1": 100.0 * top1 / count, "acc5": 100.0 * top5 / count, "loss": loss / count}


@torch.no_grad()
def predict(model: nn.Module, loader: Iterable, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits (N, num_classes) float32, targets (N,)) of the whole data set in dataset order, on every rank (CPU).

    ``loader`` must use the engine's evaluation sampler (contiguous shards); ranks with an empty shard are fine.
    """
    device = _device_of(model)
    logits, targets = [], []
    for images, labels in loader:
        images, labels = to_device((images, labels), device)
        logits.append(model(images).float())
        targets.append(labels)
    local_logits = torch.cat(logits) if logits else torch.zeros(0, num_classes, device=device)
    local_targets = torch.cat(targets) if targets else torch.zeros(0, dtype=torch.long, device=device)
    return distributed.all_gather_cat(local_logits).cpu(), distributed.all_gather_cat(local_targets).cpu()
