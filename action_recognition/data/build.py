"""The SSv2 datasets a run config asks for (``--data-path`` holding ``train.csv`` / ``val.csv``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from action_recognition.data.errors import DataPathError
from action_recognition.data.ssv2 import SSv2TestDataset, SSv2TrainDataset, read_annotation_csv
from action_recognition.data.transforms import TrainAugment

SPLIT_FILES = {"train": "train.csv", "val": "val.csv"}


def annotation_path(data_path: str | None, split: str) -> Path:
    """``DATA_PATH/{train,val}.csv``; a missing folder or file is a ``DataPathError`` naming it."""
    if not data_path:
        raise DataPathError("--data-path is not set (the folder holding train.csv and val.csv)")
    folder = Path(data_path)
    if not folder.is_dir():
        raise DataPathError(f"data path not found: {folder}")
    path = folder / SPLIT_FILES[split]
    if not path.is_file():
        raise DataPathError(f"{path} not found (--data-path must hold {' and '.join(SPLIT_FILES.values())}; "
                            "python -m action_recognition.prepare writes them)")
    return path


def build_train_dataset(args: argparse.Namespace) -> SSv2TrainDataset:
    """Training videos with VideoMAE's augmentation and ``num_sample`` clips per video."""
    records = read_annotation_csv(annotation_path(args.data_path, "train"), args.data_root, args.nb_classes)
    augment = TrainAugment(args.input_size, args.aa, args.train_interpolation, args.reprob, args.remode, args.recount)
    return SSv2TrainDataset(records, augment, args.num_frames, args.num_sample, args.min_video_frames)


def build_test_dataset(args: argparse.Namespace) -> SSv2TestDataset:
    """Validation videos with all ``test_num_segment x test_num_crop`` views."""
    records = read_annotation_csv(annotation_path(args.data_path, "val"), args.data_root, args.nb_classes)
    return SSv2TestDataset(records, args.num_frames, args.test_num_segment, args.test_num_crop, args.short_side_size,
                           args.min_video_frames)
