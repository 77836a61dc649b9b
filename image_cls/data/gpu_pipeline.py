"""``--data-pipeline gpu``: decode with nvJPEG (torchvision) and run DeiT's recipe on the GPU, fed by the CPU
path's own DataLoader.

- Reading: DataLoader workers only read files (``EncodedFiles``: bytes and label; undecodable files skipped and
  counted), drawn by the CPU path's samplers (``loop.make_loader``: ``DistributedSampler(seed=--seed)``, timm's
  repeated augmentation, contiguous evaluation shards), so the sample order, DDP sharding, epochs and resume are
  the CPU path's exactly.
- Decoding: one ``decode_jpeg(list, device="cuda")`` call per batch (nvJPEG's batched decoder) from TorchCodec
  (extra ``gpu-decode``), else from torchvision.io (deprecated there since torchvision 0.29); other formats, and
  JPEGs nvJPEG refuses (e.g. CMYK), are decoded on the CPU with ``decode_image``; a file no decoder reads is
  replaced by another image of the batch and counted as skipped.
- Transforms (``tensor_augment.py``): per image, timm's own RandAugment draws with torchvision's tensor ops, after
  RandomResizedCrop and the flip; then per batch: normalisation and timm's ``RandomErasing`` on the device.
  Mixup/CutMix stays in ``train.py`` as for the CPU path.

Needs only torch and torchvision (nvJPEG ships with their CUDA builds); TorchCodec is preferred when installed.
Without CUDA the same code runs on the CPU (libjpeg decode), which is what the tests use. The transforms run in
the training process, on the current CUDA stream: their launches overlap the previous step's backward on the GPU.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from typing import Any

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.data.random_erasing import RandomErasing
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms.v2 import functional as TF

from common.engine import loop
from common.engine.data import SkipCounter
from image_cls.data.encoded import JPEG_START, EncodedFiles, collate_encoded
from image_cls.data.imagenet import DataPathError
from image_cls.data.tensor_augment import EvalImageTransform, TrainImageTransform
from image_cls.data.transforms import build_train_sampler, build_train_transform


def image_decoders() -> tuple[Callable[..., Any], Callable[..., Any], str]:
    """``(decode_jpeg(data or list, device), decode_image(data), name)`` for RGB uint8 CHW output: TorchCodec's
    decoders when it imports (extra ``gpu-decode``), else torchvision.io's (deprecated since torchvision 0.29)."""
    try:
        from torchcodec.decoders import decode_image, decode_jpeg
    except Exception:  # not installed, or built for another torch
        from torchvision.io import ImageReadMode
        from torchvision.io import decode_image as tv_image
        from torchvision.io import decode_jpeg as tv_jpeg

        return (lambda data, device: tv_jpeg(data, mode=ImageReadMode.RGB, device=device),
                lambda data: tv_image(data, mode=ImageReadMode.RGB), "torchvision")
    return (lambda data, device: decode_jpeg(data, mode="RGB", device=device),
            lambda data: decode_image(data, mode="RGB"), "torchcodec")


def _is_jpeg(data: torch.Tensor) -> bool:
    return bytes(data[:3].tolist()) == JPEG_START


def _decode_one(data: torch.Tensor, device: torch.device, decoders: tuple) -> torch.Tensor | None:
    """One file: ``decode_jpeg`` on ``device`` for a JPEG, else (or when that fails) ``decode_image`` on the CPU;
    None when neither reads it."""
    decode_jpeg, decode_image, _ = decoders
    if _is_jpeg(data):
        try:
            return decode_jpeg(data, device)
        except RuntimeError:
            pass
    try:
        return decode_image(data).to(device, non_blocking=True)
    except RuntimeError:
        return None


