"""Scenario -> the vectors both models read, in the target's frame (origin at its last observed position, x axis
along its heading). Fixed per-polyline widths, variable counts (agents, lane pieces), each with a validity mask.

Per sample (A agents, target first; L lane pieces; H observed steps; P points per lane piece; F future steps):
  agent_vec (A, H-1, 6)   [x0, y0, x1, y1, t_mid / H, 1] per step pair, zero where either end is unobserved
  agent_vec_mask (A, H-1) True = the vector exists
  agent_pos (A, 2)        last observed position (mmTransformer's POS)
  lane_vec (L, P-1, 7)    [x0, y0, x1, y1, attr0, attr1, attr2] along the centreline piece
  lane_vec_mask (L, P-1)
  history (H, 2), future (F, 2), future_mask (F,): the target's observed and future positions (future zero and
      masked out in test splits)
  origin (2,) float64, theta (): to map local predictions back: world = R(theta) @ local + origin
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .scenario import BadScenario, Scenario

AGENT_FEATURES, LANE_FEATURES = 6, 7


@dataclass(frozen=True)
class VectorConfig:
    """What the vectoriser keeps (mmTransformer's demo config: agents within 56 m, lanes within 65 m)."""

    agent_radius: float = 56.0
    lane_radius: float = 65.0
    max_agents: int = 64
    max_lanes: int = 160
    lane_points: int = 10
    future_steps: int | None = None  # None: the dataset's own


def heading(history: np.ndarray) -> float:
    """Heading (rad) of the last observed displacement longer than 0.1 m (0 when the target never moved)."""
    d = np.diff(history, axis=0)
    moved = np.flatnonzero(np.hypot(d[:, 0], d[:, 1]) > 0.1)
    if len(moved) == 0:
        return 0.0
    dx, dy = d[moved[-1]]
    return float(np.arctan2(dy, dx))


def to_local(xy: np.ndarray, origin: np.ndarray, theta: float) -> np.ndarray:
    c, s = np.cos(theta), np.sin(theta)
    d = xy - origin
    return np.stack([c * d[..., 0] + s * d[..., 1], -s * d[..., 0] + c * d[..., 1]], -1)


def to_world(local: np.ndarray, origin: np.ndarray, theta: float) -> np.ndarray:
    """Inverse of ``to_local`` (predictions back to city/map coordinates)."""
    c, s = np.cos(theta), np.sin(theta)
    return np.stack([c * local[..., 0] - s * local[..., 1], s * local[..., 0] + c * local[..., 1]], -1) + origin


def vectorize(scene: Scenario, cfg: VectorConfig) -> dict[str, np.ndarray]:
    """The model inputs and targets of ``scene`` (see the module docstring); ``BadScenario`` if unusable."""
    h = scene.num_obs
    hist = scene.xy[:, :h]
    target = hist[0]
    if not np.isfinite(target).all():
        raise BadScenario("nan", f"{scene.scenario_id}: target history")
    origin = target[-1].copy()
    theta = heading(target)
    valid = np.isfinite(hist).all(-1)
    local = np.where(valid[..., None], to_local(np.nan_to_num(hist), origin, theta), 0.0)
    # agents: >= 1 vector, last observed position within the radius; target first, then by distance
    vec_ok = valid[:, :-1] & valid[:, 1:]
    last_idx = np.where(valid.any(1), h - 1 - np.argmax(valid[:, ::-1], axis=1), 0)
    last_pos = local[np.arange(len(local)), last_idx]
    dist = np.hypot(last_pos[:, 0], last_pos[:, 1])
    keep = vec_ok.any(1) & (dist <= cfg.agent_radius)
    keep[0] = True
    idx = np.flatnonzero(keep)
    idx = np.concatenate([[0], sorted(idx[idx != 0], key=lambda i: dist[i])])[: cfg.max_agents]
    t_mid = (np.arange(h - 1) + 0.5) / h
    a_loc, a_ok = local[idx], vec_ok[idx]
    times = np.broadcast_to(t_mid[None, :, None], (len(idx), h - 1, 1))
    agent_vec = np.concatenate([a_loc[:, :-1], a_loc[:, 1:], times, np.ones((len(idx), h - 1, 1))], -1)
    agent_vec = np.where(a_ok[..., None], agent_vec, 0.0).astype(np.float32)
    out = {"agent_vec": agent_vec, "agent_vec_mask": a_ok, "agent_pos": last_pos[idx].astype(np.float32),
           "history": local[0].astype(np.float32)}
    out.update(_lanes(scene, origin, theta, cfg))
    fut_steps = cfg.future_steps or (scene.xy.shape[1] - h if scene.has_future else 0)
    future = np.zeros((fut_steps, 2), dtype=np.float32)
    fmask = np.zeros(fut_steps, dtype=bool)
    if scene.has_future:
        fut = scene.xy[0, h:h + fut_steps]
        if not np.isfinite(fut).all():
            raise BadScenario("nan", f"{scene.scenario_id}: target future")
        future[: len(fut)] = to_local(fut, origin, theta)
        fmask[: len(fut)] = True
    out.update(future=future, future_mask=fmask, origin=origin.astype(np.float64), theta=np.float64(theta))
    return out


def _lanes(scene: Scenario, origin: np.ndarray, theta: float, cfg: VectorConfig) -> dict[str, np.ndarray]:
    """Centrelines cut into pieces of ``lane_points`` points (consecutive pieces share an end point); the pieces
    with a point within ``lane_radius``, nearest first, at most ``max_lanes``."""
    p = cfg.lane_points
    lanes = scene.lanes
    pieces, attrs = [], []
    pts = to_local(lanes.points, origin, theta) if len(lanes.points) else np.zeros((0, 2))
    for i in range(len(lanes)):
        line = pts[lanes.offsets[i]:lanes.offsets[i + 1]]
        for start in range(0, max(len(line) - 1, 1), p - 1):
            piece = line[start:start + p]
            if len(piece) >= 2:
                pieces.append(piece)
                attrs.append(lanes.attrs[i])
    lane_vec = np.zeros((len(pieces), p - 1, 7), dtype=np.float32)
    mask = np.zeros((len(pieces), p - 1), dtype=bool)
    near = np.full(len(pieces), np.inf)
    for j, (piece, attr) in enumerate(zip(pieces, attrs)):
        n = len(piece) - 1
        lane_vec[j, :n, :2], lane_vec[j, :n, 2:4], lane_vec[j, :n, 4:] = piece[:-1], piece[1:], attr
        mask[j, :n] = True
        near[j] = np.hypot(piece[:, 0], piece[:, 1]).min()
    order = np.argsort(near, kind="stable")
    order = order[near[order] <= cfg.lane_radius][: cfg.max_lanes]
    return {"lane_vec": lane_vec[order], "lane_vec_mask": mask[order]}
