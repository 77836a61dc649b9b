"""Argoverse files written by the real writers (csv, ElementTree, numpy, json): a tiny PIT vector map with its bbox
table, and forecasting CSVs in the official column layout; the path of the real AV2 sample."""

from __future__ import annotations

import csv
import json
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

AV2_SAMPLE = Path(__file__).resolve().parents[3] / "shared" / "data" / "av2_motion_forecasting_sample"
AV2_SCENARIO = AV2_SAMPLE / "scenario_0a1e6f0a-1817-4a98-b02e-db8c9327d151.parquet"
CITY, CITY_ID = "PIT", 10314
LANES = {  # lane id -> (start, end, turn, traffic control, intersection): straight 10-node centrelines
    1001: ((-60.0, 0.0), (60.0, 0.0), "NONE", "False", "False"),
    1002: ((-60.0, 3.5), (60.0, 3.5), "NONE", "True", "False"),
    1003: ((10.0, -40.0), (10.0, 40.0), "LEFT", "False", "True"),
    1004: ((500.0, 500.0), (560.0, 500.0), "RIGHT", "False", "False"),  # far away: never near the agent
}


def write_av1_map(map_dir: Path, with_table: bool = True) -> Path:
    """``pruned_argoverse_PIT_10314_vector_map.xml`` (+ the halluc bbox table and its index JSON)."""
    map_dir.mkdir(parents=True, exist_ok=True)
    root = ET.Element("ArgoverseVectorMap")
    node_id = 0
    ways = []
    for lane_id, (start, end, turn, control, inter) in LANES.items():
        refs = []
        for x, y in np.linspace(start, end, 10):
            ET.SubElement(root, "node", id=str(node_id), x=f"{x:.3f}", y=f"{y:.3f}")
            refs.append(node_id)
            node_id += 1
        ways.append((lane_id, refs, turn, control, inter))
    for lane_id, refs, turn, control, inter in ways:
        way = ET.SubElement(root, "way", lane_id=str(lane_id))
        for k, v in (("has_traffic_control", control), ("turn_direction", turn), ("is_intersection", inter),
                     ("l_neighbor_id", "None"), ("r_neighbor_id", "None")):
            ET.SubElement(way, "tag", k=k, v=v)
        for r in refs:
            ET.SubElement(way, "nd", ref=str(r))
        ET.SubElement(way, "tag", k="predecessor", v="None")
    path = map_dir / f"pruned_argoverse_{CITY}_{CITY_ID}_vector_map.xml"
    ET.ElementTree(root).write(path)
    if with_table:
        boxes = [[min(s[0], e[0]) - 2, min(s[1], e[1]) - 2, max(s[0], e[0]) + 2, max(s[1], e[1]) + 2]
                 for s, e, *_ in LANES.values()]
        np.save(map_dir / f"{CITY}_{CITY_ID}_halluc_bbox_table.npy", np.asarray(boxes))
        (map_dir / f"{CITY}_{CITY_ID}_tableidx_to_laneid_map.json").write_text(
            json.dumps({str(i): lane_id for i, lane_id in enumerate(LANES)}))
    return path


def write_av1_csv(path: Path, seed: int = 0, steps: int = 50, others: int = 3, city: str = CITY,
                  agent: bool = True, agent_steps: int | None = None, nan: bool = False) -> Path:
    """One forecasting CSV: the AGENT drives along +x at 5-10 m/s on lane 1001, others nearby (one partially
    observed), the AV; rows sorted by timestamp as in the release."""
    rng = np.random.default_rng(seed)
    t0 = 315969629.0 + seed
    rows = []
    speed = rng.uniform(5, 10)
    tracks = [("AGENT" if agent else "OTHERS", lambda i: (-20 + speed * 0.1 * i, rng.normal(0, 0.05)),
               range(agent_steps or steps))]
    tracks.append(("AV", lambda i: (-30 + 8 * 0.1 * i, 3.5), range(steps)))
    for k in range(others):
        y0, x0, v = rng.uniform(-5, 5), rng.uniform(-40, 20), rng.uniform(0, 8)
        span = range(steps) if k else range(5, steps - 10)
        tracks.append(("OTHERS", lambda i, x0=x0, y0=y0, v=v: (x0 + v * 0.1 * i, y0), span))
    for kind, pos, span in tracks:
        tid = f"00000000-0000-0000-0000-{uuid.UUID(int=int(rng.integers(1 << 62))).hex[-12:]}"
        for i in span:
            x, y = pos(i)
            if nan and kind == "AGENT" and i == 7:
                x = float("nan")
            rows.append((t0 + 0.1 * i, tid, kind, x, y, city))
    rows.sort(key=lambda r: r[0])
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["TIMESTAMP", "TRACK_ID", "OBJECT_TYPE", "X", "Y", "CITY_NAME"])
        w.writerows(rows)
    return path


def write_av1_split(root: Path, n: int, first: int = 1, bad: bool = False, steps: int = 50) -> Path:
    """``root/data/<id>.csv`` for ids first..first+n-1; ``bad`` adds one scene per skip reason."""
    data = root / "data"
    for i in range(first, first + n):
        write_av1_csv(data / f"{i}.csv", seed=i, steps=steps)
    if bad:
        write_av1_csv(data / "900001.csv", seed=1, agent=False)
        write_av1_csv(data / "900002.csv", seed=2, agent_steps=35)
        write_av1_csv(data / "900003.csv", seed=3, nan=True)
        write_av1_csv(data / "900004.csv", seed=4, city="NYC")
        write_av1_csv(data / "900005.csv", seed=5, city="MIA")  # a real city whose map is absent
    return root
