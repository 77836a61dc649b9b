"""DeiT's per-image transforms on decoded image tensors (uint8 CHW, on the GPU or the CPU), for the ``gpu`` pipeline.

The recipe is the one timm builds for the CPU path (``build_train_transform``), taken from that very object:

- RandomResizedCrop (timm's scale / ratio, its interpolation) and the horizontal flip: torchvision's
  ``RandomResizedCrop.get_params`` and ``v2.functional.resized_crop`` (antialiased, like PIL's resize);
- RandAugment: timm's own ``RandAugment`` instance -- op choice with replacement, per-op probability 0.5,
  magnitude noise N(m, mstd) clipped to [0, 10], timm's level-to-argument maps, fill = ImageNet mean, random
  bilinear/bicubic -- with each op's PIL function swapped for torchvision's tensor function of the same definition
  (``TENSOR_OPS``); so the op set is timm's (Invert and SolarizeAdd included) and every draw is timm's. One
  difference: torchvision's tensor affine samples bilinearly where DeiT's PIL ops resample bicubically (shear,
  translate, rotate);
- colour jitter (when there is no RandAugment): torchvision's ``v2.ColorJitter``;
- evaluation: bicubic resize of the shorter side to ``input_size / crop_ratio`` (not for ImageNet-C) + centre crop.

Normalisation and random erasing run on the whole batch afterwards (``gpu_pipeline.py``).
"""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Callable
from typing import Any

import torch
from PIL import Image
from timm.data.auto_augment import RandAugment
from torchvision.transforms import InterpolationMode, RandomResizedCrop, v2
from torchvision.transforms.v2 import functional as TF

PIL_TO_MODE = {Image.NEAREST: InterpolationMode.NEAREST, Image.BILINEAR: InterpolationMode.BILINEAR,
               Image.BICUBIC: InterpolationMode.BICUBIC}


def _grid_mode(resample: Any) -> InterpolationMode:
    """timm's ``resample`` kwarg (a PIL filter, or a tuple to draw one from) for torchvision's tensor affine, which
    samples nearest or bilinear only: bicubic becomes bilinear."""
    if isinstance(resample, (list, tuple)):
        resample = random.choice(resample)
    mode = PIL_TO_MODE[resample]
    return InterpolationMode.NEAREST if mode == InterpolationMode.NEAREST else InterpolationMode.BILINEAR


def _affine(image: torch.Tensor, *, shear=(0.0, 0.0), translate=(0.0, 0.0), fillcolor=None, resample=None,
            **_: Any) -> torch.Tensor:
    # PIL's AFFINE data (1, a, b, c, 1, d) maps output (x, y) to input (x + a y + b, c x + y + d) about the top-left
    # corner; torchvision's v2.RandAugment writes timm's shear the same way (atan, centre [0, 0]).
    return TF.affine(image, angle=0.0, translate=list(translate), scale=1.0, shear=list(shear),
                     interpolation=_grid_mode(resample), fill=list(fillcolor), center=[0, 0])


def _posterize(image: torch.Tensor, bits: int, **_: Any) -> torch.Tensor:
    if bits >= 8:
        return image
    return torch.zeros_like(image) if bits <= 0 else TF.posterize(image, int(bits))


def _solarize(image: torch.Tensor, threshold: int, **_: Any) -> torch.Tensor:
    return image if threshold > 255 else TF.solarize(image, threshold)


def _solarize_add(image: torch.Tensor, add: int, thresh: int = 128, **_: Any) -> torch.Tensor:
    added = (image.to(torch.int16) + add).clamp_(max=255).to(image.dtype)
    return torch.where(image < thresh, added, image)


def _rotate(image: torch.Tensor, degrees: float, fillcolor=None, resample=None, **_: Any) -> torch.Tensor:
    return TF.rotate(image, degrees, interpolation=_grid_mode(resample), fill=list(fillcolor))


def _enhance(fn: Callable) -> Callable:
    return lambda image, factor, **_: fn(image, factor)


def _no_arg(fn: Callable) -> Callable:
    return lambda image, **_: fn(image)


