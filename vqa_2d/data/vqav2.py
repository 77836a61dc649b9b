"""VQAv2: the official question/annotation JSONs with COCO image folders, or METER's ``vqav2_<split>.arrow``.

JSON layout (``--data-path``): ``v2_OpenEnded_mscoco_<split>_questions.json``, ``v2_mscoco_<split>_annotations.json``
(train2014 / val2014), images ``<folder>/COCO_<folder>_<image_id:012d>.jpg`` (test-dev2015 reads test2015/).
Arrow layout (zdou0830/METER ``write_vqa.py``): one row per image with ``image`` (JPEG bytes), ``questions``,
``answers``, ``answer_labels``, ``answer_scores``, ``image_id``, ``question_id``, ``split``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import torch
from torch.utils.data import Dataset

from common.engine.errors import DataPathError
from vqa_2d.data.inputs import encode_text, open_image, skip
from vqa_2d.metrics_vqa import answer_targets, build_answer_vocab

log = logging.getLogger(__name__)

JSON_SPLITS = ("train2014", "val2014", "test-dev2015", "test2015")
ARROW_SPLITS = ("train", "val", "trainable_val", "rest_val", "test", "test-dev")
IMAGE_FOLDER = {"train2014": "train2014", "val2014": "val2014", "test-dev2015": "test2015", "test2015": "test2015"}


@dataclass
class Question:
    question_id: int
    image_id: int
    question: str
    image: Any  # a path (JSON layout) or (arrow table, row)
    labels: list[int] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    answers: list[str] | None = None  # the ten raw answers (official metric), when known
    answer_type: str | None = None


def read_json(path: Path, key: str) -> list[dict]:
    if not path.is_file():
        raise DataPathError(f"VQAv2: {path} not found")
    try:
        return json.loads(path.read_text())[key]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise DataPathError(f"VQAv2: {path} is not an official file with '{key}' ({err})") from None


def questions_path(root: Path, split: str) -> Path:
    return root / f"v2_OpenEnded_mscoco_{split}_questions.json"


def annotations_path(root: Path, split: str) -> Path:
    return root / f"v2_mscoco_{split}_annotations.json"


def json_answer_vocab(root: Path, min_count: int) -> list[str]:
    """METER's label list from the train2014 (+ val2014 when present) annotations."""
    answers = []
    for split in ("train2014", "val2014"):
        path = annotations_path(root, split)
        if split == "val2014" and not path.is_file():
            log.warning("VQAv2: %s absent; the answer vocabulary comes from train2014 only", path.name)
            continue
        answers += [a["multiple_choice_answer"] for a in read_json(path, "annotations")]
    return build_answer_vocab(answers, min_count)


def read_json_split(root: Path, split: str, ans2label: dict[str, int], keep_unlabelled: bool) -> tuple[
        list[Question], dict[str, int]]:
    """Questions of one official split; questions without a label among the answers are dropped for training
    (METER's filter) unless ``keep_unlabelled``; a question whose image file is missing is skipped and counted."""
    if split not in JSON_SPLITS:
        raise DataPathError(f"VQAv2 JSON split {split!r} is not one of {', '.join(JSON_SPLITS)}")
    questions = read_json(questions_path(root, split), "questions")
    annotations = {}
    if split in ("train2014", "val2014"):
        annotations = {a["question_id"]: a for a in read_json(annotations_path(root, split), "annotations")}
    folder = IMAGE_FOLDER[split]
    out, skipped = [], {"missing_image": 0, "no_label": 0}
    for q in questions:
        image = root / folder / f"COCO_{folder}_{q['image_id']:012d}.jpg"
        if not image.is_file():
            skipped["missing_image"] += 1
            continue
        item = Question(q["question_id"], q["image_id"], q["question"], image)
        ann = annotations.get(q["question_id"])
        if ann is not None:
            item.answers = [a["answer"] for a in ann["answers"]]
            item.answer_type = ann.get("answer_type")
            item.labels, item.scores = answer_targets(item.answers, ans2label)
        if annotations and not item.labels and not keep_unlabelled:
            skipped["no_label"] += 1
            continue
        out.append(item)
    return out, skipped


