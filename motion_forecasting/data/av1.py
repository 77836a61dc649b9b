"""Argoverse 1.1 forecasting: the per-sequence CSVs and the city vector maps, read without ``argoverse-api``.

CSV columns ``TIMESTAMP, TRACK_ID, OBJECT_TYPE, X, Y, CITY_NAME`` (one ``AGENT``, 50 timestamps at 10 Hz, 20
in ``test_obs``). Map folder (``map_files/``): ``pruned_argoverse_{CITY}_{ID}_vector_map.xml`` (``<node id x y>``,
``<way lane_id>`` with ``tag`` k/v and ``nd ref``) and optionally ``{CITY}_{ID}_halluc_bbox_table.npy`` +
``{CITY}_{ID}_tableidx_to_laneid_map.json`` (argoverse-api's lane lookup: lanes whose hallucinated polygon bbox
overlaps the query square). Without the table the lookup uses the centrelines' own bboxes.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from .scenario import BadScenario, Lanes, Scenario

CITY_IDS = {"MIA": 10316, "PIT": 10314}
OBS_STEPS, FUTURE_STEPS = 20, 30
TURN = {"NONE": 0.0, "LEFT": 1.0, "RIGHT": -1.0}
TYPE_CODES = {"AGENT": 0, "AV": 1, "OTHERS": 2}
CSV_TYPES = {"TIMESTAMP": pa.float64(), "TRACK_ID": pa.string(), "OBJECT_TYPE": pa.string(), "X": pa.float64(),
             "Y": pa.float64(), "CITY_NAME": pa.string()}


def map_files(map_dir: str | Path, city: str) -> dict[str, Path]:
    """The official file names of ``city``'s vector map, bbox table and table-index JSON."""
    d, cid = Path(map_dir), CITY_IDS[city]
    return {"xml": d / f"pruned_argoverse_{city}_{cid}_vector_map.xml",
            "bbox": d / f"{city}_{cid}_halluc_bbox_table.npy",
            "index": d / f"{city}_{cid}_tableidx_to_laneid_map.json"}


class CityMap:
    """All lane centrelines of one city (compact arrays) and the bbox lookup of argoverse-api."""

    def __init__(self, lanes: Lanes, bboxes: np.ndarray):
        self.lanes, self.bboxes = lanes, bboxes  # bboxes (L, 4) xmin, ymin, xmax, ymax, in lanes' order

    @classmethod
    def load(cls, map_dir: str | Path, city: str) -> CityMap:
        files = map_files(map_dir, city)
        if not files["xml"].is_file():
            raise FileNotFoundError(f"AV1 vector map not found: {files['xml']}")
        lanes = read_vector_map(files["xml"])
        if files["bbox"].is_file() and files["index"].is_file():
            table = np.load(files["bbox"])
            index = json.loads(files["index"].read_text())
            row_of = {int(lane_id): int(row) for row, lane_id in index.items()}
            rows = np.array([row_of.get(int(i), -1) for i in lanes.ids])
            bboxes = np.where((rows >= 0)[:, None], table[np.maximum(rows, 0)], _centreline_bboxes(lanes))
        else:
            bboxes = _centreline_bboxes(lanes)
        return cls(lanes, bboxes.astype(np.float64))

    def lanes_near(self, x: float, y: float, radius: float) -> Lanes:
        """Lanes whose bbox overlaps the square of half-side ``radius`` around (x, y) (``get_lane_ids_in_xy_bbox``)."""
        b = self.bboxes
        hit = (b[:, 0] <= x + radius) & (b[:, 2] >= x - radius) & (b[:, 1] <= y + radius) & (b[:, 3] >= y - radius)
        return subset(self.lanes, np.flatnonzero(hit))


def subset(lanes: Lanes, keep: np.ndarray) -> Lanes:
    """The lanes ``keep`` (indices) of ``lanes``, as a new compact ``Lanes``."""
    lengths = np.diff(lanes.offsets)[keep]
    parts = [lanes.centreline(int(i)) for i in keep]
    points = np.concatenate(parts) if parts else np.zeros((0, 2))
    return Lanes(points, np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64), lanes.attrs[keep],
                 lanes.ids[keep])


def _centreline_bboxes(lanes: Lanes) -> np.ndarray:
    starts = lanes.offsets[:-1]
    if len(starts) == 0:
        return np.zeros((0, 4))
    lo = np.stack([np.minimum.reduceat(lanes.points[:, k], starts) for k in (0, 1)], 1)
    hi = np.stack([np.maximum.reduceat(lanes.points[:, k], starts) for k in (0, 1)], 1)
    return np.concatenate([lo, hi], 1)


