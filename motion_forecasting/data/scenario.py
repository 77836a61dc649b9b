"""The dataset-independent scene one reader returns: tracks (target first), lane centrelines, and why a scene is
unusable (``BadScenario`` with a short reason key, counted per epoch instead of crashing)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class BadScenario(Exception):
    """A scene that cannot be used; ``reason`` is the key it is counted under (``no_agent``, ``nan``...)."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass
class Lanes:
    """Lane centrelines of one map region: points (P, 2) float64 in city/map coordinates, ``offsets`` (L + 1,)
    (lane i is ``points[offsets[i]:offsets[i+1]]``), ``attrs`` (L, 3) float32 and the source lane ids (L,)."""

    points: np.ndarray
    offsets: np.ndarray
    attrs: np.ndarray
    ids: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def centreline(self, i: int) -> np.ndarray:
        return self.points[self.offsets[i]:self.offsets[i + 1]]


@dataclass
class Scenario:
    """One forecasting scene.

    Attributes:
        scenario_id: the sequence id (AV1: the CSV stem) or AV2 ``scenario_id``.
        city: city name (``PIT``/``MIA`` or an AV2 city).
        xy: (A, T, 2) float64 positions at the T timesteps of the scene, NaN where a track is unobserved;
            track 0 is the target (AV1 ``AGENT``, AV2 focal track).
        types: (A,) int8 object class (0 target, 1 AV/ego, 2 other vehicle, 3 pedestrian/cyclist/other).
        track_ids: (A,) track ids as strings.
        num_obs: observed steps (20 AV1, 50 AV2); steps after it are the future (absent in test splits).
        lanes: the map's lanes around the target (city coordinates).
        has_future: whether the target's future is known (False for ``test_obs`` / AV2 test).
    """

    scenario_id: str
    city: str
    xy: np.ndarray
    types: np.ndarray
    track_ids: np.ndarray
    num_obs: int
    lanes: Lanes
    has_future: bool = True
