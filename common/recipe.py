"""The classification recipe the tasks share (DeiT ``main.py`` / VideoMAE ``run_class_finetuning.py``, both timm):
Mixup/CutMix, the matching criterion, and LRs scaled by the global batch.

    mixup = build_mixup(args, num_classes)                 # None when --mixup 0 --cutmix 0 (and no minmax)
    criterion = build_criterion(args, mixup is not None)   # soft-target CE / label smoothing / plain CE
    lrs = scaled_lrs(args, world_size, 512, ("lr",))       # {"lr": --lr x global batch / 512} unless --unscale-lr

The flags are ``common.engine.config.add_mixup_args`` (``--mixup``, ``--cutmix``, ``--smoothing``...) and
``--unscale-lr`` (added by ``Task.build_parser`` for a task with ``lr_reference_batch``).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from timm.data import Mixup
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from torch import nn


def mixup_active(args: Any) -> bool:
    """Whether Mixup/CutMix are on (then targets are soft and the batch must pair up)."""
    return args.mixup > 0 or args.cutmix > 0 or args.cutmix_minmax is not None


def build_mixup(args: Any, num_classes: int) -> Mixup | None:
    """timm ``Mixup`` (mixup + CutMix + label smoothing) as DeiT and VideoMAE build it, or None when both are off.

    When it is active the loss must be ``SoftTargetCrossEntropy`` (labels become soft); otherwise label smoothing.
    """
    if not mixup_active(args):
        return None
    return Mixup(mixup_alpha=args.mixup, cutmix_alpha=args.cutmix, cutmix_minmax=args.cutmix_minmax,
                 prob=args.mixup_prob, switch_prob=args.mixup_switch_prob, mode=args.mixup_mode,
                 label_smoothing=args.smoothing, num_classes=num_classes)


def build_criterion(args: Any, mixup: bool) -> nn.Module:
    """Soft-target CE under Mixup/CutMix, else label smoothing (``--smoothing``), else plain CE."""
    if mixup:
        return SoftTargetCrossEntropy()
    if args.smoothing > 0:
        return LabelSmoothingCrossEntropy(smoothing=args.smoothing)
    return nn.CrossEntropyLoss()


def global_batch(args: Any, world_size: int) -> int:
    """Samples per optimizer update: per-process batch x processes x accumulation steps."""
    return int(args.batch_size) * int(world_size) * int(args.accum_iter)


def scaled_lrs(args: argparse.Namespace, world_size: int, reference_batch: int,
               keys: Sequence[str] = ("lr",)) -> dict[str, float]:
    """``{key: value x global batch / reference_batch}`` for ``keys`` (DeiT: lr by 512; VideoMAE: lr, min_lr,
    warmup_lr by 256), the values as given with ``--unscale-lr``. ``args`` keeps the given values, so a run's
    config.yaml re-used as ``--config`` scales once."""
    factor = 1.0 if getattr(args, "unscale_lr", False) else global_batch(args, world_size) / reference_batch
    return {key: float(getattr(args, key)) * factor for key in keys}
