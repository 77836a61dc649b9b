"""The train / validation data a run config asks for (``--dataset``, ``--data-path``, ``--data-type``, subsets).

- ``imagenet``: ``DATA_PATH/{train,val}`` folders or ``DATA_PATH/{train,val}.tar`` with DeiT's transforms;
  classes = the training split's sorted wnids.
- ``fashion_mnist``: the IDX files in ``DATA_PATH`` (default: Debian's ``/usr/share/datasets/fashion-mnist``),
  train / test split, 1 channel, no augmentation (the demo's short budget).
- ``digits``: scikit-learn's bundled 8x8 digits (the demo's fallback), resized to ``input_size``.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset, Subset

from image_cls.data.imagenet import DataPathError, ImageTarDataset, build_imagenet_dataset, resolve_layout
from image_cls.data.robustness import imagenet_1k_wnids
from image_cls.data.small import FASHION_MNIST_DIR, ArrayImageDataset, SmallDataset, load_digits, load_fashion_mnist
from image_cls.data.transforms import build_eval_transform, build_transform

SUBSET_SEED = 0  # the same subset for every run seed and variant: runs differ by their training seed only


@dataclass
class TaskData:
    """A run's data: datasets (possibly subsets), the class names of the model's outputs, input channels."""

    train: Dataset | None
    val: Dataset
    classes: list[str]
    in_chans: int
    train_source: Dataset | None = None  # the full datasets behind any subset (they count skipped images)
    val_source: Dataset | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def skipped_images(self) -> tuple[int, int]:
        """Unreadable images skipped so far by this process (and its loader workers): (train, val)."""
        return _num_skipped(self.train_source), _num_skipped(self.val_source)


def _num_skipped(dataset: Any) -> int:
    return int(getattr(dataset, "num_skipped", 0)) if dataset is not None else 0


def fixed_subset(dataset: Dataset, size: int) -> Dataset:
    """``size`` images drawn once with a fixed seed, kept in dataset order (0 or >= len: the whole set)."""
    if size <= 0 or size >= len(dataset):
        return dataset
    generator = torch.Generator().manual_seed(SUBSET_SEED)
    indices = torch.randperm(len(dataset), generator=generator)[:size].sort().values
    return Subset(dataset, indices.tolist())


def training_classes(data_path: str | Path, layout: str = "auto") -> list[str]:
    """Sorted wnids of ``DATA_PATH``'s train split (folders, or the members of ``train.tar``)."""
    path = resolve_layout(data_path, "train", layout)
    if path.suffix == ".tar":
        return list(ImageTarDataset(path).classes)
    classes = sorted(entry.name for entry in path.iterdir() if entry.is_dir())
    if not classes:
        raise DataPathError(f"{path}: no class folders (expected {path}/<wnid>/<image>)")
    return classes


def model_classes(num_classes: int, data_path: str | Path | None, layout: str = "auto") -> list[str]:
    """The wnid of each model output: ImageNet-1k's sorted wnids for 1000 outputs, else DATA_PATH's train split."""
    if num_classes == 1000:
        return imagenet_1k_wnids()
    if not data_path:
        raise DataPathError(f"the model has {num_classes} outputs, not ImageNet-1k's 1000: pass --data-path whose "
                            "train split defines its classes")
    classes = training_classes(data_path, layout)
    if len(classes) != num_classes:
        raise DataPathError(f"the model has {num_classes} outputs but {data_path} has {len(classes)} training "
                            "classes")
    return classes


def _small_dataset(args: argparse.Namespace) -> SmallDataset:
    if args.dataset == "digits":
        return load_digits()
    root = Path(args.data_path) if args.data_path else FASHION_MNIST_DIR
    try:
        return load_fashion_mnist(root)
    except FileNotFoundError as err:
        raise DataPathError(f"Fashion-MNIST: {err.filename} not found (install Debian's dataset-fashion-mnist, "
                            "pass --data-path DIR with the four IDX .gz files, or use --dataset digits)") from None
    except ValueError as err:
        raise DataPathError(f"Fashion-MNIST: {err}") from None


def build_task_data(args: argparse.Namespace, train: bool = True) -> TaskData:
    """Train (unless ``train=False``) and validation sets of the config; ``DataPathError`` for a bad path."""
    if args.dataset == "imagenet":
        if not args.data_path:
            raise DataPathError("--dataset imagenet needs --data-path (a folder with train/ and val/ or train.tar "
                                "and val.tar)")
        train_set = None
        if train:
            train_set = build_imagenet_dataset(args.data_path, "train", build_transform(True, args), args.data_type)
            classes = list(train_set.classes)
        else:
            classes = training_classes(args.data_path, args.data_type)
        class_to_idx = {wnid: i for i, wnid in enumerate(classes)}
        val_transform = build_eval_transform(args.input_size, crop_ratio=args.eval_crop_ratio)
        val_set = build_imagenet_dataset(args.data_path, "val", val_transform, args.data_type, class_to_idx)
        in_chans = 3
    else:
        small = _small_dataset(args)
        size = int(args.input_size)
        train_set = ArrayImageDataset(small.train_images, small.train_labels, size=size)
        val_set = ArrayImageDataset(small.test_images, small.test_labels, size=size, mean=train_set.mean,
                                    std=train_set.std)
        train_set = train_set if train else None
        classes, in_chans = list(small.classes), 1
    return TaskData(
        train=fixed_subset(train_set, args.train_subset) if train_set is not None else None,
        val=fixed_subset(val_set, args.val_subset), classes=classes, in_chans=in_chans,
        train_source=train_set, val_source=val_set,
    )
