"""NVIDIA DALI input pipeline for ImageNet folders (``--data-pipeline dali``): decode + DeiT recipe on the GPU.

Needs the ``dali`` extra (``pip install nvidia-dali-cuda120``); without CUDA the same pipeline runs on DALI's CPU
backend. What it does, against the CPU path (timm ``create_transform``, image_cls/data/transforms.py):

- train: ``fn.decoders.image_random_crop`` (RandomResizedCrop area 0.08-1, ratio 3/4-4/3, decode of the crop
  window only; device "mixed" on CUDA) -> bicubic resize to ``input_size`` -> RandAugment
  (``nvidia.dali.auto_aug.rand_augment``, n=2, m=9 on an 11-bin scale, i.e. 9/10 of each op's range like timm's
  m9) -> ``crop_mirror_normalize`` (random flip, ImageNet mean/std, CHW float32). Random erasing (timm
  ``RandomErasing`` on the batch) runs on the output tensors; Mixup/CutMix stays in ``train.py`` as for the CPU path.
  RandAugment differs from timm's ``rand-m9-mstd0.5-inc1``: DALI's op set has ``identity`` instead of timm's
  ``Invert`` and ``SolarizeAdd``; the magnitude is fixed at 9 (timm draws it per op from N(9, 0.5)); a chosen op
  is always applied (timm applies each with probability 0.5). Op ranges match timm's "increasing" ops (shear 0.3,
  translate 0.45 of the size, rotate 30 deg, enhance 1 +- 0.9, posterize 8->4 bits, solarize 256->0).
  Without ``--aa``, ``--color-jitter`` is DALI's ``color_twist`` (brightness/contrast/saturation, fixed order).
- eval: decode -> bicubic resize of the shorter side to ``input_size / eval_crop_ratio`` -> centre crop.
- Readers: the folder layout only, with the file list and labels taken from the CPU path's ``ImageFolder`` index
  (same class indices, same subsets); the tar layout is rejected. Unreadable images are not skipped: DALI stops
  with its decode error.
- DDP: ``fn.readers.file`` shards the list (``shard_id=rank``, ``num_shards=world``). Training reshuffles the whole
  list every epoch with a seed shared by all ranks (``shuffle_after_epoch``) so each sample is read once per
  epoch across ranks; every rank yields ``(N // world) // batch`` batches (the CPU path's ``drop_last``; any extra
  batch of a larger shard is read and dropped so all ranks step together). Eval shards are contiguous and padded
  (``pad_last_batch``) with the padding removed, so every image is evaluated exactly once. The shuffle order does
  not depend on ``--seed`` and a resumed run does not replay the uninterrupted run's order. Repeated augmentation
  is not supported (``--repeated-aug`` with this pipeline is a configuration error).
"""

from __future__ import annotations

import argparse
import importlib
import warnings
from collections.abc import Iterator
from typing import Any

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.data.random_erasing import RandomErasing
from torch.utils.data import Dataset, Subset

INSTALL_HINT = "pip install nvidia-dali-cuda120 (or the project's 'dali' extra: pip install -e '.[dali]')"
RAND_AUGMENT_BINS = 11  # magnitude m of 0..10, as timm's RandAugment levels
PIPELINES = ("cpu", "dali")


class DaliUnavailable(ImportError):
    """The ``dali`` extra is not installed (message names the package to install)."""


def import_dali() -> Any:
    """The ``nvidia.dali`` module, or ``DaliUnavailable`` with a one-line install hint."""
    try:
        return importlib.import_module("nvidia.dali")
    except ImportError as err:
        raise DaliUnavailable(f"--data-pipeline dali needs NVIDIA DALI, which is not installed ({err}): "
                              f"{INSTALL_HINT}") from None


