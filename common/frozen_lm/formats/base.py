"""What every checkpoint reader shares: strict per-layer lookup, shape/dtype checks, counters and the hash.

A reader knows (a) the LMConfig, (b) the names of all tensors in the checkpoint (from headers/indices only),
(c) how a logical tensor name (see ``config.py``) maps to a key of its format. Tensor data is touched only in
:meth:`CheckpointReader.read`, which counts tensors and bytes and feeds the fingerprint hash.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from ..config import LMConfig, Shape
from ..errors import CheckpointError
from .pages import release_file_pages


@dataclass(frozen=True)
class TensorInfo:
    """Header facts about one stored tensor, known without reading its data."""

    shape: Shape
    dtype: str
    is_float: bool  # floating point or a dequantizable GGUF type


class CheckpointReader(ABC):
    """Base class of the Meta / Hugging Face / GGUF readers (use as a context manager)."""

    format: str = ""
    # Logical module name -> module name of this format, relative to the layer prefix.
    module_names: dict[str, str] = {}
    # Per-layer keys that are ignored by name (rotary tables; the block has no RoPE).
    skipped_layer_suffixes: tuple[str, ...] = ()

    def __init__(self, path: Path, config: LMConfig, keys: list[str]):
        self.path = path
        self.config = config
        self.keys = keys
        self.tensors_read = 0
        self.bytes_read = 0
        self._hash = hashlib.sha256()

    # ---- format specifics -------------------------------------------------------------------------------------
    @abstractmethod
    def layer_prefix(self, index: int) -> str:
        """Key prefix of layer ``index`` (ends with a dot)."""

    @abstractmethod
    def final_norm_prefix(self) -> str | None:
        """Key prefix of the model's final norm, or None when the model has none."""

    @abstractmethod
    def info(self, key: str) -> TensorInfo:
        """Shape (canonical orientation) and dtype of ``key`` from headers only."""

    @abstractmethod
    def _load(self, key: str) -> tuple[torch.Tensor, memoryview]:
        """Read ``key``: (tensor in canonical layout, raw stored bytes for the hash)."""

    def file_of(self, key: str | None = None) -> str:
        """The file that holds ``key`` (for error messages)."""
        return str(self.path)

    @abstractmethod
    def close(self) -> None:
        """Drop file handles / memory maps."""

    def __enter__(self) -> CheckpointReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- shared logic ------------------------------------------------------------------------------------------
    @property
    def sha256(self) -> str:
        """sha256 over (key, shape, stored bytes) of every tensor read so far, in reading order."""
        return self._hash.hexdigest()

    def read(self, key: str) -> torch.Tensor:
        """Read one tensor (the only place tensor data is touched): counted and hashed."""
        return self._read_raw(key)[0]

    def _read_raw(self, key: str) -> tuple[torch.Tensor, memoryview]:
        try:
            tensor, raw = self._load(key)
        except CheckpointError:
            raise
        except Exception as exc:  # a corrupt/truncated file surfaces here as any library error
            raise CheckpointError(f"{self.file_of(key)}: cannot read tensor '{key}' ({short_error(exc)})") from exc
        self.tensors_read += 1
        self.bytes_read += raw.nbytes
        self._hash.update(key.encode())
        self._hash.update(repr(tuple(tensor.shape)).encode())
        self._hash.update(raw)
        return tensor, raw

    def _release(self, key: str, raw: memoryview) -> None:
        """Drop the resident mapped pages behind a consumed tensor (see ``pages.py``); readers whose raw bytes
        are a copy override this to release the mapped pieces instead."""
        release_file_pages(raw)

    def layer_sources(self, index: int) -> dict[str, str]:
        """Logical name -> key for every tensor layer ``index`` must have; strict about missing and extra keys."""
        prefix = self.layer_prefix(index)
        expected = self.config.layer_tensor_shapes()
        sources = {name: prefix + self._map_name(name) for name in expected}
        present = {k for k in self.keys if k.startswith(prefix)}
        missing = [key for key in sources.values() if key not in present]
        if missing:
            raise CheckpointError(
                f"{self.file_of()}: missing tensor '{missing[0]}' of layer {index}"
                + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
            )
        extra = sorted(k for k in present - set(sources.values()) if not self._skipped(k))
        if extra:
            raise CheckpointError(
                f"{self.file_of(extra[0])}: unexpected tensor '{extra[0]}' in layer {index} "
                f"(not part of a {self.config.family} block with this config)"
            )
        return sources

    def final_norm_sources(self) -> dict[str, str]:
        """Parameter name -> key of the final norm (strict); error when the checkpoint has none."""
        prefix = self.final_norm_prefix()
        if prefix is None or not self.config.has_final_norm:
            raise CheckpointError(f"{self.file_of()}: this checkpoint has no final norm (final_norm='pretrained' "
                                  "is impossible; use 'unit' or 'none')")
        sources = {name: prefix + name for name in self.config.norm_shapes()}
        for key in sources.values():
            if key not in self.keys:
                raise CheckpointError(f"{self.file_of()}: missing final norm tensor '{key}'")
        return sources

    def _skipped(self, key: str) -> bool:
        return any(key.endswith(suffix) for suffix in self.skipped_layer_suffixes)

    def _map_name(self, logical: str) -> str:
        module, param = logical.rsplit(".", 1)
        return f"{self.module_names.get(module, module)}.{param}"

    def read_tensors(self, sources: dict[str, str], expected: dict[str, Shape], what: str) -> dict[str, torch.Tensor]:
        """Check shapes/dtypes of all ``sources`` from headers first, then read them in sorted logical order."""
        self.check_tensors(sources, expected, what)
        return {name: self.read(sources[name]) for name in sorted(sources)}

    def check_tensors(self, sources: dict[str, str], expected: dict[str, Shape], what: str) -> None:
        """Shapes and dtypes of ``sources`` against ``expected``, from headers only (strict)."""
        for name in sorted(sources):
            key = sources[name]
            info = self.info(key)
            if not info.is_float:
                raise CheckpointError(f"{self.file_of(key)}: tensor '{key}' ({what}) has dtype {info.dtype}, "
                                      "expected a floating-point (or dequantizable) tensor")
            if tuple(info.shape) != tuple(expected[name]):
                raise CheckpointError(f"{self.file_of(key)}: tensor '{key}' ({what}) has shape {tuple(info.shape)}, "
                                      f"the checkpoint's config implies {tuple(expected[name])}")

    def read_layer(self, index: int) -> dict[str, torch.Tensor]:
        """All tensors of layer ``index`` by logical name (strict)."""
        return self.read_tensors(self.layer_sources(index), self.config.layer_tensor_shapes(), f"layer {index}")

    def iter_layer(self, index: int) -> Iterator[tuple[str, torch.Tensor]]:
        """(logical name, tensor) of layer ``index``, one at a time (strict: every header is checked first).

        Use each tensor before asking for the next: its mapped file pages are then released, so loading a block
        holds one stored tensor at a time on top of the block, not the whole stored layer.
        """
        sources = self.layer_sources(index)
        self.check_tensors(sources, self.config.layer_tensor_shapes(), f"layer {index}")
        for name in sorted(sources):
            tensor, raw = self._read_raw(sources[name])
            yield name, tensor
            del tensor
            self._release(sources[name], raw)

    def read_final_norm(self) -> dict[str, torch.Tensor]:
        """The checkpoint's final norm tensors by parameter name (strict)."""
        return self.read_tensors(self.final_norm_sources(), self.config.norm_shapes(), "final norm")


