"""``python -m vqa_3d.prepare`` on raw-ScanNet-format scans written by the real writers (plyfile, json, csv)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

plyfile = pytest.importorskip("plyfile", reason="plyfile (the [scene3d] extra) reads ScanNet meshes")

from vqa_3d.prepare import compute_normal, main  # noqa: E402
from vqa_3d.scenes import load_scene  # noqa: E402

ALIGN = np.array([[0.0, -1, 0, 2.0], [1, 0, 0, -1.0], [0, 0, 1, 0.1], [0, 0, 0, 1]])
LABELS = [("chair", 5), ("table", 7), ("wall", 1), ("office chair", 5)]


def write_scan(scans: Path, name: str, seed: int, aggregation: bool = True) -> dict:
    rng = np.random.default_rng(seed)
    d = scans / name
    d.mkdir(parents=True)
    n = 60
    xyz = rng.uniform(0, 3, (n, 3)).astype(np.float32)
    rgb = rng.integers(0, 256, (n, 3)).astype(np.uint8)
    faces = np.stack([rng.choice(n, 3, replace=False) for _ in range(80)])
    vertex = np.array([(*p, *c, 255) for p, c in zip(xyz, rgb)],
                      dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1"),
                             ("alpha", "u1")])
    face = np.array([(f.tolist(),) for f in faces], dtype=[("vertex_indices", "i4", (3,))])
    plyfile.PlyData([plyfile.PlyElement.describe(vertex, "vertex"), plyfile.PlyElement.describe(face, "face")],
                    text=False).write(str(d / f"{name}_vh_clean_2.ply"))
    seg = np.repeat(np.arange(6), 10)  # 6 segments of 10 vertices
    (d / f"{name}_vh_clean_2.0.010000.segs.json").write_text(json.dumps({"sceneId": name, "segIndices":
                                                                          seg.tolist()}))
    groups = [{"id": 0, "objectId": 0, "segments": [0, 1], "label": "chair"},
              {"id": 1, "objectId": 1, "segments": [2], "label": "table"},
              {"id": 2, "objectId": 2, "segments": [3, 4], "label": "wall"},
              {"id": 3, "objectId": 3, "segments": [5], "label": "office chair"}]
    if aggregation:
        (d / f"{name}.aggregation.json").write_text(json.dumps({"sceneId": name, "segGroups": groups}))
    (d / f"{name}.txt").write_text("colorHeight = 968\naxisAlignment = " + " ".join(map(str, ALIGN.reshape(-1)))
                                   + "\nsceneType = Office\n")
    return {"xyz": xyz, "rgb": rgb, "faces": faces, "seg": seg}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("scannet")
    scans = root / "scans"
    raw = {"scene0000_00": write_scan(scans, "scene0000_00", 0),
           "scene0707_00": write_scan(scans, "scene0707_00", 1, aggregation=False)}
    tsv = root / "scannetv2-labels.combined.tsv"
    with open(tsv, "w", newline="") as f:
        w = csv.writer(f, delimiter="\t")
        w.writerow(["id", "raw_category", "category", "count", "nyu40id", "nyu40class"])
        for i, (raw_name, nyu) in enumerate(LABELS):
            w.writerow([i + 1, raw_name, raw_name, 10, nyu, raw_name])
    main(["--scans", str(scans), "--labels-tsv", str(tsv), "--out", str(root / "scannet_data"), "--max-points", "50"])
    return root, raw


def test_vertices_labels_and_boxes_follow_load_scannet_data(prepared):
    root, raw = prepared
    out, r = root / "scannet_data", raw["scene0000_00"]
    vert = np.load(out / "scene0000_00_vert.npy")
    aligned = np.load(out / "scene0000_00_aligned_vert.npy")
    sem, ins = np.load(out / "scene0000_00_sem_label.npy"), np.load(out / "scene0000_00_ins_label.npy")
    assert vert.shape == (50, 9) and vert.dtype == np.float32  # 60 vertices subsampled to --max-points
    rows = [int(np.flatnonzero((r["xyz"] == v[:3]).all(1))[0]) for v in vert]  # which raw vertex each one is
    np.testing.assert_array_equal(vert[:, 3:6], r["rgb"][rows])
    np.testing.assert_allclose(aligned[:, :3], (np.c_[vert[:, :3], np.ones(50)] @ ALIGN.T)[:, :3], atol=1e-5)
    seg = r["seg"][rows]
    np.testing.assert_array_equal(ins, np.select([seg < 2, seg == 2, seg < 5], [1, 2, 3], 4))
    np.testing.assert_array_equal(sem, np.select([seg < 2, seg == 2, seg < 5], [5, 7, 1], 5))
    boxes = np.load(out / "scene0000_00_aligned_bbox.npy")
    assert boxes[:, 6:].tolist() == [[5, 0], [7, 1], [5, 3]]  # the wall's box is dropped
    full = np.c_[r["xyz"], np.ones(60)] @ ALIGN.T
    table = full[r["seg"] == 2, :3]
    np.testing.assert_allclose(boxes[1, :6], [*(table.min(0) + table.max(0)) / 2, *np.ptp(table, 0)], atol=1e-5)
    assert (out / "scene0000_00.txt").is_file()
    assert load_scene(out, "scene0000_00").axis_align.tolist() == ALIGN.tolist()


def test_a_scan_without_aggregation_gets_placeholders(prepared):
    out = prepared[0] / "scannet_data"
    assert np.load(out / "scene0707_00_sem_label.npy").max() == 0
    assert np.load(out / "scene0707_00_aligned_bbox.npy").tolist() == [[0.0] * 8]


def test_normals_are_upstreams_last_face_wins():
    xyz = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float32)
    faces = np.array([[0, 1, 2], [0, 3, 1]])
    normals = compute_normal(xyz, faces)
    np.testing.assert_allclose(normals[0], [0, 1, 0], atol=1e-6)  # the second face's normal, not the mean
    np.testing.assert_allclose(normals[2], [0, 0, 1], atol=1e-6)


def test_missing_scans_is_one_line_exit_4(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["--scans", str(tmp_path / "x"), "--labels-tsv", "t.tsv", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert e.value.code == 4 and err.strip().count("\n") == 0 and "no such directory" in err
