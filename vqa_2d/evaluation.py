"""Evaluation of both heads: VQA (METER's VQAScore + the official accuracy, per answer type, predictions) and
retrieval (exhaustive cross-encoder scoring, IR/TR R@1/5/10)."""

from __future__ import annotations

import argparse

import torch

from common.engine import distributed, loop
from vqa_2d.metrics_retrieval import recall_at_k
from vqa_2d.metrics_vqa import VQAAccuracy

TYPE_KEYS = {"yes/no": "yes_no", "number": "number", "other": "other"}


@torch.no_grad()
def vqa_predictions(model, eval_set, device: torch.device, amp: str, counter=None):
    """(index, predicted label, METER soft score of it) of this rank's questions, and the skipped count."""
    out = []
    for batch in eval_set.loader:
        if counter is not None:
            counter.add({f"eval_{k}": v for k, v in batch["skipped"].items()})
        if "pixels" not in batch:
            continue
        batch = loop.to_device(batch, device)
        with loop.autocast(device, amp):
            logits = model(batch["pixels"], batch["text_ids"], batch["text_masks"], head="vqa")
        pred = logits.float().argmax(dim=1)
        soft = batch["targets"].gather(1, pred[:, None])[:, 0]
        out += list(zip(batch["index"].tolist(), pred.tolist(), soft.tolist()))
    return out


def evaluate_vqa(model, eval_set, args: argparse.Namespace, counter=None) -> dict[str, float]:
    """``vqa_score`` (METER's VQAScore, %) over the evaluated questions, and the official accuracy (``acc``,
    ``acc_yes_no``, ``acc_number``, ``acc_other``) over those whose raw answers are known; identical on all ranks."""
    device = next(model.parameters()).device
    preds = vqa_predictions(model, eval_set, device, args.amp, counter)
    acc = VQAAccuracy()
    for index, label, _ in preds:
        q = eval_set.questions[index]
        if q.answers:
            acc.update(eval_set.label2ans[label], q.answers, q.answer_type)
    keys = ["overall", "yes/no", "number", "other"]
    sums = [sum(s for _, _, s in preds), float(len(preds))]
    sums += [acc.sums.get(k, 0.0) for k in keys] + [float(acc.counts.get(k, 0)) for k in keys]
    total = distributed.all_reduce_sum(torch.tensor(sums, dtype=torch.float64, device=device)).cpu().tolist()
    out = {"vqa_score": 100.0 * total[0] / max(total[1], 1.0)}
    for i, key in enumerate(keys):
        n = total[2 + len(keys) + i]
        if n:
            name = "acc" if key == "overall" else f"acc_{TYPE_KEYS[key]}"
            out[name] = 100.0 * total[2 + i] / n
    return out


def vqa_answers(model, eval_set, args: argparse.Namespace) -> list[dict]:
    """EvalAI / official result format ``[{"question_id", "answer"}]`` of every question (all ranks, gathered)."""
    device = next(model.parameters()).device
    preds = vqa_predictions(model, eval_set, device, args.amp)
    mine = [{"question_id": eval_set.questions[i].question_id, "answer": eval_set.label2ans[label]}
            for i, label, _ in preds]
    return [r for part in distributed.all_gather_object(mine) for r in part]


def evaluate_retrieval(model, rset, args: argparse.Namespace, cache_key: str = "") -> dict[str, float]:
    """IR/TR R@1/5/10 (%) from scoring every image-text pair with the cross-encoder; ``cache_key`` (a fixed
    model's identity) turns on ``--score-cache``. With ``--prerank-k`` only the bi-encoder's candidate pairs are
    scored; ``prerank_*`` say how many pairs that was and how often the ground truth survived it (%)."""
    from vqa_2d.scoring import score_matrix

    device = next(model.parameters()).device
    cache_dir = getattr(args, "score_cache", None) if cache_key else None  # only for a fixed model (evaluate.py)
    prerank_k = getattr(args, "prerank_k", 0) or 0
    scores, unreadable, candidates = score_matrix(
        model, rset, device, args.amp, text_batch=getattr(args, "eval_batch_size", None) or args.batch_size,
        cache_dir=cache_dir, cache_key=f"{cache_key}:prerank{prerank_k}", prerank_k=prerank_k)
    text_image = rset.texts.text_image
    out = recall_at_k(scores, text_image)
    if candidates is not None:
        gt = torch.zeros_like(candidates)
        gt[text_image, torch.arange(len(text_image))] = True
        out["prerank_pairs"] = 100.0 * candidates.float().mean().item()  # share of pairs the cross-encoder scored
        out["prerank_ir_cover"] = 100.0 * (candidates & gt).any(dim=0).float().mean().item()
        out["prerank_tr_cover"] = 100.0 * (candidates & gt).any(dim=1).float().mean().item()
    if unreadable:
        out["unreadable_images"] = float(unreadable)
    return out
