"""VideoMAE's SSv2 clip transforms, built from timm/torchvision pieces and applied to whole clips.

Train (``ssv2.py`` ``_aug_frame``), on the ``T`` decoded frames:
  1. RandAugment ``rand-m7-n4-mstd0.5-inc1`` (timm) with the *same* ops, magnitudes and coin flips for every
     frame (VideoMAE's video RandAugment applies one draw to the whole frame list; here timm's per-image
     RandAugment is re-run per frame from the same random state),
  2. to [0, 1], ImageNet mean/std,
  3. random resized crop, area scale (0.08, 1), aspect (3/4, 4/3), bilinear to ``input_size`` (one box per clip),
  4. **no horizontal flip** (SSv2 labels say left/right),
  5. random erasing (timm ``RandomErasing``, ``pixel`` mode): one box through all frames ("cube" erasing),
     fresh noise per frame and channel.
Test (``ssv2.py`` test mode): short side resized to ``short_side_size`` (bilinear), then per temporal view every
other frame of the decoded list and ``test_num_crop`` crops of ``short_side_size`` squared spread along the long
side: ``start = int(crop * (long - short) / (test_num_crop - 1))``.
Clips are ``(C, T, H, W)`` float tensors, the layout of the model's Conv3d.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.data.auto_augment import rand_augment_transform
from timm.data.random_erasing import RandomErasing
from timm.data.transforms import str_to_pil_interp
from torchvision.transforms import RandomResizedCrop

TRAIN_CROP_SCALE = (0.08, 1.0)
TRAIN_CROP_RATIO = (0.75, 1.3333)  # VideoMAE's values (not exactly 4/3)


def normalize(clip: torch.Tensor, mean: Sequence[float] = IMAGENET_DEFAULT_MEAN,
              std: Sequence[float] = IMAGENET_DEFAULT_STD) -> torch.Tensor:
    """``(C, T, H, W)`` in [0, 1] -> ImageNet-normalised (channel-wise)."""
    shape = (-1,) + (1,) * (clip.dim() - 1)
    return (clip - torch.tensor(mean).view(shape)) / torch.tensor(std).view(shape)


def frames_to_clip(frames: np.ndarray) -> torch.Tensor:
    """``(T, H, W, 3)`` uint8 -> ``(3, T, H, W)`` float in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2).float().div_(255.0)


class ConsistentRandAugment:
    """timm RandAugment over a list of frames with one draw for the whole clip.

    timm's ``RandAugment`` picks ops with ``numpy.random`` and magnitudes / coin flips with ``random``; both
    states are saved before the first frame and restored before each further one, so every frame replays the
    same choices. ``hparams`` as VideoMAE's ``create_random_augment``: ``translate_const = int(0.45 * size)``,
    the given PIL interpolation, grey (128) fill.
    """

    def __init__(self, config_str: str, input_size: int, interpolation: str = "bicubic"):
        hparams = {"translate_const": int(input_size * 0.45)}
        if interpolation and interpolation != "random":
            hparams["interpolation"] = str_to_pil_interp(interpolation)
        self.config_str = config_str
        self.augment = rand_augment_transform(config_str, hparams)

    def __call__(self, frames: Sequence[Image.Image]) -> list[Image.Image]:
        py_state, np_state = random.getstate(), np.random.get_state()
        out = []
        for i, frame in enumerate(frames):
            if i:
                random.setstate(py_state)
                np.random.set_state(np_state)
            out.append(self.augment(frame))
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config_str!r})"


def random_resized_crop(clip: torch.Tensor, size: int, scale: Sequence[float] = TRAIN_CROP_SCALE,
                        ratio: Sequence[float] = TRAIN_CROP_RATIO) -> torch.Tensor:
    """One Inception-style box for the whole ``(C, T, H, W)`` clip (torchvision's sampling, which is VideoMAE's
    ``_get_param_spatial_crop``), resized bilinearly to ``size`` squared."""
    top, left, h, w = RandomResizedCrop.get_params(clip, list(scale), list(ratio))
    crop = clip[..., top:top + h, left:left + w]
    return F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False)


