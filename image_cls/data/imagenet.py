"""ImageNet readers: the folder layout (``<split>/<wnid>/*.JPEG``) and the tar layout (``<split>.tar``).

The tar reader follows LM4VisualEncoding ``image_classification/datasets.py`` ``ImageTarDataset``: a member is an
image when its name has exactly two ``/`` (``train/<wnid>/<file>``); classes are indexed by sorted wnid. Here the
tar is indexed once (name, data offset, size) and each DataLoader worker opens its own file handle on first use.

Both readers skip an unreadable image (warning + shared counter, see ``SkipCounter``) and return the next readable
sample instead, so a corrupt file never stops an epoch. A missing or mis-structured path raises ``DataPathError``
before any training starts.
"""

from __future__ import annotations

import io
import logging
import os
import tarfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch.utils.data import Dataset
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS

from common.engine import errors
from common.engine.data import SkipCounter

_log = logging.getLogger(__name__)

# What PIL raises on a truncated, corrupt or non-image file; anything else is a real bug and propagates.
UNREADABLE_IMAGE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)
MAX_CONSECUTIVE_UNREADABLE = 64
LAYOUTS = ("auto", "folder", "tar")


class DataPathError(errors.DataPathError, ValueError):
    """A data path that is missing, empty or not in the expected layout: the error family's (exit 4), still a
    ``ValueError`` for the callers that catch one."""


class SkipUnreadable:
    """Mixin: ``__getitem__`` that replaces an unreadable image by the next readable one (and counts it).

    Subclasses provide ``read_bytes(i)`` (the encoded file), ``label_of(i)`` and ``describe(i)`` (for messages) and
    set ``transform``, ``target_transform`` and ``skipped`` (a ``SkipCounter``). The DALI pipeline reads the same
    three methods (image_cls/data/encoded.py).
    """

    transform: Callable | None
    target_transform: Callable | None
    skipped: SkipCounter
    read_bytes: Callable[[int], bytes]  # the encoded file of sample i (OSError when unreadable)
    label_of: Callable[[int], int]
    describe: Callable[[int], str]  # where sample i lives, for messages

    @property
    def num_skipped(self) -> int:
        """Unreadable images skipped so far (all workers, cumulative over epochs)."""
        return self.skipped.value

    def __getitem__(self, index: int) -> tuple[Any, int]:
        n = len(self)
        for attempt in range(min(n, MAX_CONSECUTIVE_UNREADABLE)):
            i = (index + attempt) % n
            try:
                image = _read_rgb(io.BytesIO(self.read_bytes(i)))
            except UNREADABLE_IMAGE_ERRORS as err:
                self.skipped.add()
                _log.warning("skipping unreadable image %s (%s: %s)", self.describe(i), type(err).__name__, err)
                continue
            target = self.label_of(i)
            if self.transform is not None:
                image = self.transform(image)
            if self.target_transform is not None:
                target = self.target_transform(target)
            return image, target
        raise DataPathError(f"{MAX_CONSECUTIVE_UNREADABLE} consecutive unreadable images from "
                            f"{self.describe(index)} on: the data set is broken")



def _read_rgb(fileobj: Any) -> Image.Image:
    with Image.open(fileobj) as image:
        return image.convert("RGB")


class ImageFolderSkipping(SkipUnreadable, ImageFolder):
    """torchvision ``ImageFolder`` (``root/<wnid>/<image>``) that skips unreadable images.

    Args:
        class_to_idx: fixed wnid -> label map (e.g. the training classes); every folder in ``root`` must be in it.
            Default: the folder's own wnids, sorted, labelled 0..C-1.
    """

    def __init__(self, root: str | Path, transform: Callable | None = None, target_transform: Callable | None = None,
                 class_to_idx: Mapping[str, int] | None = None) -> None:
        self._fixed_class_to_idx = dict(class_to_idx) if class_to_idx is not None else None
        self.skipped = SkipCounter()
        root = Path(root)
        if not root.is_dir():
            raise DataPathError(f"{root}: no such directory")
        try:
            super().__init__(str(root), transform=transform, target_transform=target_transform)
        except FileNotFoundError as err:
            raise DataPathError(f"{root}: {err}") from None

    def find_classes(self, directory: str | Path) -> tuple[list[str], dict[str, int]]:
        classes = sorted(entry.name for entry in os.scandir(directory) if entry.is_dir())
        if not classes:
            raise DataPathError(f"{directory}: no class folders (expected {directory}/<wnid>/<image>)")
        if self._fixed_class_to_idx is None:
            return classes, {name: i for i, name in enumerate(classes)}
        unknown = [name for name in classes if name not in self._fixed_class_to_idx]
        if unknown:
            raise DataPathError(f"{directory}: {len(unknown)} class folder(s) not among the model's classes, "
                                f"e.g. {unknown[:3]}")
        return classes, {name: self._fixed_class_to_idx[name] for name in classes}

    def read_bytes(self, i: int) -> bytes:
        return Path(self.samples[i][0]).read_bytes()

    def label_of(self, i: int) -> int:
        return self.samples[i][1]

    def describe(self, i: int) -> str:
        return self.samples[i][0]


