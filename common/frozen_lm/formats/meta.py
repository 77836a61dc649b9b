"""Meta's consolidated LLaMA-1/2/3 release format: ``params.json`` + ``consolidated.NN.pth``.

Checkpoints of 13B and larger are model-parallel: shard ``NN`` holds a slice of each matrix, split along the
output dimension for ``wq/wk/wv/w1/w3/output`` and along the input dimension for ``wo/w2/tok_embeddings``;
norms (and ``rope.freqs``) are replicated. Only the requested tensors are sliced out of the memory-mapped
shards and concatenated. ``rope.freqs`` tables (top level and ``layers.N.attention.inner_attention.rope.freqs``)
are skipped by name: the block has no rotary embedding.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..config import LMConfig, meta_ffn_hidden
from ..errors import CheckpointError
from .base import CheckpointReader, TensorInfo, load_json_object, torch_dtype_is_float, torch_load_mmap, torch_raw_bytes
from .pages import release_file_pages

PARAMS_FILE = "params.json"
SHARD_GLOB = "consolidated.*.pth"
# Module -> dimension along which model-parallel shards are split (absent: replicated in every shard).
SPLIT_DIM = {
    "attention.wq": 0, "attention.wk": 0, "attention.wv": 0, "feed_forward.w1": 0, "feed_forward.w3": 0,
    "output": 0, "attention.wo": 1, "feed_forward.w2": 1, "tok_embeddings": 1,
}


def is_meta_dir(path: Path) -> bool:
    """A directory with Meta's ``params.json``."""
    return path.is_dir() and (path / PARAMS_FILE).is_file()


def read_meta_config(path: Path) -> LMConfig:
    """LMConfig from ``params.json`` (dim, n_layers, n_heads, [n_kv_heads], norm_eps, multiple_of,
    [ffn_dim_multiplier]), as Meta's ``ModelArgs`` reads it."""
    file = path / PARAMS_FILE
    params = load_json_object(file)
    for key in ("dim", "n_layers", "n_heads", "norm_eps"):
        if key not in params:
            raise CheckpointError(f"{file}: missing key '{key}'")
    try:
        dim, n_heads = int(params["dim"]), int(params["n_heads"])
        return LMConfig(
            family="llama",
            dim=dim,
            n_layers=int(params["n_layers"]),
            n_heads=n_heads,
            n_kv_heads=int(params.get("n_kv_heads") or n_heads),
            head_dim=dim // n_heads,
            ffn_hidden=meta_ffn_hidden(dim, int(params.get("multiple_of", 256)), params.get("ffn_dim_multiplier")),
            norm_eps=float(params["norm_eps"]),
            activation="silu",
        )
    except (TypeError, ValueError, ZeroDivisionError) as exc:
        raise CheckpointError(f"{file}: invalid model parameters ({exc})") from exc


class MetaReader(CheckpointReader):
    """Lazy reader of a Meta consolidated checkpoint directory (one or several model-parallel shards)."""

    format = "meta"
    module_names = {
        "attn_norm": "attention_norm", "attn.q": "attention.wq", "attn.k": "attention.wk", "attn.v": "attention.wv",
        "attn.out": "attention.wo", "ffn_norm": "ffn_norm", "ffn.gate": "feed_forward.w1",
        "ffn.up": "feed_forward.w3", "ffn.down": "feed_forward.w2",
    }
    skipped_layer_suffixes = ("attention.inner_attention.rope.freqs",)

    def __init__(self, path: Path):
        config = read_meta_config(path)
        self._files = sorted(path.glob(SHARD_GLOB))
        if not self._files:
            raise CheckpointError(f"{path}: has {PARAMS_FILE} but no {SHARD_GLOB} weight file")
        self._states = [torch_load_mmap(file) for file in self._files]
        keys = list(self._states[0])
        for file, state in zip(self._files[1:], self._states[1:]):
            differing = sorted(set(keys) ^ set(state))
            if differing:
                raise CheckpointError(f"{file}: key '{differing[0]}' is not in every model-parallel shard")
        super().__init__(path, config, keys)

    def layer_prefix(self, index: int) -> str:
        return f"layers.{index}."

    def final_norm_prefix(self) -> str | None:
        return "norm."

    def file_of(self, key: str | None = None) -> str:
        return str(self._files[0]) if len(self._files) == 1 else str(self.path / SHARD_GLOB)

    def _split_dim(self, key: str) -> int | None:
        module = key.rsplit(".", 1)[0]
        if module.startswith("layers."):
            module = module.split(".", 2)[2]
        return SPLIT_DIM.get(module)

    def _pieces(self, key: str) -> list[torch.Tensor]:
        return [state[key] for state in self._states]

    def info(self, key: str) -> TensorInfo:
        pieces = self._pieces(key)
        dtypes = {p.dtype for p in pieces}
        if len(dtypes) > 1:
            raise CheckpointError(f"{self.file_of()}: tensor '{key}' has different dtypes across shards")
        dim = self._split_dim(key)
        shapes = [tuple(p.shape) for p in pieces]
        if dim is None or len(pieces) == 1:
            if len(set(shapes)) > 1:
                raise CheckpointError(f"{self.file_of()}: replicated tensor '{key}' has different shapes {shapes}")
            shape = shapes[0]
        else:
            if any(len(s) != 2 for s in shapes) or len({s[1 - dim] for s in shapes}) > 1:
                raise CheckpointError(f"{self.file_of()}: shards of '{key}' cannot be joined along dim {dim}: {shapes}")
            shape = list(shapes[0])
            shape[dim] = sum(s[dim] for s in shapes)
            shape = tuple(shape)
        dtype = pieces[0].dtype
        return TensorInfo(shape, str(dtype).removeprefix("torch."), torch_dtype_is_float(dtype))

    def _load(self, key: str) -> tuple[torch.Tensor, memoryview]:
        pieces = self._pieces(key)
        dim = self._split_dim(key)
        if len(pieces) == 1:
            tensor = pieces[0]
        elif dim is None:
            tensor = pieces[0]
            bits = torch_raw_bytes(tensor)
            if not all(torch_raw_bytes(p) == bits for p in pieces[1:]):  # bitwise: NaN != NaN otherwise
                raise CheckpointError(f"{self.file_of()}: replicated tensor '{key}' differs between shards")
        else:
            tensor = torch.cat(pieces, dim=dim)
        return tensor, torch_raw_bytes(tensor)

    def _release(self, key: str, raw: memoryview) -> None:
        for piece in self._pieces(key):  # joined shards: ``raw`` is a copy, the pieces are mapped
            release_file_pages(torch_raw_bytes(piece))

    def close(self) -> None:
        self._states = []
