"""Checkpoint formats: detection, config-only reading and lazy strict readers (Meta, Hugging Face, GGUF)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from ..config import LMConfig, resolve_layers
from ..errors import CheckpointError
from .base import CheckpointReader
from .gguf import GGUFCheckpointReader, config_from_gguf, is_gguf_file, open_gguf
from .hf import HFReader, is_hf_dir, read_hf_config
from .meta import MetaReader, is_meta_dir, read_meta_config

__all__ = ["CheckpointReader", "detect_format", "inspect_checkpoint", "open_checkpoint", "read_lm_config"]


def detect_format(path: str | os.PathLike) -> str:
    """``"meta"`` (dir with params.json), ``"hf"`` (dir with config.json) or ``"gguf"`` (file with GGUF magic)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or directory")
    if is_meta_dir(path):
        return "meta"
    if is_hf_dir(path):
        return "hf"
    if is_gguf_file(path):
        return "gguf"
    if path.is_dir():
        raise CheckpointError(f"{path}: not a checkpoint directory (no params.json for Meta, "
                              "no config.json for Hugging Face)")
    raise CheckpointError(f"{path}: not a checkpoint (a GGUF file or a Meta / Hugging Face directory is expected)")


def open_checkpoint(path: str | os.PathLike) -> CheckpointReader:
    """A lazy reader for the checkpoint at ``path``; only headers and indices are read here."""
    path = Path(path)
    readers = {"meta": MetaReader, "hf": HFReader, "gguf": GGUFCheckpointReader}
    return readers[detect_format(path)](path)


def read_lm_config(path: str | os.PathLike) -> LMConfig:
    """The block configuration of a checkpoint (Meta dir / HF dir / .gguf file); no tensor is read."""
    path = Path(path)
    fmt = detect_format(path)
    if fmt == "meta":
        return read_meta_config(path)
    if fmt == "hf":
        return read_hf_config(path)
    return config_from_gguf(open_gguf(path), path)


def inspect_checkpoint(path: str | os.PathLike, layers: int | Iterable[int] = (-1,),
                       final_norm: str = "unit") -> dict:
    """Read (strictly) only the requested layers and report config, layers, read counters and the sha256.

    The tensors are checked and hashed, then dropped: nothing is kept in memory.
    """
    if final_norm not in ("none", "unit", "pretrained"):
        raise ValueError(f"unknown final_norm {final_norm!r} (choose from none, unit, pretrained)")
    with open_checkpoint(path) as reader:
        cfg = reader.config
        indices = resolve_layers(layers, cfg.n_layers)
        for index in indices:
            for _ in reader.iter_layer(index):
                pass
        if final_norm == "pretrained":
            reader.read_final_norm()
        return {
            "path": str(Path(path).resolve()),
            "format": reader.format,
            "family": cfg.family,
            "dim": cfg.dim,
            "n_layers": cfg.n_layers,
            "n_heads": cfg.n_heads,
            "n_kv_heads": cfg.n_kv_heads,
            "head_dim": cfg.head_dim,
            "ffn_hidden": cfg.ffn_hidden,
            "norm_eps": cfg.norm_eps,
            "activation": cfg.activation,
            "pre_norm": cfg.pre_norm,
            "layers": indices,
            "final_norm": final_norm,
            "params_per_layer": cfg.params_per_layer(),
            "tensors_read": reader.tensors_read,
            "bytes_read": reader.bytes_read,
            "checkpoint_bytes": _size_on_disk(Path(path)),
            "sha256": reader.sha256,
        }


def _size_on_disk(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
