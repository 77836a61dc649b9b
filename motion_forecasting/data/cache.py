"""Reading the preprocessing cache that ``shards.build_cache`` writes: one memory-mapped shard at a time."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from .dataset import SkipCounts
from .reader import REASONS
from .shards import FIXED, RAGGED, CacheMismatch, build_cache, shard_dir

__all__ = ["CacheMismatch", "CachedDataset", "build_cache"]


class CachedDataset(Dataset):
    """A built cache, memory-mapped shard by shard on first access (in the process that reads it)."""

    def __init__(self, root: str | Path, skips: SkipCounts, ids: Sequence[str] | None = None):
        self.root = Path(root)
        meta_path = self.root / "meta.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"no preprocessing cache in {self.root} (meta.json missing)")
        self.meta = json.loads(meta_path.read_text())
        self.n, self.shard_size = self.meta["count"], self.meta["shard_size"]
        missing = [k for k in range(-(-self.n // self.shard_size)) if not shard_dir(self.root, k).is_dir()]
        if missing:
            raise FileNotFoundError(f"{self.root}: {len(missing)} shards missing (build it with "
                                    f"motion_forecasting.preprocess; it resumes)")
        self.skips, self.ids = skips, list(ids) if ids is not None else [str(i) for i in range(self.n)]
        self._shards: dict[int, dict[str, np.ndarray]] = {}

    def __len__(self) -> int:
        return self.n

    def _shard(self, k: int) -> dict[str, np.ndarray]:
        if k not in self._shards:
            d = shard_dir(self.root, k)
            self._shards[k] = {p.stem: np.load(p, mmap_mode="r") for p in d.glob("*.npy")}
        return self._shards[k]

    def endpoints(self) -> np.ndarray:
        """The targets' final future positions (N_good, 2) of the whole split, from the shards' arrays."""
        ends = []
        for k in range(-(-self.n // self.shard_size)):
            shard = self._shard(k)
            good = (np.asarray(shard["status"]) == 0) & np.asarray(shard["future_mask"]).all(1)
            if shard["future"].shape[1]:
                ends.append(np.asarray(shard["future"][:, -1])[good])
        return np.concatenate(ends) if ends else np.zeros((0, 2))

    def __getitem__(self, i: int) -> dict[str, np.ndarray] | None:
        shard = self._shard(i // self.shard_size)
        j = i % self.shard_size
        status = int(shard["status"][j])
        if status:
            self.skips.add(REASONS[status - 1])
            return None
        out = {}
        for group, names in RAGGED.items():
            a, b = int(shard[f"{group}_offsets"][j]), int(shard[f"{group}_offsets"][j + 1])
            for name in names:
                out[name] = np.array(shard[name][a:b])
        for name in FIXED:
            out[name] = np.array(shard[name][j])
        out["index"] = np.int64(i)
        return out
