"""Loss and metric as Point-BERT computes them (``PointTransformer.get_loss_acc``, ``runner_BERT_finetune``).

- overall accuracy (OA): correct / total over the whole test set, in percent (instance accuracy, not the mean
  of per-class accuracies), gathered over every rank;
- loss: cross-entropy, or Point-BERT's label smoothing when ``smoothing > 0`` (the target keeps ``1 - eps`` and
  the other ``C - 1`` classes share ``eps`` equally; torch's ``label_smoothing`` would spread ``eps`` over all
  ``C`` classes instead). The official scripts do not pass ``--label_smoothing``, so the presets use 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from common.engine import distributed


def point_bert_loss(logits: torch.Tensor, labels: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
    """Mean cross-entropy of ``logits`` (B, C) against ``labels`` (B,), with Point-BERT's smoothing ``eps``."""
    labels = labels.reshape(-1).long()
    if smoothing <= 0:
        return F.cross_entropy(logits, labels)
    n_class = logits.shape[1]
    one_hot = torch.zeros_like(logits).scatter(1, labels.unsqueeze(1), 1.0)
    target = one_hot * (1 - smoothing) + (1 - one_hot) * smoothing / (n_class - 1)
    return -(target * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def batch_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Percent of ``labels`` matched by the arg-max of ``logits`` (a tensor, for logging)."""
    return (logits.argmax(-1) == labels.reshape(-1)).float().mean() * 100.0


class AccuracyCounter:
    """Accumulates correct / total over batches; ``result()`` sums over every rank (identical on all)."""

    def __init__(self, device: torch.device | str = "cpu"):
        self.counts = torch.zeros(2, dtype=torch.float64, device=device)

    def update(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        labels = labels.reshape(-1).to(logits.device)
        correct = (logits.argmax(-1) == labels).sum()
        self.counts += torch.stack([correct.to(self.counts), torch.tensor(labels.numel()).to(self.counts)])

    def totals(self) -> tuple[int, int]:
        """(correct, total) summed over all ranks."""
        correct, total = distributed.all_reduce_sum(self.counts.clone()).tolist()
        return int(correct), int(total)

    def result(self) -> float:
        """Overall accuracy in percent over all ranks."""
        correct, total = self.totals()
        if total == 0:
            raise ValueError("accuracy of an empty test set")
        return 100.0 * correct / total
