"""DeiT's transforms and repeated-augmentation sampler, from timm (Mixup/CutMix: ``common.recipe``).

Follows facebookresearch/deit ``datasets.py`` ``build_transform`` and ``main.py`` (kept unchanged by
LM4VisualEncoding): train = timm ``create_transform`` (RandAugment, random erasing, colour jitter, bicubic);
eval = resize to 256/224 of the input size (bicubic) + centre crop + ImageNet normalisation.
"""

from __future__ import annotations

from typing import Any

import torch
from PIL import Image
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, create_transform
from timm.data.auto_augment import RandAugment
from timm.data.auto_augment import posterize as timm_posterize
from timm.data.distributed_sampler import RepeatAugSampler
from torch.utils.data import Dataset, DistributedSampler, RandomSampler, Sampler
from torchvision import transforms

from common.recipe import build_mixup  # noqa: F401 - DeiT's Mixup/CutMix is the shared recipe; kept importable here

EVAL_CROP_RATIO = 224 / 256  # DeiT: Resize(int(256 / 224 * input_size)) then CenterCrop(input_size)


def build_train_transform(input_size: int = 224, color_jitter: float = 0.4, aa: str | None = "rand-m9-mstd0.5-inc1",
                          train_interpolation: str = "bicubic", reprob: float = 0.25, remode: str = "pixel",
                          recount: int = 1, mean: tuple[float, ...] = IMAGENET_DEFAULT_MEAN,
                          std: tuple[float, ...] = IMAGENET_DEFAULT_STD) -> transforms.Compose:
    """DeiT training transform: RandomResizedCrop + flip + RandAugment + colour jitter + normalise + erasing.

    For inputs of 32 px or less the random resized crop becomes ``RandomCrop(input_size, padding=4)`` (DeiT rule).
    """
    transform = create_transform(
        input_size=input_size, is_training=True, color_jitter=color_jitter, auto_augment=aa or None,
        interpolation=train_interpolation, re_prob=reprob, re_mode=remode, re_count=recount, mean=mean, std=std)
    if input_size <= 32:
        transform.transforms[0] = transforms.RandomCrop(input_size, padding=4)
    for step in transform.transforms:
        if isinstance(step, RandAugment):
            for op in step.ops:
                if op.name.startswith("Posterize"):
                    op.aug_fn = posterize_keeping_zero_bits
    return transform


def posterize_keeping_zero_bits(image: Image.Image, bits_to_keep: int, **kwargs: Any) -> Image.Image:
    """timm's ``posterize`` where 0 bits gives a black image, as it did before Pillow 13.

    timm's ``PosterizeIncreasing`` keeps ``4 - int(m / 10 * 4)`` bits: 0 whenever the drawn magnitude reaches 10
    (m9 with mstd 0.5: about 2 % of its draws). Pillow >= 13 refuses 0 bits with a ValueError, which would stop a
    DataLoader worker, and so the run, a few hundred images into training.
    """
    if bits_to_keep <= 0:
        return Image.new(image.mode, image.size)
    return timm_posterize(image, bits_to_keep, **kwargs)


def build_eval_transform(input_size: int = 224, crop_ratio: float = EVAL_CROP_RATIO,
                         mean: tuple[float, ...] = IMAGENET_DEFAULT_MEAN,
                         std: tuple[float, ...] = IMAGENET_DEFAULT_STD) -> transforms.Compose:
    """DeiT evaluation transform: bicubic resize of the short side to input/crop_ratio, centre crop, normalise."""
    steps: list[Any] = []
    if input_size > 32:
        steps.append(transforms.Resize(int(input_size / crop_ratio),
                                       interpolation=transforms.InterpolationMode.BICUBIC))
        steps.append(transforms.CenterCrop(input_size))
    steps += [transforms.ToTensor(), transforms.Normalize(mean, std)]
    return transforms.Compose(steps)


def build_transform(is_train: bool, args: Any) -> transforms.Compose:
    """Train or eval transform from a config namespace with DeiT's keys (``input_size``, ``aa``, ``reprob``...)."""
    if not is_train:
        return build_eval_transform(args.input_size)
    return build_train_transform(
        input_size=args.input_size, color_jitter=args.color_jitter, aa=args.aa,
        train_interpolation=args.train_interpolation, reprob=args.reprob, remode=args.remode, recount=args.recount)


def build_imagenet_c_transform(input_size: int = 224) -> transforms.Compose:
    """ImageNet-C images are already 224x224: centre crop, no resize (LM4VisualEncoding ``main.py``)."""
    return transforms.Compose([transforms.CenterCrop(input_size), transforms.ToTensor(),
                               transforms.Normalize(IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD)])


def build_train_sampler(dataset: Dataset, repeated_aug: bool, num_replicas: int = 1, rank: int = 0,
                        seed: int = 0) -> Sampler:
    """DeiT's training sampler: repeated augmentation (3 repeats, timm ``RepeatAugSampler``) or a plain shuffle.

    Call ``sampler.set_epoch(epoch)`` each epoch (both kinds reshuffle from it).
    """
    if repeated_aug:
        return RepeatAugSampler(dataset, num_replicas=num_replicas, rank=rank, shuffle=True)
    if num_replicas > 1:
        return DistributedSampler(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
    return _EpochRandomSampler(dataset, seed)


class _EpochRandomSampler(RandomSampler):
    """``RandomSampler`` whose order is a function of (seed, epoch), with ``set_epoch`` like the others."""

    def __init__(self, dataset: Dataset, seed: int) -> None:
        super().__init__(dataset, generator=torch.Generator())
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        self.generator.manual_seed(self.seed * 1_000_003 + self.epoch)
        return super().__iter__()
