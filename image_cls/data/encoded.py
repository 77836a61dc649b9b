"""The encoded image files of a folder or tar dataset, for pipelines that decode on the GPU (DALI, ``gpu``).

``EncodedFiles`` is a map-style dataset of ``(file bytes, label, files skipped)``: the bytes come from the
dataset's own ``read_bytes`` (a folder file, or a member of ``<split>.tar`` by offset), a ``Subset`` keeps its
indices, and a file the GPU decoders could not decode -- unreadable, empty, not an image, a JPEG or PNG cut short --
is replaced by the next readable one, as the CPU path does (``SkipUnreadable``), and counted. The check reads
markers only (no decode): a file whose compressed data is damaged inside an intact frame reaches the decoder.

``EncodedBatches`` is DALI's ``fn.external_source`` callback (batch mode, ``batch_info=True``; run in DALI's Python
worker processes when ``--num-workers`` > 0). Batch ``k`` of epoch ``e`` holds, for this rank:

- training: positions ``k*B .. (k+1)*B`` of ``DistributedSampler(shuffle=True, seed=--seed)`` (or, with
  ``--repeated-aug``, timm's ``RepeatAugSampler``) set to epoch ``first_epoch + e`` -- the order the CPU path's
  loader draws, so a run is reproducible from
  ``--seed``, every sample is read once per epoch across ranks, and a resumed run replays the uninterrupted run's
  order; the last partial batch is dropped as by the CPU DataLoader's ``drop_last``;
- evaluation: this rank's contiguous, unpadded shard (``ShardSampler``), the last batch partial.

The ``gpu`` pipeline reads ``EncodedFiles`` through the CPU path's own DataLoader and samplers instead.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler, Subset

from common.engine.distributed import ShardSampler
from image_cls.data.imagenet import MAX_CONSECUTIVE_UNREADABLE, DataPathError
from image_cls.data.transforms import build_train_sampler

_log = logging.getLogger(__name__)

JPEG_START, JPEG_SCAN, JPEG_END = b"\xff\xd8\xff", b"\xff\xda", b"\xff\xd9"
PNG_START, PNG_END = b"\x89PNG\r\n\x1a\n", b"IEND"
# The other formats DALI's decoders read: BMP, TIFF (both byte orders), PNM (P1-P6), JPEG 2000 (box and codestream).
# (torchvision / TorchCodec read none of these but WebP: the gpu pipeline replaces such a file in its batch.)
OTHER_STARTS = (b"BM", b"II*\x00", b"MM\x00*", *(b"P%d" % i for i in range(1, 7)), b"\x00\x00\x00\x0cjP  ",
                b"\xff\x4f\xff\x51")


def encoded_image_problem(data: bytes) -> str | None:
    """Why a GPU pipeline's decoder could not decode ``data`` (empty, not an image, a truncated JPEG / PNG), or None.

    A JPEG needs an end-of-image marker after its last start-of-scan marker (entropy-coded data never contains
    ``FF D9`` or ``FF DA``, so a file cut inside its last scan has none); a PNG needs its whole ``IEND`` chunk.
    """
    if not data:
        return "empty file"
    if data.startswith(JPEG_START):
        scan = data.rfind(JPEG_SCAN)
        if scan < 0:
            return "JPEG without image data (no start-of-scan marker)"
        return None if data.rfind(JPEG_END) > scan else "truncated JPEG (no end-of-image marker after the last scan)"
    if data.startswith(PNG_START):
        end = data.rfind(PNG_END)
        return None if end > len(PNG_START) and end + 8 <= len(data) else "truncated PNG (no complete IEND chunk)"
    if data.startswith(OTHER_STARTS) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP"):
        return None
    return f"not an image file (starts with {data[:8]!r})"


def dataset_source(dataset: Dataset) -> Dataset:
    """The dataset behind a ``Subset`` (else ``dataset`` itself)."""
    return dataset.dataset if isinstance(dataset, Subset) else dataset


def _unwrap(dataset: Dataset) -> tuple[Any, np.ndarray | None]:
    """(the folder / tar dataset, its indices when ``dataset`` is a ``Subset`` of it, else None)."""
    indices = np.asarray(dataset.indices, dtype=np.int64) if isinstance(dataset, Subset) else None
    dataset = dataset_source(dataset)
    if not callable(getattr(dataset, "read_bytes", None)):
        raise ValueError(f"--data-pipeline dali reads ImageNet folders or tars only, not a {type(dataset).__name__}")
    return dataset, indices


class EncodedFiles(Dataset):
    """``(uint8 tensor of the file's bytes, label, files skipped)`` for each position of ``dataset``.

    Args:
        dataset: an ``ImageFolderSkipping`` / ``ImageTarDataset`` or a ``Subset`` of one.
    """

    def __init__(self, dataset: Dataset) -> None:
        source, self.indices = _unwrap(dataset)
        self.source = copy.copy(source)
        self.source.transform = None  # the GPU pipelines transform; the copy pickled to each worker stays small
        self.skipped = source.skipped  # the dataset's counter (the copy shares it)
        self.size = len(dataset)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, position: int) -> tuple[torch.Tensor, int, int]:
        index = int(position if self.indices is None else self.indices[position])
        data, label, skipped = self.read(index)
        return torch.frombuffer(bytearray(data), dtype=torch.uint8), label, skipped

    def read(self, index: int) -> tuple[bytes, int, int]:
        """(encoded file, label, files skipped) of the first decodable file from ``index`` of the underlying
        dataset on (wrapping around)."""
        n = len(self.source)
        for attempt in range(min(n, MAX_CONSECUTIVE_UNREADABLE)):
            i = (index + attempt) % n
            try:
                data = self.source.read_bytes(i)
            except OSError as err:
                problem = f"{type(err).__name__}: {err}"
            else:
                problem = encoded_image_problem(data)
            if problem is None:
                return data, int(self.source.label_of(i)), attempt
            _log.warning("skipping unreadable image %s (%s)", self.source.describe(i), problem)
        raise DataPathError(f"{MAX_CONSECUTIVE_UNREADABLE} consecutive unreadable images from "
                            f"{self.source.describe(index)} on: the data set is broken")


def collate_encoded(batch: list[tuple[torch.Tensor, int, int]]) -> tuple[list[torch.Tensor], torch.Tensor, int]:
    """DataLoader collate of ``EncodedFiles`` items: (file tensors, labels, files skipped in the batch)."""
    files, labels, skipped = zip(*batch, strict=True)
    return list(files), torch.tensor(labels, dtype=torch.int64), int(sum(skipped))


class EncodedBatches:
    """``fn.external_source`` callback: ``(encoded uint8 arrays, labels, skipped counts)`` of one batch.

    Args:
        dataset: an ``ImageFolderSkipping`` / ``ImageTarDataset`` or a ``Subset`` of one.
        batch_size: samples per batch on this rank.
        train: shuffled epochs with full batches only (else this rank's shard in order, last batch partial).
        seed, rank, world_size: the sampler's (``--seed``; the job's ranks).
        first_epoch: the training epoch that DALI's epoch 0 stands for (a resumed run starts later).
        repeated_aug: DeiT's repeated augmentation (timm's ``RepeatAugSampler``) instead of a plain shuffle.
    """

    def __init__(self, dataset: Dataset, *, batch_size: int, train: bool, seed: int = 0, rank: int = 0,
                 world_size: int = 1, first_epoch: int = 0, repeated_aug: bool = False) -> None:
        self.files = EncodedFiles(dataset)
        self.batch_size, self.train, self.first_epoch = batch_size, train, first_epoch
        if train and repeated_aug:  # timm's RepeatAugSampler, as the CPU path builds it
            self.sampler = build_train_sampler(self.files, True, world_size, rank, seed)
        elif train:
            self.sampler = DistributedSampler(self.files, num_replicas=world_size, rank=rank, shuffle=True,
                                              seed=seed)
        else:
            self.sampler = ShardSampler(self.files, num_replicas=world_size, rank=rank)
        self._cached: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        """Batches per epoch on this rank."""
        n = len(self.positions(self.first_epoch))
        return n // self.batch_size if self.train else -(-n // self.batch_size)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_cached"] = None
        return state

    def positions(self, epoch: int) -> np.ndarray:
        """This rank's dataset positions in the order of training epoch ``epoch`` (eval: the same every epoch)."""
        if self._cached is None or self._cached[0] != epoch:
            if self.train:
                self.sampler.set_epoch(epoch)
            self._cached = (epoch, np.fromiter(iter(self.sampler), dtype=np.int64))
        return self._cached[1]

    def __call__(self, info: Any) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
        """Batch ``info.iteration`` of DALI epoch ``info.epoch_idx``; ``StopIteration`` past the epoch's end."""
        order = self.positions(self.first_epoch + info.epoch_idx)
        start = info.iteration * self.batch_size
        stop = min(start + self.batch_size, len(order))
        if start >= stop or (self.train and stop - start < self.batch_size):
            raise StopIteration
        encoded, labels, skipped = [], [], []
        for position in order[start:stop]:
            index = int(position if self.files.indices is None else self.files.indices[position])
            data, label, n_skipped = self.files.read(index)
            encoded.append(np.frombuffer(data, dtype=np.uint8))
            labels.append(np.array([label], dtype=np.int32))
            skipped.append(np.array([n_skipped], dtype=np.int32))
        return encoded, labels, skipped
