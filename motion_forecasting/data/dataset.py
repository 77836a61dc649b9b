"""Datasets over one split: read on the fly (``ScenarioDataset``) or from the memory-mapped cache
(``cache.CachedDataset``); both return a sample dict or None for a skipped scene and count it by reason."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from common.engine.data import SkipCounter

from .reader import REASONS, SOURCES, STEPS, SceneReader, list_split
from .scenario import BadScenario

__all__ = ["REASONS", "SOURCES", "STEPS", "SceneReader", "ScenarioDataset", "SkipCounts", "collate", "list_split"]

class SkipCounts:
    """One cross-process ``SkipCounter`` per reason."""

    def __init__(self) -> None:
        self.counters = {r: SkipCounter() for r in REASONS}

    def add(self, reason: str) -> None:
        self.counters[reason if reason in self.counters else "unreadable"].add()

    def snapshot(self, prefix: str = "") -> dict[str, int]:
        return {f"{prefix}{r}": c.value for r, c in self.counters.items()}


class ScenarioDataset(Dataset):
    """Reads and vectorises each scene when asked (no cache); a bad scene gives None and is counted."""

    def __init__(self, files: Sequence[Path], reader: SceneReader, skips: SkipCounts):
        self.files, self.reader, self.skips = list(files), reader, skips
        self.ids = [Path(f).stem.removeprefix("scenario_") for f in self.files]

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict[str, np.ndarray] | None:
        try:
            sample = self.reader.sample(self.files[i])
        except BadScenario as e:
            self.skips.add(e.reason)
            return None
        sample["index"] = np.int64(i)
        return sample


PAD_KEYS = {"agent_vec": "agents", "agent_vec_mask": "agents", "agent_pos": "agents", "lane_vec": "lanes",
            "lane_vec_mask": "lanes"}


def collate(samples: Sequence[dict | None]) -> dict[str, torch.Tensor] | None:
    """Pad agents and lane pieces to the batch maximum (at least one lane slot); ``agent_mask`` / ``lane_mask``
    (B, N) are True for real tokens. Skipped scenes (None) are dropped; an all-skipped batch is None."""
    samples = [s for s in samples if s is not None]
    if not samples:
        return None
    n_agents = max(len(s["agent_vec"]) for s in samples)
    n_lanes = max(1, max(len(s["lane_vec"]) for s in samples))
    out: dict[str, torch.Tensor] = {}
    for key in samples[0]:
        if key in PAD_KEYS:
            size = n_agents if PAD_KEYS[key] == "agents" else n_lanes
            first = samples[0][key]
            buf = np.zeros((len(samples), size, *first.shape[1:]), dtype=first.dtype)
            for b, s in enumerate(samples):
                buf[b, : len(s[key])] = s[key]
            out[key] = torch.from_numpy(buf)
        else:
            out[key] = torch.from_numpy(np.stack([np.asarray(s[key]) for s in samples]))
    out["agent_mask"] = out["agent_vec_mask"].any(-1)
    out["lane_mask"] = out["lane_vec_mask"].any(-1)
    return out
