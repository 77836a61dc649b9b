"""Measure the preprocessing cache build on a synthetic split in the real AV1 formats: wall time and peak RSS of
the whole process tree (main + workers, summed, sampled from /proc every 0.2 s).

    python -m motion_forecasting.measure_preprocess --root /tmp/av1_synth --scenes 39472 --workers 2

Writes (once) ``ROOT/map_files`` (two city vector maps of ``--lanes`` 10-node lanes each, with bbox tables) and
``ROOT/val/data/<id>.csv`` (a target plus ``--tracks`` other tracks, some partially observed, 50 steps), then runs
``motion_forecasting.preprocess`` into ``ROOT/cache`` and prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from .data.av1 import CITY_IDS


def write_city_map(map_dir: Path, city: str, lanes: int, seed: int) -> None:
    """A grid city: ``lanes`` straight 10-node lanes on a 30 m grid (XML written by ElementTree) + bbox table."""
    import xml.etree.ElementTree as ET

    rng = np.random.default_rng(seed)
    side = int(np.ceil(np.sqrt(lanes / 2)))
    root = ET.Element("ArgoverseVectorMap")
    boxes, index, node = [], {}, 0
    ways = []
    for k in range(lanes):
        row, col, vertical = (k // 2) // side, (k // 2) % side, k % 2
        x0, y0 = col * 30.0, row * 30.0
        end = (x0, y0 + 30.0) if vertical else (x0 + 30.0, y0)
        refs = []
        for x, y in np.linspace((x0, y0), end, 10):
            ET.SubElement(root, "node", id=str(node), x=f"{x:.2f}", y=f"{y:.2f}")
            refs.append(node)
            node += 1
        lane_id = 9_000_000 + k
        ways.append((lane_id, refs, rng.choice(["NONE", "LEFT", "RIGHT"], p=[0.8, 0.1, 0.1])))
        boxes.append([min(x0, end[0]) - 2, min(y0, end[1]) - 2, max(x0, end[0]) + 2, max(y0, end[1]) + 2])
        index[str(k)] = lane_id
    for lane_id, refs, turn in ways:
        way = ET.SubElement(root, "way", lane_id=str(lane_id))
        for key, v in (("has_traffic_control", "False"), ("turn_direction", str(turn)), ("is_intersection", "False"),
                       ("l_neighbor_id", "None"), ("r_neighbor_id", "None")):
            ET.SubElement(way, "tag", k=key, v=v)
        for r in refs:
            ET.SubElement(way, "nd", ref=str(r))
    cid = CITY_IDS[city]
    ET.ElementTree(root).write(map_dir / f"pruned_argoverse_{city}_{cid}_vector_map.xml")
    np.save(map_dir / f"{city}_{cid}_halluc_bbox_table.npy", np.asarray(boxes))
    (map_dir / f"{city}_{cid}_tableidx_to_laneid_map.json").write_text(json.dumps(index))


def write_sequences(folder: Path, n: int, tracks: int, extent: float, seed: int) -> None:
    """``n`` CSVs in the official layout (rows by timestamp; TRACK_IDs as UUID strings)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    header = "TIMESTAMP,TRACK_ID,OBJECT_TYPE,X,Y,CITY_NAME\n"
    steps = np.arange(50)
    for i in range(1, n + 1):
        city = "PIT" if i % 2 else "MIA"
        centre = rng.uniform(100, extent - 100, size=2)
        n_tracks = 1 + rng.integers(tracks // 2, tracks + tracks // 2 + 1)
        lines = []
        for t in range(n_tracks):
            kind = "AGENT" if t == 0 else "AV" if t == 1 else "OTHERS"
            start = centre + rng.normal(0, 20, 2) * (t > 0)
            vel = rng.normal(0, 5, 2)
            first, last = (0, 50) if t < 2 or rng.random() < 0.6 else sorted(rng.integers(0, 50, 2) + [0, 1])
            tid = f"00000000-0000-0000-0000-{rng.integers(1 << 47):012x}"
            for s in steps[first:last]:
                x, y = start + vel * 0.1 * s
                lines.append((s, f"{315969629.0 + i + 0.1 * s:.6f},{tid},{kind},{x:.6f},{y:.6f},{city}\n"))
        lines.sort(key=lambda r: r[0])
        (folder / f"{i}.csv").write_text(header + "".join(line for _, line in lines))


def proc_tree_rss(pid: int) -> tuple[int, int, int]:
    """(sum, main, largest child) resident KiB of ``pid`` and its descendants."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        p, ppid = int(fields["Pid"]), int(fields["PPid"])
        children.setdefault(ppid, []).append(p)
        rss[p] = int(fields.get("VmRSS", "0 kB").split()[0])
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(children.get(p, []))
    kids = [rss.get(p, 0) for p in tree[1:]]
    return sum(rss.get(p, 0) for p in tree), rss.get(pid, 0), max(kids, default=0)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", required=True)
    ap.add_argument("--scenes", type=int, default=39472, help="AV1 v1.1 val has 39,472 sequences")
    ap.add_argument("--tracks", type=int, default=10, help="mean other tracks per sequence")
    ap.add_argument("--lanes", type=int, default=12000, help="lanes per city map")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    root = Path(args.root)
    data = root / "val" / "data"
    t0 = time.perf_counter()
    if not (root / "map_files").is_dir():
        (root / "map_files").mkdir(parents=True)
        for k, city in enumerate(CITY_IDS):
            write_city_map(root / "map_files", city, args.lanes, k)
    have = len(list(data.glob("*.csv"))) if data.is_dir() else 0
    if have != args.scenes:
        write_sequences(data, args.scenes, args.tracks, 30.0 * np.sqrt(args.lanes / 2), 0)
    generated = time.perf_counter() - t0
    cmd = [sys.executable, "-m", "motion_forecasting.preprocess", "--dataset", "av1", "--split-path",
           str(root / "val"), "--map-dir", str(root / "map_files"), "--cache-dir", str(root / "cache"),
           "--workers", str(args.workers), "--no-progress"]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    peak = (0, 0, 0)
    while proc.poll() is None:
        peak = tuple(max(a, b) for a, b in zip(peak, proc_tree_rss(proc.pid)))
        time.sleep(0.2)
    report = json.loads(proc.stdout.read().strip().splitlines()[-1])
    size = sum(f.stat().st_size for f in (root / "cache").rglob("*.npy"))
    out = {"scenes": args.scenes, "workers": args.workers, "generate_s": round(generated, 1),
           "preprocess_s": round(time.perf_counter() - start, 1), "peak_tree_rss_mib": round(peak[0] / 1024, 1),
           "peak_main_rss_mib": round(peak[1] / 1024, 1), "peak_worker_rss_mib": round(peak[2] / 1024, 1),
           "cache_gib": round(size / 2**30, 2), "skipped": report["skipped"],
           "csv_gib": round(sum(f.stat().st_size for f in data.glob("*.csv")) / 2**30, 2)}
    print(json.dumps(out), flush=True)
    return out


if __name__ == "__main__":
    main()
