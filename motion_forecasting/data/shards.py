"""Building the per-split preprocessing cache (no torch here: the worker processes import only numpy/pyarrow):
vectorised scenes in shards of flat ``.npy`` arrays, read memory-mapped.

    python -m motion_forecasting.preprocess --source av1 --data-path val --map-dir map_files --cache-dir cache/val

Each shard (``shard_NNNNN/``, ``shard_size`` consecutive scenes of the sorted file list) is built by one worker
process into a temporary folder and renamed into place when complete, so a killed run resumes at the first
missing shard. Memory: the main process holds the file list; each worker one shard and the city maps. A bad scene
is stored as its skip reason and counted every epoch it is drawn, like the uncached dataset.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from .reader import REASONS, STEPS, SceneReader
from .scenario import BadScenario
from .vectorize import AGENT_FEATURES, LANE_FEATURES, VectorConfig

log = logging.getLogger(__name__)

FORMAT = 1
RAGGED = {"agent": ("agent_vec", "agent_vec_mask", "agent_pos"), "lane": ("lane_vec", "lane_vec_mask")}
FIXED = ("history", "future", "future_mask", "origin", "theta")


_READERS: dict[tuple, SceneReader] = {}


class CacheMismatch(Exception):
    """The cache folder was built from other files or settings."""


def _meta(source: str, files: Sequence[Path], cfg: VectorConfig, shard_size: int) -> dict:
    return {"format": FORMAT, "source": source, "count": len(files), "shard_size": shard_size,
            "vector_config": asdict(cfg), "first": Path(files[0]).name if files else None,
            "last": Path(files[-1]).name if files else None}


def shard_dir(root: Path, k: int) -> Path:
    return root / f"shard_{k:05d}"


def _build_shard(job: tuple) -> tuple[int, dict[str, int]]:
    """Worker: vectorise one shard's scenes and write it atomically; returns (shard, skip counts)."""
    root, k, files, source, map_dir, cfg_dict, obs, fut = job
    key = (source, str(map_dir), tuple(sorted(cfg_dict.items())))
    if key not in _READERS:  # one reader (and its city maps) per worker process
        _READERS.clear()
        _READERS[key] = SceneReader(source, map_dir, VectorConfig(**cfg_dict))
    reader = _READERS[key]
    status = np.zeros(len(files), dtype=np.int8)
    parts: dict[str, list[np.ndarray]] = {name: [] for names in RAGGED.values() for name in names}
    n = len(files)
    fixed = {"history": np.zeros((n, obs, 2), np.float32), "future": np.zeros((n, fut, 2), np.float32),
             "future_mask": np.zeros((len(files), fut), bool), "origin": np.zeros((len(files), 2)),
             "theta": np.zeros(len(files))}
    counts = {"agent": np.zeros(len(files), np.int64), "lane": np.zeros(len(files), np.int64)}
    skipped: dict[str, int] = {}
    for i, path in enumerate(files):
        try:
            s = reader.sample(path)
            if s["future"].shape[0] not in (0, fut):
                raise BadScenario("wrong_length", f"{path}: future of {s['future'].shape[0]} steps")
        except BadScenario as e:
            status[i] = 1 + REASONS.index(e.reason if e.reason in REASONS else "unreadable")
            skipped[e.reason] = skipped.get(e.reason, 0) + 1
            continue
        for group, names in RAGGED.items():
            counts[group][i] = len(s[names[0]])
            for name in names:
                parts[name].append(s[name])
        for name in FIXED:
            if name in ("future", "future_mask") and s[name].shape[0] == 0:
                continue
            fixed[name][i] = s[name]
    tmp = Path(root) / f".tmp_shard_{k:05d}_{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    np.save(tmp / "status.npy", status)
    shapes = {"agent_vec": (obs - 1, AGENT_FEATURES), "agent_vec_mask": (obs - 1,), "agent_pos": (2,),
              "lane_vec": (cfg_dict["lane_points"] - 1, LANE_FEATURES), "lane_vec_mask": (cfg_dict["lane_points"] - 1,)}
    dtypes = {"agent_vec": np.float32, "agent_vec_mask": bool, "agent_pos": np.float32, "lane_vec": np.float32,
              "lane_vec_mask": bool}
    for group, names in RAGGED.items():
        np.save(tmp / f"{group}_offsets.npy", np.concatenate([[0], np.cumsum(counts[group])]))
        for name in names:
            arr = np.concatenate(parts[name]) if parts[name] else np.zeros((0, *shapes[name]), dtypes[name])
            np.save(tmp / f"{name}.npy", arr)
    for name, arr in fixed.items():
        np.save(tmp / f"{name}.npy", arr)
    os.replace(tmp, shard_dir(Path(root), k))
    return k, skipped


def build_cache(root: str | Path, source: str, files: Sequence[Path], map_dir: str | Path | None,
                cfg: VectorConfig, workers: int = 1, shard_size: int = 512, progress: bool = True) -> dict[str, int]:
    """Build the missing shards of ``root`` (resumable); returns the skip counts of the shards built now."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    meta = _meta(source, files, cfg, shard_size)
    meta_path = root / "meta.json"
    if meta_path.is_file():
        old = json.loads(meta_path.read_text())
        if old != meta:
            raise CacheMismatch(f"{root} was built from other files or settings ({old}); delete it or use another "
                                f"--cache-dir")
    else:
        meta_path.write_text(json.dumps(meta, indent=1) + "\n")
    obs, fut = STEPS[source]
    fut = cfg.future_steps or fut
    n_shards = -(-len(files) // shard_size)
    todo = [k for k in range(n_shards) if not shard_dir(root, k).is_dir()]
    for stale in root.glob(".tmp_shard_*"):
        shutil.rmtree(stale, ignore_errors=True)
    jobs = [(str(root), k, [str(f) for f in files[k * shard_size:(k + 1) * shard_size]], source,
             None if map_dir is None else str(map_dir), asdict(cfg), obs, fut) for k in todo]
    skipped: dict[str, int] = {}
    if not jobs:
        return skipped
    bar = _progress(len(files), len(todo), n_shards, shard_size, progress)
    if workers <= 1:
        results = map(_build_shard, jobs)
        pool = None
    else:
        pool = get_context("spawn").Pool(workers, maxtasksperchild=64)
        results = pool.imap_unordered(_build_shard, jobs)
    try:
        for k, counts in results:
            for r, c in counts.items():
                skipped[r] = skipped.get(r, 0) + c
            bar.update(min(shard_size, len(files) - k * shard_size))
    finally:
        bar.close()
        if pool is not None:
            pool.close()
            pool.join()
    return skipped


def _progress(total: int, todo: int, n_shards: int, shard_size: int, enabled: bool):
    from tqdm import tqdm

    done = (n_shards - todo) * shard_size
    return tqdm(total=total, initial=min(done, total), unit="scene", desc="preprocess", disable=not enabled,
                mininterval=2.0)
