"""Fine-tune VideoMAE ViT-S/B (± a frozen LLM block) on Something-Something-v2: ``python -m action_recognition.train``.

    python -m action_recognition.train --config action_recognition/configs/ssv2_vit_s_llama.yaml \\
        --data-path /data/ssv2/lists --data-root /data/ssv2/videos --finetune ckpt/videomae_ssv2_vits.pth \\
        --llm-path /ckpt/llama-7b --output-dir runs/action_recognition/ssv2_vit_s_llama
    tools/dist_train.sh action_recognition.train --config ...        # torchrun, one process per GPU

VideoMAE's recipe (``run_class_finetuning.py``) on ``common.engine.runner`` (``action_recognition.task``):
``--lr``, ``--min-lr`` and ``--warmup-lr`` are per 256 videos and scaled by the total batch (``--unscale-lr``
to use them as they are); layer-wise LR decay with VideoMAE's layer ids; each loaded video gives
``--num-sample`` augmented clips; Mixup / CutMix with soft-target cross-entropy (label smoothing inside). Every
evaluation is the full test protocol: ``test_num_segment x test_num_crop`` views per validation video, softmax
averaged per video, merged over all ranks. ``OUTPUT_DIR/log.txt`` gets one JSON line per epoch with ``task``,
``test_acc1``, ``test_acc5``, ``test_loss``, ``test_videos``, ``test_skipped_videos`` and ``skipped_train_videos``
(unusable videos skipped that epoch).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from action_recognition.data import DataPathError, collate_test, mix_clips
from action_recognition.metrics import ViewCollector
from action_recognition.models import VideoViT, build_model
from action_recognition.options import build_parser
from common import recipe
from common.engine import loop, runner

log = logging.getLogger("action_recognition.train")

__all__ = ["build_parser", "create_model", "eval_loader", "main", "make_evaluate_fn", "make_loss_fn", "run"]


def create_model(args: argparse.Namespace) -> VideoViT:
    """``build_model`` with LLM-spec and LLM-checkpoint problems turned into one-line CLI errors."""
    return loop.create_model(build_model, args)


def make_loss_fn(args: argparse.Namespace):
    """``loss_fn(model, batch)``: ``(B, num_sample, C, T, H, W)`` clips flattened to ``B * num_sample`` (the two
    clips of a video stay neighbours, as VideoMAE's ``multiple_samples_collate``), Mixup, then the loss."""
    mixup_fn = recipe.build_mixup(args, args.nb_classes)
    criterion = recipe.build_criterion(args, mixup_fn is not None)

    def loss_fn(model: nn.Module, batch: Any) -> torch.Tensor:
        clips, labels = batch
        clips = clips.flatten(0, 1)
        targets = labels.repeat_interleave(clips.shape[0] // labels.shape[0])
        if mixup_fn is not None:
            clips, targets = mix_clips(mixup_fn, clips, targets)
        return criterion(model(clips), targets)

    return loss_fn


def make_evaluate_fn(num_classes: int, clips_per_forward: int):
    """``evaluate_fn(model, loader) -> {acc1, acc5, loss, videos, skipped_videos}``: the multi-view test over every
    rank's shard of ``loader`` (``collate_test`` batches), merged per video (``metrics.merge_views``)."""

    def evaluate_fn(model: nn.Module, loader) -> dict[str, float]:
        device = next(model.parameters()).device
        collector = ViewCollector(num_classes, device)
        for views, labels, ids in loader:
            if labels.numel() == 0:
                continue
            b, v = views.shape[:2]
            clips = views.to(device, non_blocking=True).flatten(0, 1)
            logits = torch.cat([model(chunk) for chunk in clips.split(clips_per_forward)])
            collector.update(logits.reshape(b, v, -1), ids, labels)
        try:
            out = collector.result()
        except ValueError as e:
            raise DataPathError(f"evaluation: {e}") from e
        out["skipped_videos"] = float(len(loader.dataset) - out["videos"])
        return out

    return evaluate_fn


def eval_loader(dataset, args: argparse.Namespace):
    """The engine's unpadded per-rank shard of the test set, ``collate_test`` batches of videos."""
    return loop.make_loader(dataset, args, train=False, batch_size=args.eval_batch_size or args.batch_size,
                            collate_fn=collate_test)


def main(args: argparse.Namespace) -> dict[str, Any]:
    """Train (or with ``--eval-only`` evaluate) as the config says (``common.engine.runner`` over
    ``action_recognition.task``); returns ``loop.fit``'s summary."""
    from action_recognition.task import TASK

    return runner.train_main(TASK, args)


def run(argv: Sequence[str] | None = None) -> None:
    """The command line: parse (``--config`` preset + flags) and train; errors exit with one line."""
    from action_recognition.task import TASK

    TASK.train(argv)


if __name__ == "__main__":
    run()
