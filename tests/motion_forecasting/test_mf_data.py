"""Readers (AV1 CSV + vector map, AV2 parquet + log map), the vectoriser's frame, skip-and-count, collate."""

from __future__ import annotations

import numpy as np
import pyarrow.csv as pacsv
import pytest
from mf_fixtures import AV2_SCENARIO, LANES, write_av1_csv, write_av1_map

from motion_forecasting.data import av1, av2
from motion_forecasting.data.dataset import ScenarioDataset, SceneReader, SkipCounts, collate, list_split
from motion_forecasting.data.vectorize import VectorConfig, heading, to_local, to_world, vectorize


def test_av1_vector_map_and_bbox_lookup(tmp_path):
    lanes = av1.read_vector_map(write_av1_map(tmp_path / "m"))
    assert lanes.ids.tolist() == list(LANES) and np.diff(lanes.offsets).tolist() == [10] * 4
    np.testing.assert_allclose(lanes.centreline(2)[[0, -1]], [[10, -40], [10, 40]])
    np.testing.assert_array_equal(lanes.attrs[2], [1, 0, 1])  # LEFT, no traffic control, intersection
    np.testing.assert_array_equal(lanes.attrs[1], [0, 1, 0])
    with_table = av1.CityMap.load(tmp_path / "m", "PIT")
    assert with_table.lanes_near(0, 0, 10).ids.tolist() == [1001, 1002, 1003]
    assert with_table.lanes_near(-59, -6.5, 5).ids.tolist() == [1001]  # only the halluc bbox (+2 m) reaches
    write_av1_map(tmp_path / "bare", with_table=False)
    bare = av1.CityMap.load(tmp_path / "bare", "PIT")
    assert bare.lanes_near(-59, -6.5, 5).ids.tolist() == []  # centreline bboxes: no margin
    assert bare.lanes_near(530, 500, 1).ids.tolist() == [1004]


def test_av1_sequence_reader(av1_root):
    path = av1_root / "train" / "data" / "3.csv"
    table = pacsv.read_csv(path)
    scene = av1.read_sequence(path, av1.MapStore(av1_root / "map_files"), 65.0)
    agent = np.asarray(table.column("OBJECT_TYPE").to_pylist()) == "AGENT"
    expected = np.stack([table.column("X").to_numpy()[agent], table.column("Y").to_numpy()[agent]], 1)
    np.testing.assert_allclose(scene.xy[0], expected)
    assert scene.xy.shape == (5, 50, 2) and scene.types[0] == 0 and sorted(scene.types.tolist()) == [0, 1, 2, 2, 2]
    assert scene.num_obs == 20 and scene.has_future and scene.city == "PIT" and scene.scenario_id == "3"
    partial = [i for i in range(5) if np.isnan(scene.xy[i, :, 0]).any()]
    assert len(partial) == 1 and np.isnan(scene.xy[partial[0], :5]).all()  # the partially observed track
    test_scene = av1.read_sequence(av1_root / "test_obs" / "data" / "200.csv", av1.MapStore(av1_root / "map_files"),
                                   65.0)
    assert test_scene.xy.shape[1] == 20 and not test_scene.has_future


def test_av2_reader_on_the_real_scenario(av2_split):
    scene = av2.read_scenario(AV2_SCENARIO)
    assert scene.scenario_id == "0a1e6f0a-1817-4a98-b02e-db8c9327d151" and scene.city == "austin"
    assert scene.track_ids[0] == "138951" and scene.types[0] == 0 and scene.xy.shape[1] == 110
    assert np.isfinite(scene.xy[0]).all() and scene.num_obs == 50 and scene.has_future
    assert len(scene.lanes) == 71
    assert list_split("av2", av2_split) == sorted(av2_split.glob("*/scenario_*.parquet"))


def test_vectoriser_frame_is_the_targets(av2_split):
    scene = av2.read_scenario(AV2_SCENARIO)
    s = vectorize(scene, VectorConfig())
    np.testing.assert_allclose(s["history"][-1], [0, 0], atol=1e-5)
    assert s["history"][-2][0] < 0 and abs(s["history"][-2][1]) < 1e-3  # moving along +x
    np.testing.assert_allclose(to_world(s["future"].astype(np.float64), s["origin"], float(s["theta"])),
                               scene.xy[0, 50:], atol=1e-3)
    assert s["agent_vec"].shape[1:] == (49, 6) and s["future"].shape == (60, 2) and s["future_mask"].all()
    assert s["lane_vec"].shape[1:] == (9, 7) and s["lane_vec_mask"].any(1).all()
    v = s["agent_vec"][0]
    np.testing.assert_allclose(v[1:, :2], v[:-1, 2:4], atol=1e-5)  # consecutive vectors chain
    dist = np.hypot(*s["agent_pos"].T)
    assert (dist <= 56.0).all() and (np.diff(dist[1:]) >= 0).all()  # target first, then nearest first


def test_heading_and_inverse_transform():
    hist = np.array([[0.0, 0.0], [1.0, 1.0], [1.0, 1.0]])
    assert heading(hist) == pytest.approx(np.pi / 4)  # a stop keeps the last motion's heading
    assert heading(np.zeros((5, 2))) == 0.0
    pts = np.random.default_rng(0).normal(size=(7, 2))
    np.testing.assert_allclose(to_world(to_local(pts, np.array([3.0, -2.0]), 0.7), np.array([3.0, -2.0]), 0.7), pts)


def test_bad_scenes_are_skipped_and_counted(av1_root):
    files = list_split("av1", av1_root / "train")
    skips = SkipCounts()
    ds = ScenarioDataset(files, SceneReader("av1", av1_root / "map_files", VectorConfig()), skips)
    got = [ds[i] for i in range(len(ds))]
    assert sum(g is None for g in got) == 5
    counts = skips.snapshot()
    assert {k: v for k, v in counts.items() if v} == {"no_agent": 1, "wrong_length": 1, "nan": 1, "unknown_city": 1,
                                                      "missing_map": 1}
    [ds[i] for i in range(len(ds))]  # a second epoch counts them again
    assert skips.snapshot()["nan"] == 2
    batch = collate(got)
    assert batch["agent_vec"].shape[0] == 12 and batch["agent_mask"][:, 0].all()
    assert collate([None, None]) is None


def test_missing_map_dir_and_unreadable_csv(tmp_path):
    bad = tmp_path / "data" / "1.csv"
    bad.parent.mkdir(parents=True)
    bad.write_text("TIMESTAMP,TRACK_ID\n1,a\n")
    skips = SkipCounts()
    ds = ScenarioDataset([bad, write_av1_csv(tmp_path / "data" / "2.csv")],
                         SceneReader("av1", tmp_path / "no_maps", VectorConfig()), skips)
    assert ds[0] is None and ds[1] is None
    assert skips.snapshot()["unreadable"] == 1 and skips.snapshot()["missing_map"] == 1
