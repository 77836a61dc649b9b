"""Argoverse 2 motion forecasting: ``scenario_<id>.parquet`` + ``log_map_archive_<id>.json``, read with pyarrow and
json (no ``av2`` package). 110 steps at 10 Hz: 50 observed + 60 future; the focal track is the target."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .scenario import BadScenario, Lanes, Scenario

OBS_STEPS, FUTURE_STEPS = 50, 60
COLUMNS = ["track_id", "object_type", "timestep", "position_x", "position_y", "focal_track_id", "city",
           "scenario_id"]
IGNORED_TYPES = {"static", "background", "construction", "riderless_bicycle", "unknown"}  # not dynamic actors
VEHICLE_TYPES = {"vehicle", "bus"}
LANE_TYPES = ("VEHICLE", "BIKE", "BUS")


def map_path(scenario_path: str | Path) -> Path | None:
    """The ``log_map_archive_*.json`` next to a scenario parquet (AV2 layout: one folder per scenario)."""
    found = sorted(Path(scenario_path).parent.glob("log_map_archive_*.json"))
    return found[0] if found else None


def read_log_map(path: str | Path) -> Lanes:
    """Lane centrelines of an AV2 log map; attributes (is_intersection, BIKE lane, BUS lane)."""
    segments = json.loads(Path(path).read_text())["lane_segments"]
    points, offsets, attrs, ids = [], [0], [], []
    for seg in segments.values():
        line = [(p["x"], p["y"]) for p in seg["centerline"]]
        if len(line) < 2:
            continue
        points.extend(line)
        offsets.append(offsets[-1] + len(line))
        kind = seg.get("lane_type", "VEHICLE")
        attrs.append((float(bool(seg.get("is_intersection"))), float(kind == "BIKE"), float(kind == "BUS")))
        ids.append(int(seg["id"]))
    return Lanes(np.asarray(points, dtype=np.float64).reshape(-1, 2), np.asarray(offsets, dtype=np.int64),
                 np.asarray(attrs, dtype=np.float32).reshape(-1, 3), np.asarray(ids, dtype=np.int64))


def read_scenario(path: str | Path) -> Scenario:
    """One AV2 scenario as a ``Scenario`` (focal track first); ``BadScenario`` when it cannot be used."""
    try:
        table = pq.read_table(str(path), columns=COLUMNS)
    except (pa.ArrowInvalid, OSError, KeyError) as e:
        raise BadScenario("unreadable", f"{path}: {e}") from None
    mpath = map_path(path)
    if mpath is None:
        raise BadScenario("missing_map", f"no log_map_archive_*.json next to {path}")
    focal_ids = table.column("focal_track_id").unique().to_pylist()
    track = np.asarray(table.column("track_id").to_pylist(), dtype=object).astype(str)
    kind = np.asarray(table.column("object_type").to_pylist(), dtype=object).astype(str)
    step = table.column("timestep").to_numpy()
    xy = np.stack([table.column("position_x").to_numpy(), table.column("position_y").to_numpy()], 1)
    if len(focal_ids) != 1 or focal_ids[0] not in set(track):
        raise BadScenario("no_agent", str(path))
    focal = track == focal_ids[0]
    total = int(step.max()) + 1 if len(step) else 0
    if total not in (OBS_STEPS, OBS_STEPS + FUTURE_STEPS) or sorted(step[focal].tolist()) != list(range(total)):
        raise BadScenario("wrong_length", f"{path}: focal track covers {int(focal.sum())} of {total} steps")
    if not np.isfinite(xy[focal]).all():
        raise BadScenario("nan", str(path))
    keep = focal | ~np.isin(kind, list(IGNORED_TYPES))
    track, kind, step, xy = track[keep], kind[keep], step[keep], xy[keep]
    ids, inverse = np.unique(track, return_inverse=True)
    focal_index = int(np.searchsorted(ids, focal_ids[0]))
    order = np.concatenate([[focal_index], np.delete(np.arange(len(ids)), focal_index)])
    slot = np.empty(len(ids), dtype=np.int64)
    slot[order] = np.arange(len(ids))
    grid = np.full((len(ids), total, 2), np.nan)
    ok = np.isfinite(xy).all(1)
    grid[slot[inverse[ok]], step[ok]] = xy[ok]
    _, first_row = np.unique(inverse, return_index=True)
    types = np.empty(len(ids), dtype=np.int8)
    types[slot] = [1 if t == "AV" else 2 if k in VEHICLE_TYPES else 3 for t, k in zip(ids, kind[first_row])]
    types[0] = 0
    city = str(table.column("city")[0].as_py())
    sid = str(table.column("scenario_id")[0].as_py())
    return Scenario(sid, city, grid, types, ids[order], OBS_STEPS, read_log_map(mpath),
                    has_future=total == OBS_STEPS + FUTURE_STEPS)


def list_scenarios(root: str | Path) -> list[Path]:
    """The scenario parquets of a split folder (``<split>/<id>/scenario_<id>.parquet``), sorted."""
    return sorted(Path(root).glob("*/scenario_*.parquet")) or sorted(Path(root).glob("scenario_*.parquet"))