def arrow_path(root: Path, split: str) -> Path:
    return root / f"vqav2_{split}.arrow"


def read_arrow(path: Path) -> pa.Table:
    if not path.is_file():
        raise DataPathError(f"VQAv2: {path} not found")
    try:
        return pa.ipc.RecordBatchFileReader(pa.memory_map(str(path), "r")).read_all()
    except pa.ArrowInvalid as err:
        raise DataPathError(f"VQAv2: {path} is not an arrow file ({err})") from None


def arrow_answer_vocab(root: Path) -> list[str]:
    """label -> answer from METER's train/val arrow files (its datamodule's ``answer2id``)."""
    answer2id: dict[str, int] = {}
    for split in ("train", "val", "trainable_val", "rest_val"):
        path = arrow_path(root, split)
        if not path.is_file():
            continue
        table = read_arrow(path)
        for answers, labels in zip(table["answers"].to_pylist(), table["answer_labels"].to_pylist()):
            for per_q_answers, per_q_labels in zip(answers, labels):
                answer2id.update(zip(per_q_answers, per_q_labels))
    if not answer2id:
        raise DataPathError(f"VQAv2: no vqav2_{{train,val}}.arrow with answers under {root}")
    vocab = [""] * (max(answer2id.values()) + 1)
    for answer, label in answer2id.items():
        vocab[label] = answer
    return vocab


def read_arrow_split(root: Path, split: str, annotations: dict[int, dict] | None = None) -> list[Question]:
    """Questions of ``vqav2_<split>.arrow``; raw answers and types from ``annotations`` (official JSON) if given."""
    if split not in ARROW_SPLITS:
        raise DataPathError(f"VQAv2 arrow split {split!r} is not one of {', '.join(ARROW_SPLITS)}")
    table = read_arrow(arrow_path(root, split))
    missing = {"image", "questions", "question_id", "image_id"} - set(table.column_names)
    if missing:
        raise DataPathError(f"VQAv2: {arrow_path(root, split)} lacks columns {sorted(missing)}")
    has_labels = "answer_labels" in table.column_names and "test" not in split
    labels = table["answer_labels"].to_pylist() if has_labels else None
    scores = table["answer_scores"].to_pylist() if has_labels else None
    out = []
    for row, (qs, qids, iid) in enumerate(zip(table["questions"].to_pylist(), table["question_id"].to_pylist(),
                                              table["image_id"].to_pylist())):
        for j, (question, qid) in enumerate(zip(qs, qids)):
            item = Question(int(qid), int(iid), question, (table, row))
            if labels is not None:
                item.labels, item.scores = list(labels[row][j]), list(scores[row][j])
            ann = (annotations or {}).get(int(qid))
            if ann is not None:
                item.answers = [a["answer"] for a in ann["answers"]]
                item.answer_type = ann.get("answer_type")
            out.append(item)
    return out


class VQADataset(Dataset):
    """One sample per question: image tensor, question tokens, dense soft targets, its index."""

    def __init__(self, questions: list[Question], num_answers: int, tokenizer, max_text_len: int, transform):
        self.questions, self.num_answers = questions, num_answers
        self.tokenizer, self.max_text_len, self.transform = tokenizer, max_text_len, transform

    def __len__(self) -> int:
        return len(self.questions)

    def __getitem__(self, index: int) -> dict:
        q = self.questions[index]
        if isinstance(q.image, tuple):
            table, row = q.image
            image = open_image(table["image"][row].as_py())
        else:
            image = open_image(q.image)
        if image is None:
            return skip("unreadable_image")
        ids, mask = encode_text(self.tokenizer, q.question, self.max_text_len)
        target = torch.zeros(self.num_answers)
        if q.labels:
            target[torch.tensor(q.labels)] = torch.tensor(q.scores, dtype=torch.float32)
        return {"pixels": self.transform(image), "text_ids": ids, "text_masks": mask, "targets": target,
                "index": index}