def check_dali_config(args: argparse.Namespace) -> None:
    """``ValueError`` (one line) for settings the DALI pipeline cannot honour; ``DaliUnavailable`` without DALI."""
    if args.dataset != "imagenet":
        raise ValueError(f"--data-pipeline dali reads ImageNet folders only, not --dataset {args.dataset}")
    if args.data_type == "tar":
        raise ValueError("--data-pipeline dali reads the folder layout only (DATA_PATH/{train,val}/<wnid>/), not tar")
    if args.repeated_aug:
        raise ValueError("--data-pipeline dali does not support repeated augmentation: add --no-repeated-aug")
    if args.input_size <= 32:
        raise ValueError("--data-pipeline dali needs --input-size > 32 (DeiT's small-image RandomCrop is CPU-only)")
    if args.aa and not str(args.aa).startswith("rand"):
        raise ValueError(f"--data-pipeline dali supports RandAugment ('rand-...') or none, not --aa {args.aa}")
    import_dali()


def file_list(dataset: Dataset) -> tuple[list[str], list[int]]:
    """(paths, labels) of a folder dataset (``ImageFolder``, possibly a ``Subset`` of one), in dataset order."""
    indices = None
    if isinstance(dataset, Subset):
        dataset, indices = dataset.dataset, list(dataset.indices)
    samples = getattr(dataset, "samples", None)
    if samples is None:
        raise ValueError(f"--data-pipeline dali reads ImageNet folders only, not a {type(dataset).__name__}")
    picked = samples if indices is None else [samples[i] for i in indices]
    return [str(path) for path, _ in picked], [int(label) for _, label in picked]


def _rand_augment_args(aa: str) -> tuple[int, int]:
    """(n, m) of a timm RandAugment string such as ``rand-m9-mstd0.5-inc1`` (defaults n=2, m=9)."""
    n, m = 2, 9
    for part in aa.split("-")[1:]:
        if part.startswith("mstd") or part.startswith("inc"):
            continue
        if part.startswith("m"):
            m = int(part[1:])
        elif part.startswith("n"):
            n = int(part[1:])
    return n, m


def build_pipeline(files: list[str], labels: list[int], args: argparse.Namespace, *, train: bool, batch_size: int,
                   shard_id: int = 0, num_shards: int = 1, device: str = "cpu", seed: int = 0,
                   num_threads: int = 2) -> Any:
    """The DALI pipeline (reader named ``"reader"``; outputs ``images`` CHW float32, ``labels`` int32)."""
    dali = import_dali()
    from nvidia.dali import fn, types
    from nvidia.dali.auto_aug import rand_augment

    size = int(args.input_size)
    decode_device = "mixed" if device == "gpu" else "cpu"
    mean = [255 * v for v in IMAGENET_DEFAULT_MEAN]
    std = [255 * v for v in IMAGENET_DEFAULT_STD]

    @dali.pipeline_def(enable_conditionals=True)
    def pipeline():
        jpegs, label = fn.readers.file(
            files=files, labels=labels, shard_id=shard_id, num_shards=num_shards, name="reader",
            shuffle_after_epoch=train, pad_last_batch=not train)
        if train:
            images = fn.decoders.image_random_crop(
                jpegs, device=decode_device, output_type=types.RGB, random_area=[0.08, 1.0],
                random_aspect_ratio=[3 / 4, 4 / 3], num_attempts=10)
            images = fn.resize(images, resize_x=size, resize_y=size, interp_type=types.INTERP_CUBIC)
            if args.aa:
                n, m = _rand_augment_args(args.aa)
                images = rand_augment.rand_augment(images, n=n, m=m, num_magnitude_bins=RAND_AUGMENT_BINS,
                                                   shape=(size, size), max_translate_rel=0.45)
            elif args.color_jitter:
                low, high = 1 - args.color_jitter, 1 + args.color_jitter
                images = fn.color_twist(images, brightness=fn.random.uniform(range=[low, high]),
                                        contrast=fn.random.uniform(range=[low, high]),
                                        saturation=fn.random.uniform(range=[low, high]))
            mirror = fn.random.coin_flip(probability=0.5)
        else:
            images = fn.decoders.image(jpegs, device=decode_device, output_type=types.RGB)
            images = fn.resize(images, resize_shorter=int(size / args.eval_crop_ratio),
                               interp_type=types.INTERP_CUBIC)
            mirror = False
        images = fn.crop_mirror_normalize(images, dtype=types.FLOAT, output_layout="CHW", crop=(size, size),
                                          mean=mean, std=std, mirror=mirror)
        return images, label

    device_id = torch.cuda.current_device() if device == "gpu" else None
    with warnings.catch_warnings():  # rand_augment calls DALI's own deprecated fn.experimental aliases
        warnings.simplefilter("ignore", DeprecationWarning)
        pipe = pipeline(batch_size=batch_size, num_threads=num_threads, device_id=device_id, seed=seed,
                        prefetch_queue_depth=2)
        pipe.build()
    return pipe


