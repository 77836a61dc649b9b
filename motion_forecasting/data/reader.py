"""File -> ``Scenario`` -> vectorised sample, for either source (no torch: preprocessing workers import this)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import av1, av2
from .scenario import Scenario
from .vectorize import VectorConfig, vectorize

SOURCES = ("av1", "av2")
REASONS = ("unreadable", "no_agent", "many_agents", "wrong_length", "nan", "unknown_city", "missing_map")
STEPS = {"av1": (av1.OBS_STEPS, av1.FUTURE_STEPS), "av2": (av2.OBS_STEPS, av2.FUTURE_STEPS)}


def list_split(source: str, root: str | Path) -> list[Path]:
    """Scene files of a split folder (AV1 CSVs or AV2 scenario parquets), in a fixed order."""
    return av1.list_sequences(root) if source == "av1" else av2.list_scenarios(root)


class SceneReader:
    """File -> ``Scenario`` for one source (AV1 maps are loaded once per process on first use)."""

    def __init__(self, source: str, map_dir: str | Path | None, cfg: VectorConfig):
        if source not in SOURCES:
            raise ValueError(f"unknown dataset source {source!r} (choose from {', '.join(SOURCES)})")
        self.source, self.cfg = source, cfg
        self.maps = av1.MapStore(map_dir) if source == "av1" else None

    def read(self, path: str | Path) -> Scenario:
        if self.source == "av1":
            return av1.read_sequence(path, self.maps, self.cfg.lane_radius)
        return av2.read_scenario(path)

    def sample(self, path: str | Path) -> dict[str, np.ndarray]:
        return vectorize(self.read(path), self.cfg)