def read_vector_map(path: str | Path) -> Lanes:
    """Parse ``pruned_argoverse_*_vector_map.xml`` (streamed): centrelines and attributes
    (turn direction LEFT 1 / RIGHT -1 / NONE 0, has_traffic_control, is_intersection) per lane."""
    nodes: dict[int, tuple[float, float]] = {}
    points, offsets, attrs, ids = [], [0], [], []
    for _, elem in ET.iterparse(str(path), events=("end",)):
        if elem.tag == "node":
            nodes[int(elem.get("id"))] = (float(elem.get("x")), float(elem.get("y")))
            elem.clear()
        elif elem.tag == "way":
            tags = {t.get("k"): t.get("v") for t in elem.iter("tag")}
            refs = [int(nd.get("ref")) for nd in elem.iter("nd")]
            if len(refs) >= 2:
                points.extend(nodes[r] for r in refs)
                offsets.append(offsets[-1] + len(refs))
                attrs.append((TURN.get(tags.get("turn_direction", "NONE"), 0.0),
                              float(tags.get("has_traffic_control") == "True"),
                              float(tags.get("is_intersection") == "True")))
                ids.append(int(elem.get("lane_id")))
            elem.clear()
    return Lanes(np.asarray(points, dtype=np.float64).reshape(-1, 2), np.asarray(offsets, dtype=np.int64),
                 np.asarray(attrs, dtype=np.float32).reshape(-1, 3), np.asarray(ids, dtype=np.int64))


class MapStore:
    """City maps loaded on first use (one per process; each DataLoader worker has its own)."""

    def __init__(self, map_dir: str | Path | None):
        self.map_dir, self._maps = map_dir, {}

    def get(self, city: str) -> CityMap:
        if city not in CITY_IDS:
            raise BadScenario("unknown_city", city)
        if city not in self._maps:
            if self.map_dir is None:
                raise BadScenario("missing_map", f"no --map-dir for {city}")
            try:
                self._maps[city] = CityMap.load(self.map_dir, city)
            except FileNotFoundError as e:
                raise BadScenario("missing_map", str(e)) from None
        return self._maps[city]


def read_sequence(path: str | Path, maps: MapStore, lane_radius: float) -> Scenario:
    """One AV1 CSV as a ``Scenario`` (the AGENT first, tracks on the AGENT's timestamps); ``BadScenario`` when
    it cannot be used."""
    try:
        table = pacsv.read_csv(str(path), convert_options=pacsv.ConvertOptions(column_types=CSV_TYPES))
    except (pa.ArrowInvalid, OSError) as e:
        raise BadScenario("unreadable", f"{path}: {e}") from None
    if any(c not in table.column_names for c in CSV_TYPES):
        raise BadScenario("unreadable", f"{path}: missing columns")
    encoded = table.column("TRACK_ID").combine_chunks().dictionary_encode()
    ids = np.asarray(encoded.dictionary.to_pylist(), dtype=object).astype(str)  # in order of first appearance
    inverse = encoded.indices.to_numpy()
    kind = table.column("OBJECT_TYPE")
    agent_rows = pc.equal(kind, "AGENT").to_numpy(zero_copy_only=False)
    av_rows = pc.equal(kind, "AV").to_numpy(zero_copy_only=False)
    ts = table.column("TIMESTAMP").to_numpy()
    xy = np.stack([table.column("X").to_numpy(), table.column("Y").to_numpy()], 1)
    agent_tracks = np.unique(inverse[agent_rows])
    if len(agent_tracks) != 1:
        raise BadScenario("no_agent" if len(agent_tracks) == 0 else "many_agents", str(path))
    agent_ts = np.sort(ts[agent_rows])
    steps = len(agent_ts)
    if steps not in (OBS_STEPS, OBS_STEPS + FUTURE_STEPS) or len(np.unique(agent_ts)) != steps:
        raise BadScenario("wrong_length", f"{path}: AGENT has {steps} timestamps")
    if not np.isfinite(xy[agent_rows]).all():
        raise BadScenario("nan", str(path))
    cities = pc.unique(table.column("CITY_NAME")).to_pylist()
    city = cities[0] if len(cities) == 1 else ",".join(map(str, cities))
    city_map = maps.get(city)
    agent_index = int(agent_tracks[0])
    order = np.concatenate([[agent_index], np.delete(np.arange(len(ids)), agent_index)])
    slot = np.empty(len(ids), dtype=np.int64)
    slot[order] = np.arange(len(ids))
    step = np.searchsorted(agent_ts, ts)
    on_grid = (step < steps) & (agent_ts[np.minimum(step, steps - 1)] == ts) & np.isfinite(xy).all(1)
    grid = np.full((len(ids), steps, 2), np.nan)
    grid[slot[inverse[on_grid]], step[on_grid]] = xy[on_grid]
    _, first_row = np.unique(inverse, return_index=True)
    types = np.empty(len(ids), dtype=np.int8)
    types[slot] = np.where(agent_rows[first_row], TYPE_CODES["AGENT"],
                           np.where(av_rows[first_row], TYPE_CODES["AV"], TYPE_CODES["OTHERS"]))
    last = grid[0, OBS_STEPS - 1]
    lanes = city_map.lanes_near(float(last[0]), float(last[1]), lane_radius)
    return Scenario(Path(path).stem, city, grid, types, ids[order], OBS_STEPS, lanes,
                    has_future=steps == OBS_STEPS + FUTURE_STEPS)


def list_sequences(root: str | Path) -> list[Path]:
    """The CSVs of a split folder (``<split>/data/*.csv`` or ``<split>/*.csv``), sorted by sequence id."""
    root = Path(root)
    folder = root / "data" if (root / "data").is_dir() else root
    return sorted(folder.glob("*.csv"), key=lambda p: (len(p.stem), p.stem))
