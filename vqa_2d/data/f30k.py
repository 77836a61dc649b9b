"""Flickr30k (Karpathy split): ``dataset_flickr30k.json`` + ``flickr30k-images/``, or METER's
``f30k_caption_karpathy_<split>.arrow`` (columns ``image`` JPEG bytes, ``caption`` list, ``image_id``, ``split``;
zdou0830/METER ``write_f30k_karpathy.py``)."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import torch
from torch.utils.data import Dataset

from common.engine.errors import DataPathError
from vqa_2d.data.inputs import encode_text, open_image, skip

KARPATHY_NAMES = ("dataset_flickr30k.json", "karpathy/dataset_flickr30k.json")


@dataclass
class CaptionedImage:
    image_id: str
    image: Any  # a path or (arrow table, row)
    captions: list[str]


def karpathy_json(root: Path) -> Path:
    for name in KARPATHY_NAMES:
        if (root / name).is_file():
            return root / name
    raise DataPathError(f"Flickr30k: none of {', '.join(KARPATHY_NAMES)} under {root}")


def read_karpathy(root: Path, splits: list[str]) -> tuple[list[CaptionedImage], dict[str, int]]:
    """Images of the given Karpathy splits with their non-empty captions; missing images / empty captions are
    counted and skipped."""
    path = karpathy_json(root)
    try:
        images = json.loads(path.read_text())["images"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise DataPathError(f"Flickr30k: {path} is not a Karpathy split file ({err})") from None
    folder = root / "flickr30k-images"
    out, skipped = [], {"missing_image": 0, "empty_caption": 0}
    for im in images:
        if im.get("split") not in splits:
            continue
        file = folder / im["filename"]
        if not file.is_file():
            skipped["missing_image"] += 1
            continue
        captions = [s["raw"].strip() for s in im["sentences"]]
        skipped["empty_caption"] += sum(1 for c in captions if not c)
        captions = [c for c in captions if c]
        if captions:
            out.append(CaptionedImage(im["filename"], file, captions))
    return out, skipped


def read_arrow(root: Path, splits: list[str]) -> tuple[list[CaptionedImage], dict[str, int]]:
    out, skipped = [], {"empty_caption": 0}
    for split in splits:
        path = root / f"f30k_caption_karpathy_{split}.arrow"
        if not path.is_file():
            raise DataPathError(f"Flickr30k: {path} not found")
        try:
            table = pa.ipc.RecordBatchFileReader(pa.memory_map(str(path), "r")).read_all()
        except pa.ArrowInvalid as err:
            raise DataPathError(f"Flickr30k: {path} is not an arrow file ({err})") from None
        if not {"image", "caption", "image_id"} <= set(table.column_names):
            raise DataPathError(f"Flickr30k: {path} lacks image / caption / image_id columns")
        for row, (captions, iid) in enumerate(zip(table["caption"].to_pylist(), table["image_id"].to_pylist())):
            kept = [c.strip() for c in captions if c and c.strip()]
            skipped["empty_caption"] += len(captions) - len(kept)
            if kept:
                out.append(CaptionedImage(str(iid), (table, row), kept))
    return out, skipped


def load_image(item: CaptionedImage):
    if isinstance(item.image, tuple):
        table, row = item.image
        return open_image(table["image"][row].as_py())
    return open_image(item.image)


class CaptionTrainDataset(Dataset):
    """One sample per (image, caption) with ``draw_false_text`` captions of other images (METER's irtr batch)."""

    def __init__(self, images: list[CaptionedImage], tokenizer, max_text_len: int, transform, draw_false_text: int):
        self.images, self.tokenizer, self.max_text_len = images, tokenizer, max_text_len
        self.transform, self.draw_false_text = transform, draw_false_text
        self.pairs = [(i, j) for i, im in enumerate(images) for j in range(len(im.captions))]
        if len(images) < 2 and draw_false_text:
            raise DataPathError("Flickr30k: negatives need at least two training images")

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict:
        i, j = self.pairs[index]
        image = load_image(self.images[i])
        if image is None:
            return skip("unreadable_image")
        texts = [self.images[i].captions[j]]
        while len(texts) < 1 + self.draw_false_text:
            k, c = self.pairs[random.randrange(len(self.pairs))]
            if k != i:
                texts.append(self.images[k].captions[c])
        enc = [encode_text(self.tokenizer, t, self.max_text_len) for t in texts]
        return {"pixels": self.transform(image), "text_ids": torch.stack([e[0] for e in enc]),
                "text_masks": torch.stack([e[1] for e in enc])}


class ImageSet(Dataset):
    """Evaluation images (index order)."""

    def __init__(self, images: list[CaptionedImage], transform):
        self.images, self.transform = images, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict:
        image = load_image(self.images[index])
        if image is None:
            return skip("unreadable_image")
        return {"pixels": self.transform(image), "index": index}


class TextSet(Dataset):
    """Evaluation captions, each with the index of its image."""

    def __init__(self, images: list[CaptionedImage], tokenizer, max_text_len: int):
        self.texts = [(i, c) for i, im in enumerate(images) for c in im.captions]
        self.tokenizer, self.max_text_len = tokenizer, max_text_len

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, index: int) -> dict:
        image_index, caption = self.texts[index]
        ids, mask = encode_text(self.tokenizer, caption, self.max_text_len)
        return {"text_ids": ids, "text_masks": mask, "image_index": image_index, "index": index}

    @property
    def text_image(self) -> torch.Tensor:
        return torch.tensor([i for i, _ in self.texts])


@dataclass
class RetrievalSet:
    """What ``evaluate`` takes for retrieval: both sides of the test set."""

    images: ImageSet
    texts: TextSet