class DaliLoader:
    """(images, targets) batches of a DALI pipeline for ``common.engine.loop``: ``len`` = batches per epoch.

    Train: every rank yields ``(N // world) // batch`` full batches per epoch; eval: this rank's whole shard
    (last batch partial, padding removed). Targets are int64; random erasing (train) is applied to the batch.
    """

    def __init__(self, pipeline: Any, *, train: bool, num_samples: int, world_size: int, batch_size: int,
                 random_erasing: RandomErasing | None = None) -> None:
        from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy

        self.train, self.batch_size, self.random_erasing = train, batch_size, random_erasing
        policy = LastBatchPolicy.DROP if train else LastBatchPolicy.PARTIAL
        self._iterator = DALIGenericIterator([pipeline], ["images", "labels"], reader_name="reader",
                                             last_batch_policy=policy, auto_reset=True)
        self._len = (num_samples // world_size) // batch_size if train else len(self._iterator)

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        yielded = 0
        for outputs in self._iterator:
            if yielded == self._len:  # a larger shard's extra batch: read (to end the epoch) and dropped
                continue
            images, labels = outputs[0]["images"], outputs[0]["labels"].reshape(-1).long()
            if self.random_erasing is not None:
                images = self.random_erasing(images)
            yielded += 1
            yield images, labels


def build_dali_loaders(train_set: Dataset | None, val_set: Dataset, args: argparse.Namespace, *, rank: int = 0,
                       world_size: int = 1, device: torch.device | None = None
                       ) -> tuple[DaliLoader | None, DaliLoader]:
    """Train (None without ``train_set``) and val loaders reading the files of the CPU path's datasets.

    Runs on the GPU (mixed decode) when ``device`` is CUDA, else on DALI's CPU backend; the validation batch is
    1.5x ``--batch-size`` like the CPU path's.
    """
    device = device or torch.device("cpu")
    dali_device = "gpu" if device.type == "cuda" else "cpu"
    threads = max(1, int(args.num_workers) or 1)
    train_loader = None
    if train_set is not None:
        files, labels = file_list(train_set)
        pipe = build_pipeline(files, labels, args, train=True, batch_size=args.batch_size, shard_id=rank,
                              num_shards=world_size, device=dali_device, seed=int(args.seed) + rank,
                              num_threads=threads)
        erasing = None
        if args.reprob > 0:
            erasing = RandomErasing(args.reprob, mode=args.remode, max_count=args.recount, device=device.type)
        train_loader = DaliLoader(pipe, train=True, num_samples=len(files), world_size=world_size,
                                  batch_size=args.batch_size, random_erasing=erasing)
    files, labels = file_list(val_set)
    val_batch = int(1.5 * args.batch_size)
    pipe = build_pipeline(files, labels, args, train=False, batch_size=val_batch, shard_id=rank,
                          num_shards=world_size, device=dali_device, seed=int(args.seed) + rank, num_threads=threads)
    val_loader = DaliLoader(pipe, train=False, num_samples=len(files), world_size=world_size, batch_size=val_batch)
    return train_loader, val_loader
