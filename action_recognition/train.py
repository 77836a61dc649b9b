"""Fine-tune VideoMAE ViT-S/B (± a frozen LLM block) on Something-Something-v2: ``python -m action_recognition.train``.

    python -m action_recognition.train --config action_recognition/configs/ssv2_vit_s_llama.yaml \\
        --data-path /data/ssv2/lists --data-root /data/ssv2/videos --finetune ckpt/videomae_ssv2_vits.pth \\
        --llm-path /ckpt/llama-7b --output-dir runs/action_recognition/ssv2_vit_s_llama
    tools/dist_train.sh action_recognition.train --config ...        # torchrun, one process per GPU

VideoMAE's recipe (``run_class_finetuning.py``) on ``common.engine.loop.fit``: ``--lr``, ``--min-lr`` and
``--warmup-lr`` are per 256 videos and scaled by the total batch (``--unscale-lr`` to use them as they are);
layer-wise LR decay with VideoMAE's layer ids; each loaded video gives ``--num-sample`` augmented clips; Mixup /
CutMix with soft-target cross-entropy (label smoothing inside). Every evaluation is the full test protocol:
``test_num_segment x test_num_crop`` views per validation video, softmax averaged per video, merged over all
ranks. ``OUTPUT_DIR/log.txt`` gets one JSON line per epoch with ``test_acc1``, ``test_acc5``, ``test_loss``,
``test_videos``, ``test_skipped_videos`` and ``train_skipped_videos`` (unusable videos skipped that epoch).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from typing import Any

import torch
from timm.data import Mixup
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from torch import nn

from action_recognition.checkpoints import load_videomae_checkpoint
from action_recognition.data import (
    DataPathError,
    SSv2TrainDataset,
    annotation_path,
    build_test_dataset,
    build_train_dataset,
    collate_test,
    mix_clips,
)
from action_recognition.metrics import ViewCollector
from action_recognition.models import VideoViT, build_model
from action_recognition.options import (
    build_parser,
    check_args,
    check_mixup_batch,
    mixup_active,
    scaled_lrs,
    total_batch,
)
from common.engine import checkpoint, config, distributed, loop, optim

log = logging.getLogger("action_recognition.train")


def create_model(args: argparse.Namespace) -> VideoViT:
    """``build_model`` with LLM-spec and LLM-checkpoint problems turned into one-line CLI errors."""
    return loop.create_model(build_model, args)


def build_mixup(args: argparse.Namespace) -> Mixup | None:
    """timm ``Mixup`` (mixup + CutMix + label smoothing) as VideoMAE builds it, or None when both are off."""
    if not mixup_active(args):
        return None
    return Mixup(mixup_alpha=args.mixup, cutmix_alpha=args.cutmix, cutmix_minmax=args.cutmix_minmax,
                 prob=args.mixup_prob, switch_prob=args.mixup_switch_prob, mode=args.mixup_mode,
                 label_smoothing=args.smoothing, num_classes=args.nb_classes)


def build_criterion(args: argparse.Namespace, mixup: bool) -> nn.Module:
    """VideoMAE's loss: soft-target CE under Mixup/CutMix, else label smoothing (or plain CE without it)."""
    if mixup:
        return SoftTargetCrossEntropy()
    if args.smoothing > 0:
        return LabelSmoothingCrossEntropy(smoothing=args.smoothing)
    return nn.CrossEntropyLoss()


def make_loss_fn(args: argparse.Namespace):
    """``loss_fn(model, batch)``: ``(B, num_sample, C, T, H, W)`` clips flattened to ``B * num_sample`` (the two
    clips of a video stay neighbours, as VideoMAE's ``multiple_samples_collate``), Mixup, then the loss."""
    mixup_fn = build_mixup(args)
    criterion = build_criterion(args, mixup_fn is not None)

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


def skipped_videos_stats(train_set: SSv2TrainDataset, device: torch.device):
    """``epoch_stats`` hook: training videos skipped during the epoch, summed over ranks and loader workers."""
    previous = 0

    def stats(epoch: int) -> dict[str, int]:
        nonlocal previous
        now = int(distributed.all_reduce_sum(torch.tensor(float(train_set.num_skipped), device=device)).item())
        skipped, previous = now - previous, now
        if skipped:
            log.warning("epoch %d: skipped %d unusable training videos (names in the log above)", epoch, skipped)
        return {"train_skipped_videos": skipped}

    return stats


def eval_loader(dataset, args: argparse.Namespace):
    """The engine's unpadded per-rank shard of the test set, ``collate_test`` batches of videos."""
    return loop.make_loader(dataset, args, train=False, batch_size=args.eval_batch_size or args.batch_size,
                            collate_fn=collate_test)


def main(args: argparse.Namespace) -> dict[str, Any]:
    """Train (or with ``--eval-only`` evaluate) as the config says; returns ``loop.fit``'s summary."""
    check_args(args)
    for split in ("train", "val"):  # a wrong --data-path fails before the run directory is written
        annotation_path(args.data_path, split)
    info = loop.setup(args)
    config.resolve_total_batch_size(args, info.world_size)
    check_mixup_batch(args)
    config.save_config(args, args.output_dir)  # again, now with the per-process batch size
    train_set, val_set = build_train_dataset(args), build_test_dataset(args)
    model = create_model(args)
    resume = checkpoint.resolve_resume(args.resume, args.output_dir)
    if args.finetune and resume is None:
        load_videomae_checkpoint(model, args.finetune, args.model_key)
    elif args.finetune:
        log.info("resuming from %s: --finetune %s is not loaded", resume, args.finetune)
    model.to(info.device)

    lrs = scaled_lrs(args, info.world_size)
    log.info("%s: %d training / %d validation videos; total batch %d videos (x %d clips); LR %.3g, min %.3g, "
             "warm-up from %.3g (%s)", args.model, len(train_set), len(val_set), total_batch(args, info.world_size),
             args.num_sample, lrs["lr"], lrs["min_lr"], lrs["warmup_lr"],
             "as given" if args.unscale_lr else "per-256 values x total batch / 256")
    run_args = argparse.Namespace(**{**vars(args), **lrs})
    optimizer = optim.build_optimizer(run_args, model, layer_id_fn=model.layer_id, num_layers=model.num_layers)
    return loop.fit(run_args, model, loop.make_loader(train_set, args, train=True), make_loss_fn(args),
                    val_loader=eval_loader(val_set, args),
                    evaluate_fn=make_evaluate_fn(args.nb_classes, args.batch_size * args.num_sample),
                    best_metric="acc1", best_mode="max", optimizer=optimizer, dist_info=info,
                    epoch_stats=skipped_videos_stats(train_set, info.device))


def run(argv: Sequence[str] | None = None) -> None:
    """The command line: parse (``--config`` preset + flags) and train; errors exit with one line."""
    loop.run_cli(main, build_parser(), argv)


if __name__ == "__main__":
    run()
