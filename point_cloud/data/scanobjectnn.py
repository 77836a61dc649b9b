"""ScanObjectNN from its official h5 files (Point-BERT ``datasets/ScanObjectNNDataset.py``).

    <root>/main_split/{training,test}_objectdataset.h5                          OBJ_BG     ("objectbg")
    <root>/main_split_nobg/{training,test}_objectdataset.h5                     OBJ_ONLY   ("objectonly")
    <root>/main_split/{training,test}_objectdataset_augmentedrot_scale75.h5     PB_T50_RS  ("hardest")

Each file holds ``data`` (N, 2048, 3) float and ``label`` (N,) int (other keys, e.g. ``mask``, are ignored). The
whole split is read into memory, as upstream. A training item has its points in a fresh random order (the
sampling that follows starts FPS at point 0); test items keep the file's order.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from point_cloud.data.errors import DataPathError

# variant -> (sub-folder, file name pattern with {split} in training|test)
VARIANTS = {
    "objectbg": ("main_split", "{split}_objectdataset.h5"),
    "objectonly": ("main_split_nobg", "{split}_objectdataset.h5"),
    "hardest": ("main_split", "{split}_objectdataset_augmentedrot_scale75.h5"),
}
SPLIT_FILE_PREFIX = {"train": "training", "test": "test"}
NUM_CLASSES = 15


def scanobjectnn_file(root: str | os.PathLike, variant: str, split: str) -> Path:
    """The h5 file of ``variant`` / ``split`` under ``root`` (the ScanObjectNN folder, or the split folder itself)."""
    if variant not in VARIANTS:
        raise DataPathError(f"unknown ScanObjectNN variant {variant!r} (choose from {', '.join(VARIANTS)})")
    if split not in SPLIT_FILE_PREFIX:
        raise DataPathError(f"unknown split {split!r} (train or test)")
    folder, pattern = VARIANTS[variant]
    name = pattern.format(split=SPLIT_FILE_PREFIX[split])
    root = Path(root)
    for candidate in (root / folder / name, root / name):
        if candidate.is_file():
            return candidate
    raise DataPathError(f"ScanObjectNN {variant} {split} file not found: {root / folder / name}")


def read_scanobjectnn_h5(path: str | os.PathLike, num_classes: int = NUM_CLASSES) -> tuple[np.ndarray, np.ndarray]:
    """(points (N, P, 3) float32, labels (N,) int64) from one h5 file, checked."""
    try:
        with h5py.File(path, "r") as f:
            for key in ("data", "label"):
                if key not in f:
                    raise DataPathError(f"{path}: no '{key}' dataset (found: {', '.join(sorted(f.keys()))})")
            points = np.asarray(f["data"], dtype=np.float32)
            labels = np.asarray(f["label"])
    except OSError as e:
        raise DataPathError(f"{path}: not a readable h5 file ({e})") from None
    if points.ndim != 3 or points.shape[2] != 3 or points.shape[0] == 0:
        raise DataPathError(f"{path}: 'data' has shape {points.shape}, expected (N, P, 3) with N > 0")
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.shape != (points.shape[0],):
        raise DataPathError(f"{path}: 'label' has shape {labels.shape}, expected ({points.shape[0]},)")
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataPathError(f"{path}: 'label' has dtype {labels.dtype}, expected integers")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise DataPathError(f"{path}: labels span [{labels.min()}, {labels.max()}], expected [0, {num_classes})")
    if not np.isfinite(points).all():
        raise DataPathError(f"{path}: 'data' holds NaN or infinite coordinates")
    return points, labels.astype(np.int64)


class ScanObjectNN(Dataset):
    """One ScanObjectNN split: items ``(points (P, 3) float32 tensor, label int)``."""

    def __init__(self, root: str | os.PathLike, variant: str, split: str, num_classes: int = NUM_CLASSES):
        self.path = scanobjectnn_file(root, variant, split)
        self.variant, self.split = variant, split
        self.points, self.labels = read_scanobjectnn_h5(self.path, num_classes)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        points = torch.from_numpy(self.points[index])
        if self.split == "train":
            points = points[torch.randperm(points.shape[0])]
        return points.clone(), int(self.labels[index])
