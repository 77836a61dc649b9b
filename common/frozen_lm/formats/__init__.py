"""Checkpoint formats: detection, config-only reading and lazy strict readers (Meta, Hugging Face, GGUF), local or
on the Hugging Face Hub (``hf://org/name``: only the requested blocks' bytes are fetched, see ``hub.py``)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from ..config import LMConfig, resolve_layers
from ..errors import CheckpointError
from .base import CheckpointReader
from .gguf import GGUFCheckpointReader, config_from_gguf, is_gguf_file, open_gguf
from .hf import HFReader, is_hf_dir, read_hf_config
from .hub_ref import is_hub_path
from .meta import MetaReader, is_meta_dir, read_meta_config

__all__ = ["CheckpointReader", "checkpoint_location", "detect_format", "inspect_checkpoint", "is_hub_path",
           "open_checkpoint", "plan_checkpoint", "read_lm_config"]


def detect_format(path: str | os.PathLike) -> str:
    """``"meta"`` (dir with params.json), ``"hf"`` (dir with config.json), ``"gguf"`` (file with GGUF magic) or
    ``"hub"`` (a Hugging Face Hub model id, see ``hub_ref.py``)."""
    if is_hub_path(path):
        return "hub"
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
    if is_hub_path(path):
        from .hub import open_hub_checkpoint

        return open_hub_checkpoint(path)
    path = Path(path)
    readers = {"meta": MetaReader, "hf": HFReader, "gguf": GGUFCheckpointReader}
    return readers[detect_format(path)](path)


def read_lm_config(path: str | os.PathLike) -> LMConfig:
    """The block configuration of a checkpoint (Meta dir / HF dir / .gguf file / Hub id); no tensor is read."""
    if is_hub_path(path):
        from .hub import read_hub_config

        return read_hub_config(path)
    path = Path(path)
    fmt = detect_format(path)
    if fmt == "meta":
        return read_meta_config(path)
    if fmt == "hf":
        return read_hf_config(path)
    return config_from_gguf(open_gguf(path), path)


def checkpoint_location(path: str | os.PathLike, reader: CheckpointReader | None = None) -> str:
    """How a checkpoint is named in reports and fingerprints: the absolute local path, or the Hub URI with the
    resolved commit (``hf://org/name@<commit>[/path]``) when ``reader`` read it from the Hub."""
    location = getattr(reader, "location", None)
    return location or (str(path) if is_hub_path(path) else str(Path(path).resolve()))


def plan_checkpoint(path: str, layers: int | Iterable[int] = (-1,), final_norm: str = "unit") -> dict:
    """For a Hub model: the files, byte ranges and bytes to fetch for ``layers`` (only headers are fetched)."""
    if not is_hub_path(path):
        raise ValueError(f"{path}: a fetch plan is only made for a Hugging Face Hub model (hf://org/name)")
    with open_checkpoint(path) as reader:
        return reader.plan(layers, final_norm)


def inspect_checkpoint(path: str | os.PathLike, layers: int | Iterable[int] = (-1,),
                       final_norm: str = "unit", on_plan: Callable[[dict], None] | None = None) -> dict:
    """Read (strictly) only the requested layers and report config, layers, read counters and the sha256.

    The tensors are checked and hashed, then dropped: nothing is kept in memory. For a Hub model, ``on_plan``
    gets the fetch plan (see :func:`plan_checkpoint`) before any tensor byte is fetched, and the report gains
    ``hub`` (the plan and ``bytes_fetched``: what came from the network in this call, headers included).
    """
    if final_norm not in ("none", "unit", "pretrained"):
        raise ValueError(f"unknown final_norm {final_norm!r} (choose from none, unit, pretrained)")
    with open_checkpoint(path) as reader:
        cfg = reader.config
        indices = resolve_layers(layers, cfg.n_layers)
        plan = reader.plan(indices, final_norm) if hasattr(reader, "plan") else None
        if plan is not None and on_plan is not None:
            on_plan(plan)
        for index in indices:
            for _ in reader.iter_layer(index):
                pass
        if final_norm == "pretrained":
            reader.read_final_norm()
        report = {
            "path": checkpoint_location(path, reader),
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
            "checkpoint_bytes": reader.weights_bytes() if plan is not None else _size_on_disk(Path(path)),
            "sha256": reader.sha256,
        }
        if plan is not None:
            report["hub"] = {**plan, "bytes_fetched": reader.bytes_fetched}
        return report


def _size_on_disk(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
