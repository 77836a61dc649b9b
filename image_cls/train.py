"""Train a DeiT ViT with or without a frozen LLM block: ``python -m image_cls.train``.

    python -m image_cls.train --config image_cls/configs/vit_small_llama.yaml --data-path /data/imagenet \\
        --llm-path /ckpt/llama-7b --output-dir runs/vit_small_llama [--key value ...]
    tools/dist_train.sh image_cls.train --config ...          # torchrun, one process per GPU
    python -m image_cls.train --dataset fashion_mnist --model vit_demo_llm --input-size 28 ...   # small real data

The DeiT recipe (facebookresearch/deit ``main.py``, kept by LM4VisualEncoding) on ``common.engine.loop.fit``:
``--lr`` is the LR of 512 images, scaled by the global batch / 512 for the optimizer (``--unscale-lr`` to use it
as is); Mixup/CutMix with ``SoftTargetCrossEntropy``, else label-smoothing cross-entropy; repeated augmentation;
EMA of the trainable weights only; AMP; ``--compile``. ``OUTPUT_DIR/log.txt`` gets one JSON line per epoch with
``test_acc1``, ``test_acc5``, ``test_loss`` (and ``test_ema_*``), the LR, parameter counts and the number of
unreadable images skipped that epoch (``train_skipped_images``, ``val_skipped_images``).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from torch import nn

from common.engine import distributed, loop, optim
from common.engine.errors import ConfigError
from common.frozen_lm import LLMSpec
from common.frozen_lm.formats import is_hub_path
from image_cls.data.build import TaskData, build_task_data
from image_cls.data.imagenet import DataPathError
from image_cls.data.loaders import build_train_val_loaders, check_pipeline_config
from image_cls.data.transforms import build_mixup
from image_cls.evaluation import evaluate_accuracy
from image_cls.models import build_model
from image_cls.options import build_parser, global_batch, optimizer_lr

log = logging.getLogger("image_cls.train")


def build_criterion(args: argparse.Namespace, mixup_active: bool) -> nn.Module:
    """DeiT's loss: soft-target CE under Mixup/CutMix, else label smoothing (or plain CE without smoothing)."""
    if mixup_active:
        return SoftTargetCrossEntropy()
    if args.smoothing > 0:
        return LabelSmoothingCrossEntropy(smoothing=args.smoothing)
    return nn.CrossEntropyLoss()


def _check_args(args: argparse.Namespace) -> None:
    mixup_active = args.mixup > 0 or args.cutmix > 0 or args.cutmix_minmax is not None
    if mixup_active and args.mixup_mode == "batch" and args.batch_size % 2:
        raise ConfigError(f"Mixup/CutMix need an even --batch-size, got {args.batch_size} (or set --mixup 0 "
                          "--cutmix 0)")
    for name in ("train_subset", "val_subset"):
        if getattr(args, name) < 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 0")
    try:  # the LLM settings fail fast, before a long data-set scan
        spec = LLMSpec.from_config(args)
    except ValueError as err:
        raise ConfigError(str(err)) from err
    if spec.enabled and not (Path(spec.path).exists() or is_hub_path(spec.path)):
        raise ConfigError(f"--llm-path {spec.path}: no such file or directory")
    try:
        check_pipeline_config(args)
    except (ValueError, ImportError) as err:  # incl. DaliUnavailable, naming the package to install
        raise ConfigError(str(err)) from None


def _skipped_images_stats(data: TaskData, device: torch.device):
    """``epoch_stats`` hook: unreadable images skipped during the epoch, summed over ranks (train, val)."""
    previous = torch.zeros(2, dtype=torch.float64)

    def stats(epoch: int) -> dict[str, int]:
        nonlocal previous
        now = distributed.all_reduce_sum(torch.tensor(data.skipped_images(), dtype=torch.float64, device=device))
        now = now.cpu()
        train_skipped, val_skipped = (int(v) for v in (now - previous).tolist())
        previous = now
        if train_skipped or val_skipped:
            log.warning("epoch %d: skipped %d unreadable training and %d validation image reads", epoch,
                        train_skipped, val_skipped)
        return {"train_skipped_images": train_skipped, "val_skipped_images": val_skipped}

    return stats


def main(args: argparse.Namespace) -> dict[str, Any]:
    """Train (or with ``--eval-only`` evaluate) the configured model; returns ``loop.fit``'s summary."""
    _check_args(args)
    info = loop.setup(args)
    try:
        data = build_task_data(args)
    except DataPathError as err:
        raise ConfigError(str(err)) from err
    try:
        model = build_model(args, data.num_classes, in_chans=data.in_chans)
    except ValueError as err:  # bad llm_* settings or LLM checkpoint (common.frozen_lm.CheckpointError)
        raise ConfigError(str(err)) from err

    lr = optimizer_lr(args, info.world_size)
    log.info("%s on %s: %d classes, %d training / %d validation images; LR %.3g (--lr %.3g %s)", args.model,
             args.dataset, data.num_classes, len(data.train), len(data.val), lr, args.lr,
             "as is" if args.unscale_lr else f"x global batch {global_batch(args, info.world_size)} / 512")
    optimizer = optim.build_optimizer(argparse.Namespace(**{**vars(args), "lr": lr}), model)

    mixup_fn = build_mixup(args, data.num_classes)
    criterion = build_criterion(args, mixup_fn is not None)

    def loss_fn(train_model: nn.Module, batch: Any) -> torch.Tensor:
        images, targets = batch
        if mixup_fn is not None:
            images, targets = mixup_fn(images, targets)
        return criterion(train_model(images), targets)

    try:
        train_loader, val_loader = build_train_val_loaders(data, args, rank=info.rank, world_size=info.world_size,
                                                           device=info.device)
    except ValueError as err:  # e.g. a GPU pipeline on a dataset that is not an ImageNet folder or tar
        raise ConfigError(str(err)) from err
    return loop.fit(args, model, train_loader, loss_fn, val_loader=val_loader, evaluate_fn=evaluate_accuracy,
                    best_metric="acc1", best_mode="max", optimizer=optimizer, dist_info=info,
                    epoch_stats=_skipped_images_stats(data, info.device))


def run(argv: Sequence[str] | None = None) -> None:
    """The command line: parse (``--config`` preset + flags) and train; errors exit with one line."""
    loop.run_cli(main, build_parser(), argv)


if __name__ == "__main__":
    run()