class ImageTarDataset(SkipUnreadable, Dataset):
    """Images inside an uncompressed tar (``<split>/<wnid>/<file>`` members), read without extracting.

    The member index (offset, size) is built once; every worker process opens its own handle lazily, so the
    dataset is safe with any number of DataLoader workers (fork or spawn).
    """

    def __init__(self, tar_path: str | Path, transform: Callable | None = None,
                 target_transform: Callable | None = None, class_to_idx: Mapping[str, int] | None = None) -> None:
        self.tar_path = Path(tar_path)
        self.transform = transform
        self.target_transform = target_transform
        self.skipped = SkipCounter()
        names, offsets, sizes, wnids = _index_tar(self.tar_path)
        self.classes = sorted(set(wnids))
        if class_to_idx is None:
            self.class_to_idx = {name: i for i, name in enumerate(self.classes)}
        else:
            unknown = [w for w in self.classes if w not in class_to_idx]
            if unknown:
                raise DataPathError(f"{self.tar_path}: {len(unknown)} class(es) not among the model's classes, "
                                    f"e.g. {unknown[:3]}")
            self.class_to_idx = {w: int(class_to_idx[w]) for w in self.classes}
        self.names = names
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self.sizes = np.asarray(sizes, dtype=np.int64)
        self.targets = [self.class_to_idx[w] for w in wnids]
        self._handle = None
        self._handle_pid = -1

    def __len__(self) -> int:
        return len(self.names)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_handle"], state["_handle_pid"] = None, -1
        return state

    def close(self) -> None:
        """Close this process's handle on the tar (reopened on the next read)."""
        handle, self._handle = getattr(self, "_handle", None), None
        if handle is not None:
            handle.close()

    def __del__(self) -> None:
        self.close()

    def _file(self):
        if self._handle is None or self._handle_pid != os.getpid():
            self._handle = open(self.tar_path, "rb")  # noqa: SIM115 - kept open for the worker's lifetime
            self._handle_pid = os.getpid()
        return self._handle

    def read_bytes(self, i: int) -> bytes:
        handle = self._file()
        handle.seek(int(self.offsets[i]))
        return handle.read(int(self.sizes[i]))

    def label_of(self, i: int) -> int:
        return self.targets[i]

    def describe(self, i: int) -> str:
        return f"{self.tar_path}:{self.names[i]}"


def _index_tar(tar_path: Path) -> tuple[list[str], list[int], list[int], list[str]]:
    """(member names, data offsets, sizes, wnids) of the image members ``<top>/<wnid>/<file>`` of ``tar_path``."""
    if not tar_path.is_file():
        raise DataPathError(f"{tar_path}: no such file")
    names, offsets, sizes, wnids = [], [], [], []
    try:
        with tarfile.open(tar_path, mode="r:") as tar:
            for member in tar:
                name = member.name[2:] if member.name.startswith("./") else member.name
                parts = name.split("/")
                if member.isfile() and len(parts) == 3 and name.lower().endswith(IMG_EXTENSIONS):
                    names.append(name)
                    offsets.append(member.offset_data)
                    sizes.append(member.size)
                    wnids.append(parts[1])
    except tarfile.ReadError as err:
        raise DataPathError(f"{tar_path}: not an uncompressed tar file ({err})") from None
    if not names:
        raise DataPathError(f"{tar_path}: no image members named <split>/<wnid>/<file>")
    return names, offsets, sizes, wnids


def resolve_layout(data_path: str | Path, split: str, layout: str = "auto") -> Path:
    """Path of ``split`` under ``data_path``: ``<data_path>/<split>/`` (folder) or ``<data_path>/<split>.tar``."""
    if layout not in LAYOUTS:
        raise DataPathError(f"data layout must be one of {LAYOUTS}, got {layout!r}")
    root = Path(data_path)
    if not root.is_dir():
        raise DataPathError(f"--data-path {root}: no such directory")
    folder, tar = root / split, root / f"{split}.tar"
    if layout in ("auto", "folder") and folder.is_dir():
        return folder
    if layout in ("auto", "tar") and tar.is_file():
        return tar
    expected = {"auto": f"{folder}/<wnid>/<image> or {tar}", "folder": f"{folder}/<wnid>/<image>", "tar": str(tar)}
    raise DataPathError(f"--data-path {root}: expected {expected[layout]}")


def build_imagenet_dataset(data_path: str | Path, split: str, transform: Callable | None = None,
                           layout: str = "auto", class_to_idx: Mapping[str, int] | None = None
                           ) -> ImageFolderSkipping | ImageTarDataset:
    """The ``split`` ('train' / 'val') of an ImageNet-layout data path, as folders or as ``<split>.tar``.

    Raises ``DataPathError`` (with a one-line message) for a missing, empty or mis-structured path.
    """
    path = resolve_layout(data_path, split, layout)
    if path.suffix == ".tar":
        return ImageTarDataset(path, transform=transform, class_to_idx=class_to_idx)
    return ImageFolderSkipping(path, transform=transform, class_to_idx=class_to_idx)


def build_train_val(data_path: str | Path, train_transform: Callable | None, val_transform: Callable | None,
                    layout: str = "auto") -> tuple[Dataset, Dataset, list[str]]:
    """Train and val splits with one class map (the training wnids, sorted); returns (train, val, classes)."""
    train = build_imagenet_dataset(data_path, "train", train_transform, layout)
    val = build_imagenet_dataset(data_path, "val", val_transform, layout, class_to_idx=train.class_to_idx)
    return train, val, list(train.classes)
