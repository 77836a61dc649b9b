"""Raw ScanNet v2 scans -> ScanQA's ``scannet_data/`` (``batch_load_scannet_data.py`` + ``load_scannet_data.py``).

    python -m vqa_3d.prepare --scans data/scannet/scans --labels-tsv scannetv2-labels.combined.tsv \\
        --out data/scannet/scannet_data [--scenes scene0000_00 ...] [--max-points 50000] [--seed 0]

Per scene (``scans/<scene>/``): ``_vh_clean_2.ply`` (vertices x y z red green blue [alpha], faces) -> xyz, rgb and
per-vertex normals (upstream's ``compute_normal``, including its numpy ``+=`` that keeps one face per vertex and
statement), ``.aggregation.json`` + ``_vh_clean_2.0.010000.segs.json`` -> NYU40 semantic and 1-based instance ids
(placeholders when the scene has no aggregation, as the test scans), ``<scene>.txt`` -> the axis alignment. Boxes
keep NYU40 ids 3-40 except 22; scenes with more than ``--max-points`` vertices are subsampled (seeded). Writes
``<scene>_{vert,aligned_vert,sem_label,ins_label,bbox,aligned_bbox}.npy`` and copies ``<scene>.txt`` beside them.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
from pathlib import Path

import numpy as np

from common.engine.errors import DataPathError

from .scenes import read_axis_align

OBJ_CLASS_IDS = np.array([i for i in range(3, 41) if i != 22])


def read_label_mapping(path: Path) -> dict[str, int]:
    """``raw_category`` -> ``nyu40id`` of ScanNet's ``scannetv2-labels.combined.tsv``."""
    try:
        with open(path, newline="") as f:
            return {row["raw_category"]: int(row["nyu40id"]) for row in csv.DictReader(f, delimiter="\t")}
    except FileNotFoundError:
        raise DataPathError(f"label map not found: {path}") from None
    except (KeyError, ValueError) as e:
        raise DataPathError(f"{path}: not ScanNet's labels.combined.tsv ({e!r})") from None


def normalize_v3(arr: np.ndarray) -> np.ndarray:
    lens = np.sqrt(arr[:, 0] ** 2 + arr[:, 1] ** 2 + arr[:, 2] ** 2)
    arr /= (lens + 1e-8)[:, None]
    return arr