def torch_raw_bytes(tensor: torch.Tensor) -> memoryview:
    """The stored bytes of a CPU tensor (any dtype, bf16 included), without a copy when contiguous."""
    flat = tensor.detach().contiguous().reshape(-1)
    return memoryview(flat.view(torch.uint8).numpy())


def torch_dtype_is_float(dtype: torch.dtype) -> bool:
    """Floating-point dtypes the blocks can load (fp8 and complex are refused)."""
    return dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def load_json_object(file: Path) -> dict:
    """A JSON file holding an object (``config.json``, ``params.json``, a shard index); ``CheckpointError`` else."""
    try:
        data = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{file}: not a readable JSON file ({exc})") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"{file}: expected a JSON object")
    return data


def short_error(exc: BaseException) -> str:
    """First line of an exception message, prefixed with its type (library errors can span many lines)."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}".rstrip(": ")


def torch_load_mmap(file: Path) -> dict[str, torch.Tensor]:
    """Memory-map a ``torch.save`` file of a flat {name: tensor} dict: no tensor data is read here."""
    try:
        state = torch.load(file, map_location="cpu", mmap=True, weights_only=True)
    except Exception as exc:  # zip/pickle/mmap errors of a truncated or foreign file
        raise CheckpointError(
            f"{file}: not a readable torch checkpoint, truncated or corrupt ({short_error(exc)})") from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"{file}: expected a dict of tensors, found {type(state).__name__}")
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{file}: entry '{key}' is a {type(value).__name__}, expected a tensor")
    return state
