"""ScanNet v2 scenes as ScanQA preprocesses them, and the per-question point cloud, targets and situation.

On disk (``scannet_data/``, written by ScanQA's ``batch_load_scannet_data.py`` or ``python -m vqa_3d.prepare``):
``<scene>_aligned_vert.npy`` (N, 9: axis-aligned xyz, rgb 0-255, normals), ``<scene>_vert.npy`` (the same
vertices before alignment), ``<scene>_ins_label.npy`` / ``_sem_label.npy`` (N,) (instance id, NYU40 id),
``<scene>_aligned_bbox.npy`` (K, 8: centre, size, NYU40 id, instance id), and the scan's meta file
``<scene>.txt`` (``axisAlignment = m00 ... m33``; identity when absent) in ``scans/<scene>/`` or beside the npy.

Per question (``lib/sepdataset.py``): colour ``(rgb - MEAN_COLOR_RGB) / 256``, height above the 0.99th percentile
of z, ``num_points`` sampled at random (with replacement only when the scene has fewer); the situation position
is offset by the centre of the unaligned vertices' bounding box, then axis-aligned, and its quaternion (x, y, z, w)
rotated by the alignment; training augmentation (two flips, +-5 degree rotations about x, y, z, a translation in
[-0.5, 0.5]) moves points, boxes and the situation together; votes are computed after augmentation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from common.engine.errors import DataPathError

from .votenet import MEAN_SIZES, NYU40_TO_CLASS

MEAN_COLOR_RGB = np.array([109.8, 97.2, 83.8])
MAX_NUM_OBJ = 128
SCENE_FILES = ("_aligned_vert.npy", "_vert.npy", "_ins_label.npy", "_sem_label.npy", "_aligned_bbox.npy")


@dataclass
class Scene:
    aligned_vert: np.ndarray  # (N, >= 6) float32, as the npy (upstream computes the inputs in float32)
    bs_center: np.ndarray  # (3,) centre of the unaligned vertices' bounding box
    instance_labels: np.ndarray
    semantic_labels: np.ndarray
    aligned_bbox: np.ndarray  # (K, 8)
    axis_align: np.ndarray  # (4, 4)


def read_axis_align(meta: Path | None) -> np.ndarray:
    """The ``axisAlignment`` matrix of a ScanNet meta ``.txt`` (identity without the line or the file)."""
    if meta is None or not meta.is_file():
        return np.eye(4)
    for line in meta.read_text().splitlines():
        if "axisAlignment" in line:
            values = [float(x) for x in line.split("=", 1)[1].split()]
            if len(values) != 16:
                raise DataPathError(f"{meta}: axisAlignment has {len(values)} values, expected 16")
            return np.array(values).reshape(4, 4)
    return np.eye(4)


def scene_available(data_dir: Path, scene_id: str) -> bool:
    return all((data_dir / f"{scene_id}{suffix}").is_file() for suffix in SCENE_FILES)


def load_scene(data_dir: Path, scene_id: str, scans_dir: Path | None = None) -> Scene:
    """One scene of ``scannet_data/`` (raises ``DataPathError`` on a missing or unreadable file)."""
    arrays = []
    for suffix in SCENE_FILES:
        path = data_dir / f"{scene_id}{suffix}"
        try:
            arrays.append(np.load(path, allow_pickle=False))
        except (OSError, ValueError) as e:
            raise DataPathError(f"{path}: {e}") from None
    aligned, vert, ins, sem, bbox = arrays
    if aligned.ndim != 2 or aligned.shape[1] < 6 or vert.shape[0] != aligned.shape[0]:
        raise DataPathError(f"{data_dir / scene_id}_aligned_vert.npy: expected (N, >= 6) vertices, got {aligned.shape}")
    if len(ins) != len(aligned) or len(sem) != len(aligned):
        raise DataPathError(f"{data_dir / scene_id}: {len(aligned)} vertices but {len(ins)} / {len(sem)} labels")
    bbox = bbox.reshape(-1, 8) if bbox.size else np.zeros((0, 8))
    candidates = [data_dir / f"{scene_id}.txt"]
    if scans_dir is not None:
        candidates.insert(0, scans_dir / scene_id / f"{scene_id}.txt")
    meta = next((p for p in candidates if p.is_file()), None)
    bs_center = (vert[:, :3].max(0) + vert[:, :3].min(0)) / 2 if len(vert) else np.zeros(3)
    return Scene(aligned.astype(np.float32, copy=False), bs_center, ins, sem, bbox, read_axis_align(meta))


def quat_from_matrix(m: np.ndarray) -> np.ndarray:
    """Quaternion (x, y, z, w) of a 3x3 matrix by Markley's method, as scipy < 1.11's ``from_matrix`` computed it
    (what upstream ran): no orthogonalisation, so the improper matrices of the flip augmentation give a
    quaternion too (current scipy refuses them). Equals ``Rotation.from_matrix(m).as_quat()`` for rotations."""
    decision = np.array([m[0, 0], m[1, 1], m[2, 2], np.trace(m)])
    choice = int(decision.argmax())
    quat = np.empty(4)
    if choice != 3:
        i, j, k = choice, (choice + 1) % 3, (choice + 2) % 3
        quat[i] = 1 - decision[3] + 2 * m[i, i]
        quat[j] = m[j, i] + m[i, j]
        quat[k] = m[k, i] + m[i, k]
        quat[3] = m[k, j] - m[j, k]
    else:
        quat[:3] = m[2, 1] - m[1, 2], m[0, 2] - m[2, 0], m[1, 0] - m[0, 1]
        quat[3] = 1 + decision[3]
    return quat / np.linalg.norm(quat)


def quat_to_matrix(quat: np.ndarray) -> np.ndarray:
    return Rotation.from_quat(np.asarray(quat, dtype=np.float64)).as_matrix()


def situation_target(scene: Scene, position, rotation) -> tuple[np.ndarray, np.ndarray]:
    """Situation in the aligned scene frame: position (3,) and quaternion (x, y, z, w) (4,)."""
    coord = np.asarray(position, dtype=np.float64) + scene.bs_center
    coord = (np.append(coord, 1.0) @ scene.axis_align.T)[:3]
    return coord, quat_from_matrix(scene.axis_align[:3, :3] @ quat_to_matrix(rotation))


def rot_x(t: float) -> np.ndarray:
    c, s = np.cos(t), np.sin(t)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def rot_y(t: float) -> np.ndarray:
    c, s = np.cos(t), np.sin(t)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def rot_z(t: float) -> np.ndarray:
    c, s = np.cos(t), np.sin(t)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def rotate_aligned_boxes_along_axis(boxes: np.ndarray, rot: np.ndarray, axis: str) -> np.ndarray:
    """VoteNet's: rotate centres, grow the two sizes in the rotation plane to the rotated box's extent."""
    centers, lengths = boxes[:, 0:3], boxes[:, 3:6]
    new_centers = centers @ rot.T
    a, b = {"x": (1, 2), "y": (0, 2), "z": (0, 1)}[axis]
    d1, d2 = lengths[:, a] / 2.0, lengths[:, b] / 2.0
    new1, new2 = np.zeros((len(d1), 4)), np.zeros((len(d1), 4))
    for i, (s1, s2) in enumerate([(-1, -1), (1, -1), (1, 1), (-1, 1)]):
        corners = np.zeros((len(d1), 3))
        corners[:, 0], corners[:, 1] = s1 * d1, s2 * d2
        corners = corners @ rot.T
        new1[:, i], new2[:, i] = corners[:, 0], corners[:, 1]
    new_lengths = lengths.copy()
    new_lengths[:, a], new_lengths[:, b] = 2.0 * new1.max(1), 2.0 * new2.max(1)
    return np.concatenate([new_centers, new_lengths], axis=1)


def point_cloud_input(scene: Scene, num_points: int, rng: np.random.Generator, use_color: bool = True,
                      use_height: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(num_points, 3 + 3·color + height) input and the chosen vertex indices."""
    pc = scene.aligned_vert[:, 0:6].copy() if use_color else scene.aligned_vert[:, 0:3].copy()
    if use_color:
        pc[:, 3:6] = (pc[:, 3:6] - MEAN_COLOR_RGB) / 256.0
    if use_height:
        floor = np.percentile(pc[:, 2], 0.99)
        pc = np.concatenate([pc, (pc[:, 2] - floor)[:, None]], 1)
    choices = rng.choice(len(pc), num_points, replace=len(pc) < num_points)
    return pc[choices], choices