# timm op name -> the tensor version of its PIL function (same arguments, timm's ``level_fn`` output).
TENSOR_OPS: dict[str, Callable[..., torch.Tensor]] = {
    "AutoContrast": _no_arg(TF.autocontrast),
    "Equalize": _no_arg(TF.equalize),
    "Invert": _no_arg(TF.invert),
    "Rotate": _rotate,
    **dict.fromkeys(("Posterize", "PosterizeIncreasing", "PosterizeOriginal"), _posterize),
    **dict.fromkeys(("Solarize", "SolarizeIncreasing"), _solarize),
    "SolarizeAdd": _solarize_add,
    **dict.fromkeys(("Color", "ColorIncreasing"), _enhance(TF.adjust_saturation)),
    **dict.fromkeys(("Contrast", "ContrastIncreasing"), _enhance(TF.adjust_contrast)),
    **dict.fromkeys(("Brightness", "BrightnessIncreasing"), _enhance(TF.adjust_brightness)),
    **dict.fromkeys(("Sharpness", "SharpnessIncreasing"), _enhance(TF.adjust_sharpness)),
    "ShearX": lambda image, factor, **kw: _affine(image, shear=(math.degrees(math.atan(factor)), 0.0), **kw),
    "ShearY": lambda image, factor, **kw: _affine(image, shear=(0.0, math.degrees(math.atan(factor))), **kw),
    "TranslateX": lambda image, pixels, **kw: _affine(image, translate=(-pixels, 0.0), **kw),
    "TranslateY": lambda image, pixels, **kw: _affine(image, translate=(0.0, -pixels), **kw),
    "TranslateXRel": lambda image, pct, **kw: _affine(image, translate=(-pct * image.shape[-1], 0.0), **kw),
    "TranslateYRel": lambda image, pct, **kw: _affine(image, translate=(0.0, -pct * image.shape[-2]), **kw),
}


def tensor_rand_augment(rand_augment: RandAugment) -> RandAugment:
    """A copy of timm's ``RandAugment`` whose ops work on uint8 CHW tensors (``ValueError`` for an op without one)."""
    tensor_version = copy.deepcopy(rand_augment)
    for op in tensor_version.ops:
        if op.name not in TENSOR_OPS:
            raise ValueError(f"--data-pipeline gpu: RandAugment op {op.name} has no tensor version")
        op.aug_fn = TENSOR_OPS[op.name]
    return tensor_version


class TrainImageTransform:
    """One decoded training image (uint8 CHW) -> crop of ``size`` x ``size``, flipped, augmented (uint8)."""

    def __init__(self, timm_transform: v2.Compose | Any, size: int) -> None:
        steps = list(timm_transform.transforms)
        crop = steps[0]
        if not hasattr(crop, "scale"):
            raise ValueError("--data-pipeline gpu needs a RandomResizedCrop first (input size > 32)")
        self.size, self.scale, self.ratio = size, tuple(crop.scale), tuple(crop.ratio)
        interpolation = crop.interpolation
        choices = interpolation if isinstance(interpolation, (list, tuple)) else [interpolation]
        self.interpolations = [m if isinstance(m, InterpolationMode) else PIL_TO_MODE[m] for m in choices]
        self.flip_p = next((step.p for step in steps if type(step).__name__ == "RandomHorizontalFlip"), 0.0)
        self.rand_augment = None
        self.color_jitter = None
        for step in steps:
            if isinstance(step, RandAugment):
                self.rand_augment = tensor_rand_augment(step)
            elif type(step).__name__ == "ColorJitter":
                self.color_jitter = v2.ColorJitter(step.brightness, step.contrast, step.saturation, step.hue)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        top, left, height, width = RandomResizedCrop.get_params(image, self.scale, self.ratio)
        image = TF.resized_crop(image, top, left, height, width, [self.size, self.size],
                                interpolation=random.choice(self.interpolations), antialias=True)
        if random.random() < self.flip_p:
            image = TF.horizontal_flip(image)
        if self.rand_augment is not None:
            image = self.rand_augment(image)
        elif self.color_jitter is not None:
            image = self.color_jitter(image)
        return image


class EvalImageTransform:
    """One decoded image -> DeiT's evaluation crop (uint8): shorter side to ``size / crop_ratio`` (bicubic,
    antialiased), then the centre ``size`` x ``size``; ``resize=False`` crops only (ImageNet-C)."""

    def __init__(self, size: int, crop_ratio: float, resize: bool = True) -> None:
        self.size, self.resize_to = size, int(size / crop_ratio) if resize else None

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        if self.resize_to is not None:
            image = TF.resize(image, [self.resize_to], interpolation=InterpolationMode.BICUBIC, antialias=True)
        return TF.center_crop(image, [self.size, self.size])