class CubeErasing:
    """timm ``RandomErasing`` with one box for all frames: the clip is erased as one ``(T * C, H, W)`` image."""

    def __init__(self, probability: float, mode: str = "pixel", count: int = 1):
        self.erase = RandomErasing(probability, mode=mode, max_count=count, num_splits=count, device="cpu")

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        c, t, h, w = clip.shape
        frames = clip.transpose(0, 1).reshape(t * c, h, w)  # (T, C) order, as VideoMAE erases (T, C, H, W)
        self.erase(frames)
        return frames.reshape(t, c, h, w).transpose(0, 1).contiguous()


class TrainAugment:
    """VideoMAE's SSv2 training transform: ``(T, H, W, 3)`` uint8 frames -> ``(3, T, size, size)`` float."""

    def __init__(self, input_size: int = 224, auto_augment: str | None = "rand-m7-n4-mstd0.5-inc1",
                 interpolation: str = "bicubic", reprob: float = 0.25, remode: str = "pixel", recount: int = 1):
        self.input_size = input_size
        self.rand_augment = ConsistentRandAugment(auto_augment, input_size, interpolation) if auto_augment else None
        self.erasing = CubeErasing(reprob, remode, recount) if reprob > 0 else None

    def __call__(self, frames: np.ndarray) -> torch.Tensor:
        if self.rand_augment is not None:
            images = self.rand_augment([Image.fromarray(f) for f in frames])
            frames = np.stack([np.asarray(im) for im in images])
        clip = normalize(frames_to_clip(frames))
        clip = random_resized_crop(clip, self.input_size)
        # no horizontal flip: SSv2 classes distinguish left from right
        if self.erasing is not None:
            clip = self.erasing(clip)
        return clip


def short_side_size_of(height: int, width: int, size: int) -> tuple[int, int]:
    """(new_h, new_w) with the short side ``size`` (VideoMAE ``get_resize_sizes``: the long side truncated)."""
    if width < height:
        return int(size * height / width), size
    return size, int(size * width / height)


def crop_starts(long_side: int, size: int, num_crop: int) -> list[int]:
    """Offsets of the ``num_crop`` test crops along the long side (one crop: centred)."""
    if num_crop == 1:
        return [(long_side - size) // 2]
    step = (long_side - size) / (num_crop - 1)
    return [int(i * step) for i in range(num_crop)]


def multiview_clips(frames: np.ndarray, short_side_size: int, num_segment: int, num_crop: int) -> torch.Tensor:
    """VideoMAE's test views of one decode: ``frames`` are the ``multiview_frame_indices`` frames ``(2 * T, H, W, 3)``
    uint8; returns ``(num_segment * num_crop, 3, T, S, S)`` normalised, view ``v = segment * num_crop + crop``."""
    clip = frames_to_clip(frames)  # (3, 2T, H, W)
    new_h, new_w = short_side_size_of(clip.shape[2], clip.shape[3], short_side_size)
    if (new_h, new_w) != tuple(clip.shape[2:]):
        clip = F.interpolate(clip, size=(new_h, new_w), mode="bilinear", align_corners=False)
    clip = normalize(clip)
    tall = new_h >= new_w
    starts = crop_starts(max(new_h, new_w), short_side_size, num_crop)
    views = []
    for segment in range(num_segment):
        frames_of_view = clip[:, segment::2]
        for start in starts:
            if tall:
                views.append(frames_of_view[:, :, start:start + short_side_size, :])
            else:
                views.append(frames_of_view[:, :, :, start:start + short_side_size])
    return torch.stack(views)


def mix_clips(mixup_fn, clips: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """timm ``Mixup``/CutMix on ``(B, C, T, H, W)`` clips: applied to the ``(B, C * T, H, W)`` view, so a CutMix
    box covers the same pixels in every frame (timm's image code indexes ``x[:, :, y, x]``)."""
    b, c, t, h, w = clips.shape
    flat = clips.reshape(b, c * t, h, w)
    flat, targets = mixup_fn(flat, targets)
    return flat.reshape(b, c, t, h, w), targets