def decode_images(files: list[torch.Tensor], device: torch.device,
                  decoders: tuple | None = None) -> list[torch.Tensor | None]:
    """RGB uint8 CHW images on ``device`` (None for a file no decoder reads): on CUDA the JPEGs in one batched
    ``decode_jpeg`` call (nvJPEG), the other files (and all of them on the CPU) one by one."""
    decoders = decoders or image_decoders()
    jpegs = [i for i, data in enumerate(files) if _is_jpeg(data)] if device.type == "cuda" else []
    images: list[torch.Tensor | None] = [None] * len(files)
    if jpegs:
        try:
            for i, image in zip(jpegs, decoders[0]([files[i] for i in jpegs], device), strict=True):
                images[i] = image
        except RuntimeError:  # a file nvJPEG refuses fails the whole call: those files go one by one
            jpegs = []
    done = set(jpegs)
    return [images[i] if i in done else _decode_one(data, device, decoders) for i, data in enumerate(files)]


class GpuLoader:
    """(images, targets) batches for ``common.engine.loop``: a DataLoader of encoded files, decoded and
    transformed on ``device``. ``sampler`` is the DataLoader's (``fit`` calls its ``set_epoch``)."""

    def __init__(self, loader: DataLoader, transform: Callable[[torch.Tensor], torch.Tensor], device: torch.device,
                 *, random_erasing: RandomErasing | None = None, skipped: SkipCounter | None = None) -> None:
        self.loader, self.transform, self.device = loader, transform, device
        self.random_erasing, self.skipped = random_erasing, skipped
        self.sampler = loader.sampler
        self.decoders = image_decoders()

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for files, labels, skipped in self.loader:
            images = decode_images(files, self.device, self.decoders)
            readable = [i for i, image in enumerate(images) if image is not None]
            if not readable:
                raise DataPathError(f"no image of a batch of {len(files)} could be decoded: the data set is broken")
            for i, image in enumerate(images):  # a file no decoder read: another image of the batch instead
                if image is None:
                    substitute = readable[i % len(readable)]
                    images[i], labels[i] = images[substitute], labels[substitute]
                    skipped += 1
            if skipped and self.skipped is not None:
                self.skipped.add(skipped)
            batch = torch.stack([self.transform(image) for image in images]).to(torch.float32).div_(255)
            batch = TF.normalize(batch, list(IMAGENET_DEFAULT_MEAN), list(IMAGENET_DEFAULT_STD))
            if self.random_erasing is not None:
                batch = self.random_erasing(batch)
            yield batch, labels.to(self.device, non_blocking=True)


def build_gpu_eval_loader(dataset: Dataset, args: argparse.Namespace, *, batch_size: int, device: torch.device,
                          resize: bool = True) -> GpuLoader:
    """Evaluation loader over a folder / tar dataset: this rank's contiguous shard in dataset order (``--input-size``,
    ``--eval-crop-ratio``; ``resize=False`` crops only, for ImageNet-C)."""
    files = EncodedFiles(dataset)
    loader = loop.make_loader(files, args, train=False, batch_size=batch_size, collate_fn=collate_encoded)
    return GpuLoader(loader, EvalImageTransform(int(args.input_size), args.eval_crop_ratio, resize), device,
                     skipped=files.skipped)


def build_gpu_loaders(train_set: Dataset | None, val_set: Dataset, args: argparse.Namespace, *, rank: int = 0,
                      world_size: int = 1, device: torch.device | None = None
                      ) -> tuple[GpuLoader | None, GpuLoader]:
    """Train (None without ``train_set``) and val loaders; the validation batch is 1.5x ``--batch-size``."""
    device = device or torch.device("cpu")
    train_loader = None
    if train_set is not None:
        files = EncodedFiles(train_set)
        sampler = (build_train_sampler(files, True, world_size, rank, args.seed) if args.repeated_aug else None)
        loader = loop.make_loader(files, args, train=True, sampler=sampler, collate_fn=collate_encoded)
        timm_transform = build_train_transform(
            input_size=args.input_size, color_jitter=args.color_jitter, aa=args.aa,
            train_interpolation=args.train_interpolation, reprob=0.0)
        erasing = None
        if args.reprob > 0:
            erasing = RandomErasing(args.reprob, mode=args.remode, max_count=args.recount, device=device.type)
        train_loader = GpuLoader(loader, TrainImageTransform(timm_transform, int(args.input_size)), device,
                                 random_erasing=erasing, skipped=files.skipped)
    val_loader = build_gpu_eval_loader(val_set, args, batch_size=int(1.5 * args.batch_size), device=device)
    return train_loader, val_loader