def augment(pc: np.ndarray, boxes: np.ndarray, coord: np.ndarray, quat: np.ndarray, rng: np.random.Generator):
    """ScanQA's training augmentation, applied to points, boxes and the situation alike (in place for ``pc``)."""
    if rng.random() > 0.5:  # flip along the YZ plane
        pc[:, 0] *= -1
        boxes[:, 0] *= -1
        coord[0] *= -1
        m = quat_to_matrix(quat)
        m[0, 0] *= -1
        m[1, 1] *= -1
        quat = quat_from_matrix(m)
    if rng.random() > 0.5:  # flip along the XZ plane
        pc[:, 1] *= -1
        boxes[:, 1] *= -1
        coord[1] *= -1
        quat = quat_from_matrix(quat_to_matrix(quat)[[1, 0, 2], :][:, [1, 0, 2]])
    for axis, rot_fn in (("x", rot_x), ("y", rot_y), ("z", rot_z)):  # -5 .. +5 degrees each
        rot = rot_fn(rng.random() * np.pi / 18 - np.pi / 36)
        pc[:, 0:3] = pc[:, 0:3] @ rot.T
        boxes = rotate_aligned_boxes_along_axis(boxes, rot, axis)
        coord = (coord.reshape(1, -1) @ rot.T).reshape(-1)
        quat = quat_from_matrix(rot @ quat_to_matrix(quat))
    steps = np.arange(-0.5, 0.501, 0.001)
    factor = np.array([rng.choice(steps) for _ in range(3)])
    pc[:, :3] += factor
    boxes[:, :3] += factor
    return pc, boxes, coord + factor, quat


