"""Writers of image_cls test data in the real formats: a tiny LLaMA checkpoint (``torch.save`` with Meta's key
names + params.json) and ImageNet-style JPEGs (PIL)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

# A LLaMA-shaped tiny config, as a Meta params.json: FFN hidden = 32 * ceil(int(2 * 4 * 64 / 3) / 32) = 192.
TINY_LLAMA_PARAMS = {"dim": 64, "multiple_of": 32, "n_heads": 4, "n_layers": 2, "norm_eps": 1e-6, "vocab_size": -1}
TINY_LLAMA_HIDDEN = 192
# Real ImageNet wnids: class indices 0, 1, 2 of the sorted 1000.
WNIDS = ("n01440764", "n01443537", "n01484850")


def meta_llama_state(params: dict, hidden: int, seed: int = 0, vocab: int = 16) -> dict[str, torch.Tensor]:
    """Random LLaMA weights under Meta's consolidated.00.pth key names (incl. embeddings, output, rope.freqs)."""
    g = torch.Generator().manual_seed(seed)
    dim = params["dim"]

    def rnd(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * 0.1

    def norm() -> torch.Tensor:
        return 1.0 + 0.1 * torch.randn(dim, generator=g)

    head_dim = dim // params["n_heads"]
    state = {"tok_embeddings.weight": rnd(vocab, dim), "norm.weight": norm(), "output.weight": rnd(vocab, dim),
             "rope.freqs": 1.0 / (10000 ** (torch.arange(0, head_dim, 2).float() / head_dim))}
    for i in range(params["n_layers"]):
        p = f"layers.{i}."
        for name in ("wq", "wk", "wv", "wo"):
            state[p + f"attention.{name}.weight"] = rnd(dim, dim)
        state[p + "feed_forward.w1.weight"] = rnd(hidden, dim)
        state[p + "feed_forward.w2.weight"] = rnd(dim, hidden)
        state[p + "feed_forward.w3.weight"] = rnd(hidden, dim)
        state[p + "attention_norm.weight"] = norm()
        state[p + "ffn_norm.weight"] = norm()
    return state


def write_meta_llama(directory: Path, params: dict, hidden: int, seed: int = 0) -> Path:
    """``params.json`` + ``consolidated.00.pth`` as Meta releases LLaMA."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "params.json").write_text(json.dumps(params))
    torch.save(meta_llama_state(params, hidden, seed), directory / "consolidated.00.pth")
    return directory


def write_jpeg(path: Path, value: int | tuple[int, int, int], size: tuple[int, int] = (40, 36), seed: int = 0) -> Path:
    """A JPEG of roughly uniform colour ``value`` with a little noise."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    base = np.broadcast_to(np.asarray(value, dtype=np.int16), (size[1], size[0], 3))
    pixels = np.clip(base + rng.integers(-8, 9, base.shape), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path, format="JPEG", quality=90)
    return path


def write_corrupt_files(class_dirs: list[Path]) -> list[Path]:
    """A truncated JPEG at the end of the first class, a non-image '.JPEG' at the start of the last one."""
    truncated = write_jpeg(class_dirs[0] / "zz_truncated.JPEG", 128, size=(64, 64))
    truncated.write_bytes(truncated.read_bytes()[:300])
    garbage = class_dirs[-1] / "aa_garbage.JPEG"
    garbage.write_bytes(b"this is not a JPEG " * 20)
    return [truncated, garbage]


def write_imagenet_folder(root: Path) -> Path:
    """``train/<wnid>/`` (4 JPEGs per class + 2 unreadable files) and ``val/<wnid>/`` (2 per class) under ``root``."""
    for c, wnid in enumerate(WNIDS):
        for i in range(4):
            write_jpeg(root / "train" / wnid / f"{wnid}_{i}.JPEG", 40 + 80 * c, seed=10 * c + i)
        for i in range(2):
            write_jpeg(root / "val" / wnid / f"ILSVRC2012_val_{c}{i}.JPEG", 40 + 80 * c, seed=100 + 10 * c + i)
    write_corrupt_files([root / "train" / w for w in WNIDS])
    return root
