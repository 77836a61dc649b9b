"""Writers of SQA3D-format test data: ScanQA scene ``.npy`` files (numpy), SQA3D JSONs (json), GloVe text."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

# (nyu40 id, instance id, centre, half size) of the objects in every fixture room (unaligned frame)
OBJECTS = ((5, 1, (1.0, 1.0, 0.5), (0.3, 0.3, 0.5)),   # chair
           (7, 2, (2.5, 1.5, 0.4), (0.6, 0.4, 0.4)),   # table
           (39, 3, (3.2, 0.6, 0.8), (0.2, 0.3, 0.8)),  # otherfurniture -> class 17
           (1, 4, (0.1, 1.5, 1.2), (0.05, 1.5, 1.2)))  # wall: not a detection class
ANGLE = np.pi / 6
AXIS_ALIGN = np.array([[np.cos(ANGLE), -np.sin(ANGLE), 0, -1.0], [np.sin(ANGLE), np.cos(ANGLE), 0, -0.5],
                       [0, 0, 1, 0.05], [0, 0, 0, 1]])

QUESTIONS = [  # (situation, question, answer): the five Table E types and Others
    ("I am sitting on the chair facing the table.", "What is in front of me?", "table"),
    ("I am standing by the table.", "Is the chair on my left?", "yes"),
    ("I just walked in from the door.", "How many chairs are there?", "one"),
    ("I am facing the wall.", "Can I sit on the chair in front of me?", "no"),
    ("I am leaning on the cabinet.", "Which direction should I go to reach the table?", "left"),
    ("I am looking at the table  .", "Where is the chair?", "right"),
    ("I am sitting on the chair.", "what color is the table?", "brown"),
    ("I am standing in the middle of the room.", "Is there a table?", "yes"),
]


def write_scene(data_dir: Path, scene_id: str, seed: int = 0, n_points: int = 600, meta: bool = True) -> None:
    """``<scene>_{vert,aligned_vert,ins_label,sem_label,aligned_bbox}.npy`` (+ ``<scene>.txt``) as ScanQA writes."""
    rng = np.random.default_rng(seed)
    parts, ins, sem = [], [], []
    n_obj = n_points // 8
    for nyu, inst, centre, half in OBJECTS:
        parts.append(np.asarray(centre) + rng.uniform(-1, 1, (n_obj, 3)) * np.asarray(half))
        ins.append(np.full(n_obj, inst))
        sem.append(np.full(n_obj, nyu))
    rest = n_points - n_obj * len(OBJECTS)
    parts.append(rng.uniform((0, 0, 0), (4, 3, 0.02), (rest, 3)))  # floor, unannotated
    ins.append(np.zeros(rest, int))
    sem.append(np.full(rest, 2))
    xyz = np.concatenate(parts)
    rgb = rng.integers(0, 256, (n_points, 3)).astype(np.float64)
    normals = rng.normal(size=(n_points, 3))
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    aligned = np.concatenate([xyz, np.ones((n_points, 1))], 1) @ AXIS_ALIGN.T
    vert = np.concatenate([xyz, rgb, normals], 1).astype(np.float32)
    aligned_vert = np.concatenate([aligned[:, :3], rgb, normals], 1).astype(np.float32)
    ins_label, sem_label = np.concatenate(ins).astype(np.uint32), np.concatenate(sem).astype(np.uint32)
    boxes = []
    for nyu, inst, _, _ in OBJECTS:
        if nyu in (1, 2, 22):
            continue
        pts = aligned[ins_label == inst, :3]
        lo, hi = pts.min(0), pts.max(0)
        boxes.append([*(lo + hi) / 2, *(hi - lo), nyu, inst])
    data_dir.mkdir(parents=True, exist_ok=True)
    np.save(data_dir / f"{scene_id}_vert.npy", vert)
    np.save(data_dir / f"{scene_id}_aligned_vert.npy", aligned_vert)
    np.save(data_dir / f"{scene_id}_ins_label.npy", ins_label)
    np.save(data_dir / f"{scene_id}_sem_label.npy", sem_label)
    np.save(data_dir / f"{scene_id}_aligned_bbox.npy", np.array(boxes))
    if meta:
        values = " ".join(repr(float(v)) for v in AXIS_ALIGN.reshape(-1))
        (data_dir / f"{scene_id}.txt").write_text(f"axisAlignment = {values}\nsceneType = Living room\n")


def sqa_entries(scene_ids: list[str], start_id: int, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """Question and annotation entries in SQA3D's layout, every fixture question once per scene."""
    rng = np.random.default_rng(seed)
    questions, annotations = [], []
    qid = start_id
    for scene in scene_ids:
        for situation, question, answer in QUESTIONS:
            quat = rng.normal(size=4)
            quat /= np.linalg.norm(quat)
            questions.append({"scene_id": scene, "situation": situation, "alternative_situation": [situation],
                              "question": question, "question_id": qid})
            annotations.append({"scene_id": scene, "question_type": "N/A", "answer_type": "other",
                                "question_id": qid, "answers": [{"answer": answer, "answer_confidence": "yes",
                                                                 "answer_id": 1}],
                                "rotation": {"_x": quat[0], "_y": quat[1], "_z": quat[2], "_w": quat[3]},
                                "position": {"x": float(rng.uniform(-1, 1)), "y": float(rng.uniform(-1, 1)),
                                             "z": 0}})
            qid += 1
    return questions, annotations


def write_sqa_split(root: Path, split: str, questions: list[dict], annotations: list[dict]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    info = {"description": "fixture", "version": "1.0"}
    (root / f"v1_balanced_questions_{split}_scannetv2.json").write_text(
        json.dumps({"info": info, "data_type": "scannet", "questions": questions}))
    (root / f"v1_balanced_sqa_annotations_{split}_scannetv2.json").write_text(
        json.dumps({"info": info, "data_type": "scannet", "annotations": annotations}))


def write_glove_text(path: Path, words: list[str], dim: int = 8, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    lines = [w + " " + " ".join(f"{v:.5f}" for v in rng.normal(size=dim)) for w in words]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_dataset(root: Path, n_points: int = 600) -> dict[str, Path]:
    """sqa/ (train: 2 scenes, val and test: 1 each; one test question about a scene with no files), scannet_data/
    and glove.txt (dim 8, every fixture word + 'unk')."""
    data = root / "scannet_data"
    for i, scene in enumerate(("scene0000_00", "scene0001_00", "scene0002_00")):
        write_scene(data, scene, seed=i, n_points=n_points)
    sqa = root / "sqa"
    write_sqa_split(sqa, "train", *sqa_entries(["scene0000_00", "scene0001_00"], 100, seed=1))
    write_sqa_split(sqa, "val", *sqa_entries(["scene0002_00"], 200, seed=2))
    q, a = sqa_entries(["scene0002_00", "scene0999_00"], 300, seed=3)
    write_sqa_split(sqa, "test", q, a)
    words = sorted({t for s, q, _ in QUESTIONS for t in (s + " " + q).replace("?", " ?").replace(".", " .").split()})
    glove = write_glove_text(root / "glove.txt", words + ["unk"])
    return {"sqa": sqa, "scannet_data": data, "glove": glove}