def detection_targets(scene: Scene, choices: np.ndarray, pc: np.ndarray, boxes: np.ndarray,
                      classes: np.ndarray) -> dict[str, np.ndarray]:
    """VoteNet targets: padded boxes (128), their classes and size residuals, per-point votes (3 identical)."""
    n = len(boxes)
    ins, sem = scene.instance_labels[choices], scene.semantic_labels[choices]
    votes = np.zeros((len(pc), 3))
    vote_mask = np.zeros(len(pc))
    for instance in np.unique(ins):
        ind = np.where(ins == instance)[0]
        if int(sem[ind[0]]) in NYU40_TO_CLASS:
            x = pc[ind, :3]
            votes[ind] = 0.5 * (x.min(0) + x.max(0)) - x
            vote_mask[ind] = 1.0
    center = np.zeros((MAX_NUM_OBJ, 3))
    center[:n] = boxes[:, 0:3]
    size_classes = np.zeros(MAX_NUM_OBJ, np.int64)
    size_classes[:n] = classes
    size_residuals = np.zeros((MAX_NUM_OBJ, 3))
    size_residuals[:n] = boxes[:, 3:6] - np.asarray(MEAN_SIZES)[classes].reshape(-1, 3)
    mask = np.zeros(MAX_NUM_OBJ)
    mask[:n] = 1
    return {
        "center_label": center.astype(np.float32),
        "heading_class_label": np.zeros(MAX_NUM_OBJ, np.int64),
        "heading_residual_label": np.zeros(MAX_NUM_OBJ, np.float32),
        "size_class_label": size_classes,
        "size_residual_label": size_residuals.astype(np.float32),
        "sem_cls_label": size_classes.copy(),
        "box_label_mask": mask.astype(np.float32),
        "vote_label": np.tile(votes, (1, 3)).astype(np.float32),
        "vote_label_mask": vote_mask.astype(np.int64),
    }


def scene_boxes(scene: Scene) -> tuple[np.ndarray, np.ndarray]:
    """The first 128 boxes (K, 6) whose NYU40 id is a detection class (ScanQA's preprocessing keeps only those),
    and their classes (K,)."""
    keep = np.array([int(c) in NYU40_TO_CLASS for c in scene.aligned_bbox[:, -2]], dtype=bool)
    boxes = scene.aligned_bbox[keep][:MAX_NUM_OBJ]
    classes = np.array([NYU40_TO_CLASS[int(c)] for c in boxes[:, -2]], dtype=np.int64)
    return boxes[:, 0:6].astype(np.float64), classes
