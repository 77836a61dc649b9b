"""GGUF files (llama.cpp / ollama) through the ``gguf`` package.

The file is memory-mapped by ``gguf.GGUFReader``; only the requested tensors are dequantized
(``gguf.quants.dequantize``, any type the installed gguf supports: F32/F16/BF16/Q8_0/Q4_x/K-quants ...).
llama.cpp's converter reorders the rows of q and k inside each head for its interleaved RoPE (``llama`` arch
only); they are un-permuted back to the Hugging Face layout. Supported architectures: ``llama`` and ``qwen2``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..config import LMConfig
from ..errors import CheckpointError
from .base import CheckpointReader, TensorInfo, short_error

GGUF_MAGIC = b"GGUF"
FAMILY_OF_ARCH = {"llama": "llama", "qwen2": "qwen2"}
INTEGER_TYPES = ("I8", "I16", "I32", "I64")


def is_gguf_file(path: Path) -> bool:
    """A file that starts with the GGUF magic bytes."""
    if not path.is_file():
        return False
    with path.open("rb") as f:
        return f.read(4) == GGUF_MAGIC


def unpermute_rows(weight: np.ndarray, n_head: int) -> np.ndarray:
    """Inverse of llama.cpp's ``LlamaModel.permute``: per head, rows (pair, half) -> (half, pair)."""
    head_rows = weight.shape[0] // n_head
    return weight.reshape(n_head, head_rows // 2, 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def open_gguf(path: Path):
    """``gguf.GGUFReader`` on ``path`` (memory-mapped; parses metadata and the tensor table only)."""
    import gguf

    try:
        reader = gguf.GGUFReader(path)
    except Exception as exc:  # bad magic, unsupported version, truncated header/tensor table
        raise CheckpointError(f"{path}: not a readable GGUF file, truncated or corrupt ({short_error(exc)})") from exc
    if reader.byte_order != "I":
        raise CheckpointError(f"{path}: byte-swapped (big-endian) GGUF files are not supported")
    return reader


def _field(reader, path: Path, key: str, default=None):
    field = reader.get_field(key)
    if field is None:
        if default is None:
            raise CheckpointError(f"{path}: missing GGUF metadata key '{key}'")
        return default
    return field.contents()


def config_from_gguf(reader, path: Path) -> LMConfig:
    """LMConfig from GGUF metadata (``{arch}.block_count``, ``embedding_length``, ``feed_forward_length``,
    ``attention.head_count[_kv]``, ``attention.key_length``, ``attention.layer_norm_rms_epsilon``)."""
    arch = _field(reader, path, "general.architecture")
    family = FAMILY_OF_ARCH.get(arch)
    if family is None:
        raise CheckpointError(f"{path}: GGUF architecture {arch!r} is not supported "
                              f"(supported: {', '.join(FAMILY_OF_ARCH)})")
    if _field(reader, path, f"{arch}.expert_count", 0):
        raise CheckpointError(f"{path}: mixture-of-experts GGUF models are not supported")
    values = {}
    for name, key in (("dim", "embedding_length"), ("n_layers", "block_count"), ("n_heads", "attention.head_count"),
                      ("ffn_hidden", "feed_forward_length")):
        values[name] = _field(reader, path, f"{arch}.{key}")
    values["n_kv_heads"] = _field(reader, path, f"{arch}.attention.head_count_kv", values["n_heads"])
    for name, value in values.items():
        if not isinstance(value, int):  # per-layer arrays (e.g. OpenELM) are not a uniform block
            raise CheckpointError(f"{path}: GGUF metadata for {name} is {value!r}, expected one integer")
    eps = _field(reader, path, f"{arch}.attention.layer_norm_rms_epsilon")
    names = {t.name for t in reader.tensors}
    try:
        return LMConfig(
            family=family,
            head_dim=int(_field(reader, path, f"{arch}.attention.key_length", values["dim"] // values["n_heads"])),
            norm_eps=float(str(np.float32(eps))),  # stored as float32: 1e-5 reads back as 9.99999974e-06
            activation="silu",
            qkv_bias=family == "qwen2" or "blk.0.attn_q.bias" in names,
            out_bias="blk.0.attn_output.bias" in names,
            **values,
        )
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: invalid model metadata ({exc})") from exc


class GGUFCheckpointReader(CheckpointReader):
    """Lazy reader of one GGUF file."""

    format = "gguf"
    module_names = {
        "attn_norm": "attn_norm", "attn.q": "attn_q", "attn.k": "attn_k", "attn.v": "attn_v",
        "attn.out": "attn_output", "ffn_norm": "ffn_norm", "ffn.gate": "ffn_gate", "ffn.up": "ffn_up",
        "ffn.down": "ffn_down",
    }

    def __init__(self, path: Path, reader=None):
        self._reader = reader if reader is not None else open_gguf(path)  # ``reader``: already parsed
        config = config_from_gguf(self._reader, path)
        self._tensors = {t.name: t for t in self._reader.tensors}
        self._arch = self._reader.get_field("general.architecture").contents()
        super().__init__(path, config, list(self._tensors))

    def layer_prefix(self, index: int) -> str:
        return f"blk.{index}."

    def final_norm_prefix(self) -> str | None:
        return "output_norm."

    def info(self, key: str) -> TensorInfo:
        tensor = self._tensors[key]
        type_name = tensor.tensor_type.name
        shape = tuple(int(d) for d in reversed(tensor.shape.tolist()))  # GGUF lists dims innermost first
        return TensorInfo(shape, type_name, type_name not in INTEGER_TYPES)

    def _load(self, key: str) -> tuple[torch.Tensor, memoryview]:
        import gguf

        tensor = self._tensors[key]
        raw = np.ascontiguousarray(tensor.data)
        if raw.nbytes != tensor.n_bytes:
            raise CheckpointError(f"{self.path}: tensor '{key}' is truncated ({raw.nbytes} of {tensor.n_bytes} bytes)")
        try:
            values = gguf.quants.dequantize(raw, tensor.tensor_type)
        except NotImplementedError as exc:
            raise CheckpointError(f"{self.path}: tensor '{key}' has type {tensor.tensor_type.name}, which this "
                                  f"gguf package cannot dequantize") from exc
        values = np.asarray(values, dtype=np.float32).reshape(self.info(key).shape)
        if self._arch == "llama" and key.endswith(("attn_q.weight", "attn_q.bias", "attn_k.weight", "attn_k.bias")):
            n_head = self.config.n_heads if ".attn_q." in key else self.config.n_kv_heads
            values = unpermute_rows(values, n_head)
        if not values.flags.writeable or not values.flags.c_contiguous:  # a view of the read-only memory map
            values = np.array(values, copy=True, order="C")
        return torch.from_numpy(values), memoryview(raw.reshape(-1).view(np.uint8))

    def close(self) -> None:
        self._tensors = {}
        self._reader = None
