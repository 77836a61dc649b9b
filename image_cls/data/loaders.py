"""The three input pipelines behind ``--data-pipeline`` and the one place that picks between them.

- ``cpu`` (default): timm's transforms in DataLoader workers (``transforms.py``, ``common.engine.loop``);
- ``dali``: NVIDIA DALI decodes and augments (``dali.py``; the ``dali`` extra);
- ``gpu``: torchvision's nvJPEG decode and the same recipe on tensors (``gpu_pipeline.py``; no extra package).

All three read the same datasets in the same sample order; ``dali`` and ``gpu`` need ImageNet folders or tars.
"""

from __future__ import annotations

import argparse
from typing import Any

import torch
from torch.utils.data import Dataset

from common.engine import loop
from image_cls.data import dali, gpu_pipeline
from image_cls.data.build import TaskData
from image_cls.data.encoded import dataset_source
from image_cls.data.transforms import build_train_sampler

PIPELINES = ("cpu", "dali", "gpu")


def check_pipeline_config(args: argparse.Namespace) -> None:
    """One-line ``ValueError`` for settings a GPU pipeline cannot honour; ``DaliUnavailable`` when DALI is missing."""
    if args.data_pipeline == "cpu":
        return
    name = f"--data-pipeline {args.data_pipeline}"
    if args.dataset != "imagenet":
        raise ValueError(f"{name} reads ImageNet folders or tars only, not --dataset {args.dataset}")
    if args.input_size <= 32:
        raise ValueError(f"{name} needs --input-size > 32 (DeiT's small-image RandomCrop is CPU-only)")
    if args.aa and not str(args.aa).startswith("rand"):
        raise ValueError(f"{name} supports RandAugment ('rand-...') or none, not --aa {args.aa}")
    if args.data_pipeline == "dali":
        dali.import_dali()


def build_train_val_loaders(data: TaskData, args: argparse.Namespace, *, rank: int, world_size: int,
                            device: torch.device) -> tuple[Any, Any]:
    """Training and validation loaders of ``--data-pipeline`` (validation batch: 1.5x ``--batch-size``)."""
    if args.data_pipeline == "dali":
        return dali.build_dali_loaders(data.train, data.val, args, rank=rank, world_size=world_size, device=device)
    if args.data_pipeline == "gpu":
        return gpu_pipeline.build_gpu_loaders(data.train, data.val, args, rank=rank, world_size=world_size,
                                              device=device)
    sampler = build_train_sampler(data.train, True, world_size, rank, args.seed) if args.repeated_aug else None
    train_loader = loop.make_loader(data.train, args, train=True, sampler=sampler)
    val_loader = loop.make_loader(data.val, args, train=False, batch_size=int(1.5 * args.batch_size))
    return train_loader, val_loader


def build_eval_loader(dataset: Dataset, args: argparse.Namespace, pipeline: str, *, device: torch.device,
                      resize: bool = True, rank: int = 0, world_size: int = 1) -> Any:
    """An evaluation loader (this rank's shard, dataset order) of ``pipeline`` for a folder / tar set; other sets
    (e.g. the demo's arrays) and ``cpu`` use the engine's DataLoader. ``resize=False``: crop only (ImageNet-C)."""
    if pipeline != "cpu" and callable(getattr(dataset_source(dataset), "read_bytes", None)):
        if pipeline == "dali":
            return dali.build_eval_loader(dataset, args, batch_size=args.batch_size, rank=rank,
                                          world_size=world_size, device=device, resize=resize)
        return gpu_pipeline.build_gpu_eval_loader(dataset, args, batch_size=args.batch_size, device=device,
                                                  resize=resize)
    return loop.make_loader(dataset, args, train=False)
