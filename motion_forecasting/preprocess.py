"""Build the memory-mapped cache of one split ahead of training (several worker processes, resumable after a kill;
``motion_forecasting.train --cache-dir ROOT`` reads ``ROOT/train`` and ``ROOT/val``).

    python -m motion_forecasting.preprocess --dataset av1 --split-path av1/val --map-dir av1/map_files \\
        --cache-dir cache/av1/val --workers 8

Prints one JSON line: scenes, skipped scenes by reason (of the shards built now), seconds, peak RSS (MiB) of this
process and of the largest worker.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from collections.abc import Sequence

from .data.reader import SOURCES, list_split
from .data.shards import CacheMismatch, build_cache
from .data.vectorize import VectorConfig


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="av1", choices=SOURCES)
    p.add_argument("--split-path", required=True)
    p.add_argument("--map-dir", default=None)
    p.add_argument("--cache-dir", required=True, help="this split's cache folder")
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--shard-size", type=int, default=512)
    p.add_argument("--agent-radius", type=float, default=56.0)
    p.add_argument("--lane-radius", type=float, default=65.0)
    p.add_argument("--max-agents", type=int, default=64)
    p.add_argument("--max-lanes", type=int, default=160)
    p.add_argument("--lane-points", type=int, default=10)
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> dict:
    a = build_parser().parse_args(argv)
    files = list_split(a.dataset, a.split_path)
    if not files:
        print(f"error: {a.split_path}: no scenes found (an empty split)", file=sys.stderr)
        sys.exit(4)
    cfg = VectorConfig(a.agent_radius, a.lane_radius, a.max_agents, a.max_lanes, a.lane_points)
    start = time.perf_counter()
    try:
        skipped = build_cache(a.cache_dir, a.dataset, files, a.map_dir, cfg, a.workers, a.shard_size,
                              progress=not a.no_progress)
    except CacheMismatch as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(4)
    out = {"scenes": len(files), "skipped": skipped, "seconds": round(time.perf_counter() - start, 1),
           "peak_rss_main_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "peak_rss_worker_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}
    print(json.dumps(out), flush=True)
    return out


if __name__ == "__main__":
    main()