def compute_normal(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Upstream's vertex normals: face normals written (not summed) to their corners by numpy's buffered ``+=``."""
    normals = np.zeros(vertices.shape, dtype=vertices.dtype)
    tris = vertices[faces]
    n = normalize_v3(np.cross(tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0]))
    normals[faces[:, 0]] += n
    normals[faces[:, 1]] += n
    normals[faces[:, 2]] += n
    return normalize_v3(normals)


def read_mesh(path: Path) -> np.ndarray:
    """(N, 9) float32: xyz, rgb (0-255), normals."""
    from plyfile import PlyData

    try:
        ply = PlyData.read(str(path))
        v = ply["vertex"].data
        faces = np.stack([np.asarray(f, dtype=np.int64) for f in ply["face"].data["vertex_indices"]])
    except FileNotFoundError:
        raise DataPathError(f"mesh not found: {path}") from None
    except Exception as e:
        raise DataPathError(f"{path}: not a readable ScanNet mesh ({type(e).__name__}: {e})") from None
    out = np.zeros((len(v), 9), dtype=np.float32)
    for i, name in enumerate(("x", "y", "z", "red", "green", "blue")):
        out[:, i] = v[name]
    xyz = np.stack([v["x"], v["y"], v["z"]], 1).astype(np.float32)  # upstream: the ply's float32
    out[:, 6:] = compute_normal(xyz, faces)
    return out


def export_scene(scan_dir: Path, label_map: dict[str, int]):
    """``load_scannet_data.export``: vertices, aligned vertices, semantic ids, instance ids, boxes, aligned boxes."""
    name = scan_dir.name
    mesh = read_mesh(scan_dir / f"{name}_vh_clean_2.ply")
    align = read_axis_align(scan_dir / f"{name}.txt")
    aligned = mesh.copy()
    aligned[:, 0:3] = (np.concatenate([mesh[:, :3], np.ones((len(mesh), 1))], 1) @ align.T)[:, :3]
    agg_file, seg_file = scan_dir / f"{name}.aggregation.json", scan_dir / f"{name}_vh_clean_2.0.010000.segs.json"
    if not agg_file.is_file():
        n = len(mesh)
        return mesh, aligned, np.zeros(n, np.uint32), np.zeros(n, np.uint32), np.zeros((1, 8)), np.zeros((1, 8))
    groups = json.loads(agg_file.read_text())["segGroups"]
    seg_indices = json.loads(seg_file.read_text())["segIndices"]
    if len(seg_indices) != len(mesh):
        raise DataPathError(f"{seg_file}: {len(seg_indices)} segment indices for {len(mesh)} vertices")
    seg_to_verts: dict[int, list[int]] = {}
    for i, seg in enumerate(seg_indices):
        seg_to_verts.setdefault(seg, []).append(i)
    object_to_segs, label_to_segs = {}, {}
    for g in groups:
        object_to_segs[g["objectId"] + 1] = g["segments"]
        label_to_segs.setdefault(g["label"], []).extend(g["segments"])
    labels = np.zeros(len(mesh), np.uint32)
    for label, segs in label_to_segs.items():
        if label not in label_map:
            raise DataPathError(f"{agg_file}: label {label!r} is not in the label map")
        for seg in segs:
            labels[seg_to_verts[seg]] = label_map[label]
    instances = np.zeros(len(mesh), np.uint32)
    object_label = {}
    for obj, segs in object_to_segs.items():
        for seg in segs:
            verts = seg_to_verts[seg]
            instances[verts] = obj
            object_label.setdefault(obj, labels[verts][0])
    n_inst = len(object_to_segs)
    boxes, aligned_boxes = np.zeros((n_inst, 8)), np.zeros((n_inst, 8))
    for obj in object_to_segs:
        for points, out in ((mesh, boxes), (aligned, aligned_boxes)):
            pc = points[instances == obj, 0:3]
            if len(pc) == 0:
                continue
            lo, hi = pc.min(0), pc.max(0)
            out[obj - 1] = [*(lo + hi) / 2, *(hi - lo), object_label[obj], obj - 1]
    return mesh, aligned, labels, instances, boxes, aligned_boxes


def export_one(scan_dir: Path, out_dir: Path, label_map: dict[str, int], max_points: int,
               rng: np.random.Generator) -> int:
    """Export one scan as ``batch_load_scannet_data.export_one_scan``; returns its vertex count."""
    mesh, aligned, sem, ins, boxes, aligned_boxes = export_scene(scan_dir, label_map)
    if boxes.shape[0] > 1:
        keep = np.isin(boxes[:, -2], OBJ_CLASS_IDS)
        boxes, aligned_boxes = boxes[keep], aligned_boxes[keep]
    if len(mesh) > max_points:
        choices = rng.choice(len(mesh), max_points, replace=False)
        mesh, aligned, sem, ins = mesh[choices], aligned[choices], sem[choices], ins[choices]
    prefix = out_dir / scan_dir.name
    for suffix, array in (("_vert", mesh), ("_aligned_vert", aligned), ("_sem_label", sem), ("_ins_label", ins),
                          ("_bbox", boxes), ("_aligned_bbox", aligned_boxes)):
        np.save(f"{prefix}{suffix}.npy", array)
    meta = scan_dir / f"{scan_dir.name}.txt"
    if meta.is_file():
        shutil.copyfile(meta, out_dir / meta.name)
    return len(mesh)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scans", required=True, help="ScanNet scans/ folder")
    parser.add_argument("--labels-tsv", required=True, help="scannetv2-labels.combined.tsv")
    parser.add_argument("--out", required=True, help="output scannet_data/ folder")
    parser.add_argument("--scenes", nargs="*", default=None, help="scene ids (default: every folder in --scans)")
    parser.add_argument("--max-points", type=int, default=50000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        scans = Path(args.scans)
        if not scans.is_dir():
            raise DataPathError(f"--scans {scans}: no such directory")
        label_map = read_label_mapping(Path(args.labels_tsv))
        names = args.scenes or sorted(p.name for p in scans.iterdir() if p.is_dir())
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(args.seed)
        for name in names:
            n = export_one(scans / name, out, label_map, args.max_points, rng)
            print(f"{name}: {n} vertices", flush=True)
    except DataPathError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(DataPathError.exit_code)


if __name__ == "__main__":
    main()
