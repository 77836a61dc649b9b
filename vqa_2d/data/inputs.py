"""Inputs shared by both datasets: METER's CLIP image transform, the tokenizer, decoding, skip counting, collate.

METER ``meter/transforms/transform.py`` ``clip_transform``: bicubic resize of the short side, centre crop,
CLIP mean/std (``clip_randaug`` inserts RandAugment for training; here torchvision's ``RandAugment``).
"""

from __future__ import annotations

import io
import os
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import default_collate
from torchvision import transforms as T

from common.engine.errors import DataPathError

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
SKIP = "__skip__"


def image_transform(size: int, train: bool, randaug: bool = False) -> T.Compose:
    """METER's ``clip`` transform (``clip_randaug`` for training when ``randaug``)."""
    steps: list[Any] = [T.Resize(size, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(size)]
    if train and randaug:
        steps.append(T.RandAugment(2, 9))
    steps += [T.ToTensor(), T.Normalize(CLIP_MEAN, CLIP_STD)]
    return T.Compose(steps)


def open_image(source: str | os.PathLike | bytes) -> Image.Image | None:
    """RGB image from a path or encoded bytes; None when it cannot be read or decoded."""
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as im:
            return im.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError):
        return None


def load_tokenizer(path: str | os.PathLike):
    """A tokenizer from a local HF directory (roberta-base) or a ``.gguf`` file (its embedded BPE tokenizer)."""
    from transformers import AutoTokenizer

    path = Path(path)
    if not path.exists():
        raise DataPathError(f"--tokenizer {path}: no such file or directory")
    try:
        if path.is_file() and path.suffix == ".gguf":
            tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        else:
            tok = AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError) as err:
        raise DataPathError(f"--tokenizer {path}: not a tokenizer ({str(err).splitlines()[0]})") from err
    if tok.pad_token_id is None:
        raise DataPathError(f"--tokenizer {path}: the tokenizer has no padding token")
    return tok


def encode_text(tokenizer, text: str, max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and attention mask, padded/truncated to ``max_len`` (METER: ``padding="max_length"``)."""
    enc = tokenizer(text, padding="max_length", truncation=True, max_length=max_len, return_tensors="pt")
    return enc["input_ids"][0], enc["attention_mask"][0]


def skip(reason: str) -> dict[str, str]:
    """A sample the collate drops and counts."""
    return {SKIP: reason}


def collate(samples: list[dict]) -> dict[str, Any] | None:
    """``default_collate`` of the good samples; ``batch["skipped"]`` counts the dropped ones by reason."""
    good = [s for s in samples if SKIP not in s]
    skipped = Counter(s[SKIP] for s in samples if SKIP in s)
    batch = default_collate(good) if good else {}
    batch["skipped"] = dict(skipped)
    return batch


class SkipCounter:
    """Cumulative skip counts of this process (what ``TaskData.skipped`` reports)."""

    def __init__(self, static: dict[str, int] | None = None):
        self.counts: Counter[str] = Counter(static or {})

    def add(self, counts: dict[str, int]) -> None:
        self.counts.update(counts)

    def __call__(self) -> dict[str, int]:
        return dict(self.counts)
