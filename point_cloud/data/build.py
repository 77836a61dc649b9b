"""One entry point from a config's ``dataset`` name to a split."""

from __future__ import annotations

import os

from torch.utils.data import Dataset

from point_cloud.data.errors import DataPathError
from point_cloud.data.modelnet import CACHE_POINTS, ModelNet40
from point_cloud.data.scanobjectnn import NUM_CLASSES as SCANOBJECTNN_CLASSES
from point_cloud.data.scanobjectnn import VARIANTS, ScanObjectNN

# dataset name -> number of classes (ScanObjectNN variants by Point-BERT's config names)
DATASETS = {**{name: SCANOBJECTNN_CLASSES for name in VARIANTS}, "modelnet40": 40}


def num_classes(dataset: str) -> int:
    """Classes of ``dataset`` (15 for ScanObjectNN, 40 for ModelNet40)."""
    if dataset not in DATASETS:
        raise DataPathError(f"unknown dataset {dataset!r} (choose from {', '.join(DATASETS)})")
    return DATASETS[dataset]


def build_dataset(dataset: str, data_path: str | os.PathLike | None, split: str, *,
                  cache_points: int = CACHE_POINTS, build_missing: bool = True, seed: int = 0) -> Dataset:
    """``split`` (train/test) of ``dataset``: ``objectbg`` / ``objectonly`` / ``hardest`` (ScanObjectNN root with
    ``main_split[_nobg]/``) or ``modelnet40`` (the ``modelnet40_normal_resampled`` folder)."""
    num_classes(dataset)
    if not data_path:
        raise DataPathError(f"--data-path is not set (the {dataset} data folder)")
    if not os.path.isdir(data_path):
        raise DataPathError(f"data path not found: {data_path}")
    if dataset == "modelnet40":
        return ModelNet40(data_path, split, cache_points, build_missing=build_missing, seed=seed)
    return ScanObjectNN(data_path, dataset, split)
