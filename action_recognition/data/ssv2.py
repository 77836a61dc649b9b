"""Something-Something-v2 as VideoMAE lists it: ``train.csv`` / ``val.csv`` with one ``<path> <label>`` line per
video (space separated, no header; ``pd.read_csv(header=None, delimiter=' ')`` upstream), decoded on the fly.

- Relative paths are resolved against ``data_root`` (default: the folder holding the CSV).
- Training items: ``num_sample`` independently augmented clips of one decode (VideoMAE's repeated augmentation,
  ``--num_sample 2``), stacked ``(num_sample, 3, T, H, W)``.
- Test items: all ``test_num_segment x test_num_crop`` views of one decode, ``(V, 3, T, S, S)``, with the
  video's index (its id for merging the views across ranks).
- A video that cannot be opened or decoded, or has fewer than ``min_frames`` frames, is skipped, logged by
  name and counted (``SkipCounter``, shared by all loader workers): training takes the next readable video
  instead (upstream: a random one), testing leaves it out (``collate_test`` drops it; the metrics count it).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

from action_recognition.data.errors import DataPathError
from action_recognition.data.sampling import MAX_TEST_SEGMENTS, multiview_frame_indices, train_frame_indices
from action_recognition.data.transforms import TrainAugment, multiview_clips
from action_recognition.data.video import VideoDecodeError, VideoReader
from common.engine.data import SkipCounter

log = logging.getLogger(__name__)

MAX_CONSECUTIVE_SKIPS = 64
EXISTENCE_PROBE = 16  # leading entries checked at start-up to catch a wrong --data-root early


@dataclass(frozen=True)
class VideoRecord:
    """One annotation line: the resolved video path and its class index."""

    path: Path
    label: int


def read_annotation_csv(csv_path: str | os.PathLike, data_root: str | os.PathLike | None = None,
                        num_classes: int | None = None) -> list[VideoRecord]:
    """Parse ``<path> <label>`` lines (blank lines ignored); the path may itself contain spaces.

    Raises ``DataPathError`` naming the file and line for a missing file, a malformed line or a label outside
    ``[0, num_classes)``, and for a file without any entry.
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise DataPathError(f"annotation file not found: {csv_path}")
    root = Path(data_root) if data_root is not None else csv_path.parent
    records = []
    for number, line in enumerate(csv_path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        path, sep, label = line.strip().rpartition(" ")
        try:
            label_id = int(label)
        except ValueError:
            label_id = None
        if not sep or not path.strip() or label_id is None:
            raise DataPathError(f"{csv_path}:{number}: expected '<path> <label>', got {line.strip()!r}")
        if label_id < 0 or (num_classes is not None and label_id >= num_classes):
            raise DataPathError(f"{csv_path}:{number}: label {label_id} outside [0, {num_classes})")
        video = Path(path.strip())
        records.append(VideoRecord(video if video.is_absolute() else root / video, label_id))
    if not records:
        raise DataPathError(f"{csv_path} lists no videos")
    probe = records[:EXISTENCE_PROBE]
    if not any(r.path.is_file() for r in probe):
        raise DataPathError(f"none of the first {len(probe)} videos of {csv_path} exists (first: {probe[0].path}); "
                            "is --data-root the folder the CSV's paths are relative to?")
    return records


class _VideoDataset(Dataset):
    """Shared part: the records, the frame-count rule and the skip counter."""

    def __init__(self, records: list[VideoRecord], num_frames: int, min_frames: int | None):
        if not records:
            raise DataPathError("no videos to read")
        self.records = list(records)
        self.num_frames = num_frames
        self.min_frames = num_frames if min_frames is None else max(1, min_frames)
        self.skipped = SkipCounter()

    def __len__(self) -> int:
        return len(self.records)

    @property
    def num_skipped(self) -> int:
        """Videos skipped so far (all workers, cumulative)."""
        return self.skipped.value

    def _open(self, index: int) -> VideoReader | None:
        """An open reader for video ``index``, or None (logged and counted) when it is unusable."""
        record = self.records[index]
        try:
            reader = VideoReader(record.path)
        except VideoDecodeError as e:
            self._skip(record, str(e))
            return None
        if len(reader) < self.min_frames:
            reader.close()
            self._skip(record, f"only {len(reader)} frames (fewer than {self.min_frames})")
            return None
        return reader

    def _skip(self, record: VideoRecord, reason: str) -> None:
        self.skipped.add()
        log.warning("skipping video %s: %s", record.path, reason.removeprefix(f"{record.path}: "))


class SSv2TrainDataset(_VideoDataset):
    """``(clips (num_sample, 3, T, S, S), label)`` per video: TSN sampling, then ``num_sample`` augmentations."""

    def __init__(self, records: list[VideoRecord], augment: TrainAugment, num_frames: int = 16, num_sample: int = 2,
                 min_frames: int | None = None):
        super().__init__(records, num_frames, min_frames)
        self.augment = augment
        self.num_sample = num_sample

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        for attempt in range(min(len(self), MAX_CONSECUTIVE_SKIPS)):
            i = (index + attempt) % len(self)
            reader = self._open(i)
            if reader is None:
                continue
            try:
                with reader:
                    frames = reader.get_frames(train_frame_indices(len(reader), self.num_frames))
            except VideoDecodeError as e:
                self._skip(self.records[i], str(e))
                continue
            clips = torch.stack([self.augment(frames) for _ in range(self.num_sample)])
            return clips, self.records[i].label
        raise DataPathError(f"{MAX_CONSECUTIVE_SKIPS} consecutive unusable videos from {self.records[index].path} "
                            "on: the data set is broken")


class SSv2TestDataset(_VideoDataset):
    """``(views (V, 3, T, S, S), label, index)`` per video with ``V = test_num_segment * test_num_crop``, or None
    for a skipped video."""

    def __init__(self, records: list[VideoRecord], num_frames: int = 16, test_num_segment: int = 2,
                 test_num_crop: int = 3, short_side_size: int = 224, min_frames: int | None = None):
        super().__init__(records, num_frames, min_frames)
        if not 1 <= test_num_segment <= MAX_TEST_SEGMENTS:
            raise ValueError(f"SSv2 test sampling gives 1 or 2 temporal views, not test_num_segment={test_num_segment}")
        if test_num_crop < 1:
            raise ValueError(f"test_num_crop must be >= 1, got {test_num_crop}")
        self.test_num_segment, self.test_num_crop = test_num_segment, test_num_crop
        self.short_side_size = short_side_size

    @property
    def num_views(self) -> int:
        return self.test_num_segment * self.test_num_crop

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int] | None:
        reader = self._open(index)
        if reader is None:
            return None
        try:
            with reader:
                frames = reader.get_frames(multiview_frame_indices(len(reader), self.num_frames, self.test_num_segment))
        except VideoDecodeError as e:
            self._skip(self.records[index], str(e))
            return None
        views = multiview_clips(frames, self.short_side_size, self.test_num_segment, self.test_num_crop)
        return views, self.records[index].label, index


def collate_test(batch: list[tuple[torch.Tensor, int, int] | None]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stack the readable test items: ``(views (B, V, ...), labels (B,), ids (B,))``; skipped ones are dropped
    (a batch of only skipped videos gives ``B = 0`` and an empty ``views``)."""
    items = [item for item in batch if item is not None]
    if not items:
        empty = torch.zeros(0, dtype=torch.long)
        return torch.zeros(0), empty, empty.clone()
    views, labels, ids = zip(*items)
    return torch.stack(views), torch.tensor(labels, dtype=torch.long), torch.tensor(ids, dtype=torch.long)
