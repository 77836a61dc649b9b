"""EM@1, EM@10 and EM@1 per question type (Table E), as ScanQA's ``answer_acc_at1/at10``.

A question whose answer has no class (not in the vocabulary) counts as wrong at both k: it stays in the
denominator (ScanQA's loader drops such questions; the test split must not shrink).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .sqa import QUESTION_TYPES


def exact_match(scores: torch.Tensor, targets: torch.Tensor, k: int) -> torch.Tensor:
    """(N,) bool: the target class is among the top-``k`` scores; a target of -1 (no class) never matches."""
    k = min(k, scores.shape[1])
    top = scores.topk(k, dim=1).indices
    return (top == targets.unsqueeze(1)).any(dim=1) & (targets >= 0)


def em_metrics(scores: torch.Tensor, targets: torch.Tensor, types: Sequence[str]) -> dict[str, float]:
    """``em1``, ``em10`` and ``em1_<type>`` in percent, plus ``n_<type>`` and ``n`` (question counts)."""
    at1 = exact_match(scores, targets, 1)
    at10 = exact_match(scores, targets, 10)
    out = {"em1": 100.0 * at1.float().mean().item(), "em10": 100.0 * at10.float().mean().item(),
           "n": float(len(targets))}
    for t in QUESTION_TYPES:
        mask = torch.tensor([x == t for x in types], dtype=torch.bool)
        n = int(mask.sum())
        out[f"em1_{t.lower()}"] = 100.0 * at1[mask].float().mean().item() if n else float("nan")
        out[f"n_{t.lower()}"] = float(n)
    return out


def format_table(metrics: dict[str, float]) -> str:
    """Table E's row of ``metrics`` with the per-type question counts under it."""
    head = ["EM@1", "EM@10", *QUESTION_TYPES]
    row = [metrics["em1"], metrics["em10"], *(metrics[f"em1_{t.lower()}"] for t in QUESTION_TYPES)]
    counts = [int(metrics["n"]), int(metrics["n"]), *(int(metrics[f"n_{t.lower()}"]) for t in QUESTION_TYPES)]
    line = "| " + " | ".join(head) + " |"
    return "\n".join([line, "| " + " | ".join(f"{v:.2f}" for v in row) + " |",
                      "| " + " | ".join(f"n={c}" for c in counts) + " |"])
