"""The preprocessing cache: same samples as on-the-fly reading, resumable shard by shard, several workers, bad
scenes stored and counted, a cache of other settings refused."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from motion_forecasting import preprocess
from motion_forecasting.data.cache import CachedDataset, CacheMismatch, build_cache
from motion_forecasting.data.dataset import ScenarioDataset, SceneReader, SkipCounts, list_split
from motion_forecasting.data.vectorize import VectorConfig


def test_cache_matches_raw_reading_and_resumes(tmp_path, av1_root):
    files = list_split("av1", av1_root / "train")
    cfg = VectorConfig()
    skipped = build_cache(tmp_path / "c", "av1", files, av1_root / "map_files", cfg, workers=1, shard_size=5,
                          progress=False)
    assert skipped == {"no_agent": 1, "wrong_length": 1, "nan": 1, "unknown_city": 1, "missing_map": 1}
    raw = ScenarioDataset(files, SceneReader("av1", av1_root / "map_files", cfg), SkipCounts())
    cache_skips = SkipCounts()
    cached = CachedDataset(tmp_path / "c", cache_skips)
    assert len(cached) == len(raw) == 17
    for i in range(len(raw)):
        a, b = raw[i], cached[i]
        assert (a is None) == (b is None)
        if a is not None:
            assert set(a) == set(b)
            for key in a:
                np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert cache_skips.snapshot()["missing_map"] == 1
    assert isinstance(cached[0]["agent_vec"], np.ndarray) and cached[0]["agent_vec"].flags.writeable
    # a killed run: one shard missing and a half-written temporary folder; the rebuild redoes only that shard
    shutil.rmtree(tmp_path / "c" / "shard_00001")
    (tmp_path / "c" / ".tmp_shard_00001_123").mkdir()
    kept = (tmp_path / "c" / "shard_00000" / "status.npy").stat().st_mtime_ns
    again = build_cache(tmp_path / "c", "av1", files, av1_root / "map_files", cfg, workers=1, shard_size=5,
                        progress=False)
    assert sum(again.values()) == sum(1 for i in range(5, 10) if raw[i] is None)
    assert (tmp_path / "c" / "shard_00000" / "status.npy").stat().st_mtime_ns == kept
    assert not list((tmp_path / "c").glob(".tmp_*"))
    with pytest.raises(CacheMismatch):
        build_cache(tmp_path / "c", "av1", files, av1_root / "map_files", VectorConfig(max_lanes=3), shard_size=5)


def test_preprocess_cli_with_worker_processes(tmp_path, av1_root, capsys):
    out = preprocess.main(["--dataset", "av1", "--split-path", str(av1_root / "train"), "--map-dir",
                           str(av1_root / "map_files"), "--cache-dir", str(tmp_path / "c"), "--workers", "2",
                           "--shard-size", "4", "--no-progress"])
    assert out["scenes"] == 17 and sum(out["skipped"].values()) == 5
    assert json.loads(capsys.readouterr().out.strip())["peak_rss_main_mib"] > 0
    assert len(list((tmp_path / "c").glob("shard_*"))) == 5
    assert CachedDataset(tmp_path / "c", SkipCounts())[0] is not None
