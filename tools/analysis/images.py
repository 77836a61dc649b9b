"""Images and ImageNet-S ground-truth masks for the analysis CLI.

ImageNet-S (LUSSeg/ImageNet-S) stores semantic masks as RGB PNGs whose class id is ``R + 256 * G``
(the ids go past 255); 0 is background and 1000 is "ignore" (mmsegmentation's ImageNetS loader and
``ignore_index=1000``). Single-channel PNGs are read as the id directly.
A mask is looked for beside its image (``<split>/<wnid>/<name>.png`` next to ``<name>.JPEG``) and in the
official layout's sibling folder (``<split>-segmentation/<wnid>/<name>.png``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

IGNORE_LABEL = 1000
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def decode_mask(path: Path) -> np.ndarray:
    """Class-id map (H, W) int64 of an ImageNet-S mask PNG (RGB: R + 256*G; grey/indexed: the value)."""
    with Image.open(path) as image:
        if image.mode in ("RGB", "RGBA"):
            rgb = np.asarray(image.convert("RGB"), dtype=np.int64)
            return rgb[..., 0] + 256 * rgb[..., 1]
        return np.asarray(image, dtype=np.int64)


def foreground_and_ignore(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(foreground, ignore) boolean masks: foreground = not background (0) and not ignore (1000)."""
    ignore = labels == IGNORE_LABEL
    return (labels != 0) & ~ignore, ignore


def find_mask(image_path: Path) -> Path | None:
    """The ImageNet-S mask of an image, beside it or in ``<split>-segmentation/<wnid>/``; None if absent."""
    beside = image_path.with_suffix(".png")
    if beside != image_path and beside.is_file():
        return beside
    wnid_dir = image_path.parent
    split_dir = wnid_dir.parent
    official = split_dir.parent / f"{split_dir.name}-segmentation" / wnid_dir.name / f"{image_path.stem}.png"
    return official if official.is_file() else None


@dataclass
class Sample:
    """One preprocessed image, its display copy and (optionally) its cropped ground truth."""

    path: Path
    tensor: torch.Tensor  # (C, S, S), normalised
    display: np.ndarray  # (S, S, 3) float in [0, 1]
    foreground: np.ndarray | None = None  # (S, S) bool
    ignore: np.ndarray | None = None  # (S, S) bool


def _resize_crop(image: Image.Image, size: int, crop_pct: float, resample: int) -> Image.Image:
    """Resize the shorter side to size / crop_pct, then centre-crop size x size (DeiT eval transform).

    Inputs of 32 px or less are resized straight to size x size (DeiT does not crop those).
    """
    if size <= 32:
        return image if image.size == (size, size) else image.resize((size, size), resample)
    short = int(size / crop_pct)
    width, height = image.size
    scale = short / min(width, height)
    image = image.resize((max(size, round(width * scale)), max(size, round(height * scale))), resample)
    left = (image.size[0] - size) // 2
    top = (image.size[1] - size) // 2
    return image.crop((left, top, left + size, top + size))


def load_sample(path: Path, size: int, in_chans: int = 3, crop_pct: float = 0.875,
                mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD,
                with_mask: bool = True) -> Sample:
    """Read, resize/crop and normalise one image; the mask (if found) gets the same geometry (nearest)."""
    with Image.open(path) as raw:
        image = raw.convert("RGB")
    cropped = _resize_crop(image, size, crop_pct, Image.Resampling.BICUBIC)
    display = np.asarray(cropped, dtype=np.float32) / 255.0
    array = display if in_chans == 3 else np.asarray(cropped.convert("L"), dtype=np.float32)[..., None] / 255.0
    if len(mean) != in_chans or len(std) != in_chans:
        raise ValueError(f"mean/std have {len(mean)}/{len(std)} values for a {in_chans}-channel model")
    tensor = (torch.from_numpy(array.copy()).permute(2, 0, 1) - torch.tensor(mean)[:, None, None]) / torch.tensor(
        std)[:, None, None]
    sample = Sample(path=path, tensor=tensor.float(), display=display)
    masks = load_mask(path, size, crop_pct, image.size) if with_mask else None
    if masks is not None:
        sample.foreground, sample.ignore = masks
    return sample


def load_mask(image_path: Path, size: int, crop_pct: float = 0.875,
              image_size: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """(foreground, ignore) (size, size) of the image's ImageNet-S mask with the evaluation geometry of
    ``load_sample`` (resize the shorter side to size / crop_pct, centre crop; nearest); None without a mask."""
    mask_path = find_mask(Path(image_path))
    if mask_path is None:
        return None
    if image_size is None:
        with Image.open(image_path) as raw:
            image_size = raw.size
    labels = decode_mask(mask_path)
    if labels.shape != (image_size[1], image_size[0]):
        raise ValueError(f"mask {mask_path} is {labels.shape[::-1]} but its image is {image_size}")
    label_image = Image.fromarray(labels.astype(np.int32))  # mode "I"
    cropped = np.asarray(_resize_crop(label_image, size, crop_pct, Image.Resampling.NEAREST))
    return foreground_and_ignore(cropped.astype(np.int64))
