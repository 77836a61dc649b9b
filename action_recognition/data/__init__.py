"""SSv2 data for action_recognition: annotation CSVs, PyAV random-access decoding, VideoMAE's sampling and
transforms, datasets that skip (and count) unusable videos."""

from action_recognition.data.build import annotation_path, build_test_dataset, build_train_dataset
from action_recognition.data.errors import DataPathError
from action_recognition.data.sampling import multiview_frame_indices, temporal_view, train_frame_indices
from action_recognition.data.ssv2 import (
    SkipCounter,
    SSv2TestDataset,
    SSv2TrainDataset,
    VideoRecord,
    collate_test,
    read_annotation_csv,
)
from action_recognition.data.transforms import (
    ConsistentRandAugment,
    CubeErasing,
    TrainAugment,
    mix_clips,
    multiview_clips,
    random_resized_crop,
)
from action_recognition.data.video import VideoDecodeError, VideoReader, read_frames

__all__ = [
    "ConsistentRandAugment", "CubeErasing", "DataPathError", "SSv2TestDataset", "SSv2TrainDataset", "SkipCounter",
    "TrainAugment", "VideoDecodeError", "VideoReader", "VideoRecord", "annotation_path", "build_test_dataset",
    "build_train_dataset", "collate_test", "mix_clips", "random_resized_crop", "read_annotation_csv",
    "read_frames", "temporal_view", "multiview_frame_indices", "multiview_clips", "train_frame_indices",
]
