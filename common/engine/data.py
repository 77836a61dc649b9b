"""Data helpers shared by the tasks' datasets."""

from __future__ import annotations

import torch
from torch.utils.data import get_worker_info


class SkipCounter:
    """Number of unreadable samples skipped, shared by the main process and all DataLoader workers.

    A shared-memory tensor with one slot per worker (the last slot is the main process), so every slot has a
    single writer and no lock is needed; it crosses fork and spawn worker start methods alike.
    """

    SLOTS = 256

    def __init__(self) -> None:
        self._counts = torch.zeros(self.SLOTS, dtype=torch.int64).share_memory_()

    def add(self, n: int = 1) -> None:
        """Count ``n`` more skipped samples (in this process's slot)."""
        worker = get_worker_info()
        slot = self.SLOTS - 1 if worker is None else worker.id % (self.SLOTS - 1)
        self._counts[slot] += n

    @property
    def value(self) -> int:
        """Samples skipped so far, over all processes."""
        return int(self._counts.sum())
