"""Multi-view video accuracy as VideoMAE computes it (``engine_for_finetuning.py`` ``merge`` / ``compute_video``).

Each test view's logits go through a softmax; a video's score is the mean of its views' softmax vectors (a view
seen twice counts once, as upstream's ``dict_pos`` check); top-1 is ``argmax(score) == label``, top-5 is the
label among the five highest scores; accuracies are percentages over the videos. Upstream writes one text file
per rank and merges them on rank 0; here every rank gathers all (video id, view id, logits, label) rows with
``all_gather_cat`` and merges them the same way, so the result is identical on every rank.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from common.engine import distributed


def merge_views(video_ids: torch.Tensor, view_ids: torch.Tensor, logits: torch.Tensor,
                labels: torch.Tensor) -> dict[str, float]:
    """``{"acc1", "acc5", "videos"}`` from per-view rows (any order, duplicates allowed).

    Args:
        video_ids, view_ids, labels: ``(R,)`` integers; a video's rows must agree on its label.
        logits: ``(R, num_classes)``; softmax is taken in float64, as upstream's numpy.
    """
    if logits.shape[0] == 0:
        raise ValueError("no test view was scored (every video skipped?)")
    keys = torch.stack([video_ids.long(), view_ids.long()], dim=1).cpu()
    unique_keys, inverse = torch.unique(keys, dim=0, return_inverse=True)
    first = torch.full((len(unique_keys),), len(keys), dtype=torch.long)
    first.scatter_reduce_(0, inverse, torch.arange(len(keys)), reduce="amin")  # keep a view's first row
    videos, video_of_row = torch.unique(unique_keys[:, 0], return_inverse=True)
    probs = F.softmax(logits.cpu()[first].double(), dim=1)
    scores = torch.zeros(len(videos), probs.shape[1], dtype=torch.float64).index_add_(0, video_of_row, probs)
    counts = torch.zeros(len(videos), dtype=torch.float64).index_add_(0, video_of_row, torch.ones(len(first),
                                                                                                   dtype=torch.float64))
    scores /= counts[:, None]
    video_labels = torch.zeros(len(videos), dtype=torch.long).scatter_(0, video_of_row, labels.cpu().long()[first])
    if not torch.equal(video_labels[video_of_row], labels.cpu().long()[first]):
        raise ValueError("views of one video carry different labels")
    top = scores.topk(min(5, scores.shape[1]), dim=1).indices
    hits = top.eq(video_labels[:, None])
    return {"acc1": 100.0 * hits[:, 0].double().mean().item(), "acc5": 100.0 * hits.any(dim=1).double().mean().item(),
            "videos": float(len(videos))}


class ViewCollector:
    """Accumulates one rank's per-view rows; ``result()`` gathers every rank's and merges them."""

    def __init__(self, num_classes: int, device: torch.device | str = "cpu"):
        self.num_classes, self.device = num_classes, torch.device(device)
        self.rows: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)

    def update(self, logits: torch.Tensor, video_ids: torch.Tensor, labels: torch.Tensor) -> None:
        """``logits (B, V, C)`` of ``B`` videos with ``V`` views each; ``video_ids``, ``labels``: ``(B,)``."""
        b, v, c = logits.shape
        flat = logits.reshape(b * v, c).float()
        labels = labels.to(flat.device)
        rows_labels = labels.repeat_interleave(v)
        self.loss_sum += F.cross_entropy(flat, rows_labels, reduction="sum").double()
        self.rows.append((video_ids.to(flat.device).repeat_interleave(v),
                          torch.arange(v, device=flat.device).repeat(b), flat.detach(), rows_labels))

    def result(self) -> dict[str, float]:
        """``{"acc1", "acc5", "videos", "loss"}`` over all ranks (``loss``: mean per-view cross-entropy)."""
        if self.rows:
            video_ids, view_ids, logits, labels = (torch.cat(parts) for parts in zip(*self.rows))
        else:
            video_ids = view_ids = labels = torch.zeros(0, dtype=torch.long, device=self.device)
            logits = torch.zeros(0, self.num_classes, device=self.device)
        gathered = [distributed.all_gather_cat(t.to(self.device)) for t in (video_ids, view_ids, logits, labels)]
        loss = distributed.all_reduce_sum(self.loss_sum).item()
        out = merge_views(*gathered)
        out["loss"] = loss / max(len(gathered[0]), 1)
        return out
