"""The SQA3D dataset over ScanQA's scene files: one item per question, batches padded to the longest text.

Skipped and counted when the set is built: a question whose scene files are missing (``missing_scene``), whose
scene has no vertices (``empty_scene``), and in training an answer outside the vocabulary (``unknown_answer``).
At evaluation an unknown answer keeps its question with target -1: it counts as wrong.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .scenes import (
    Scene,
    augment,
    detection_targets,
    load_scene,
    point_cloud_input,
    scene_available,
    scene_boxes,
    situation_target,
)
from .sqa import AnswerVocab, SQARecord
from .text import MAX_TEXT_LEN, GloVe, tokenize


class SQADataset(Dataset):
    """Questions of one split with their scenes (loaded on first use, kept per worker)."""

    def __init__(self, records: Sequence[SQARecord], vocab: AnswerVocab, glove: GloVe, scannet_data: str | Path,
                 scans_dir: str | Path | None = None, *, train: bool, num_points: int = 40000, augment: bool = True,
                 use_color: bool = True, use_height: bool = True, seed: int = 0, wos: bool = False):
        self.data_dir = Path(scannet_data)
        self.scans_dir = Path(scans_dir) if scans_dir else None
        self.vocab, self.glove, self.train = vocab, glove, train
        self.num_points, self.do_augment = num_points, augment and train
        self.use_color, self.use_height, self.seed, self.wos = use_color, use_height, seed, wos
        self.skipped: collections.Counter = collections.Counter()
        self._scenes: dict[str, Scene] = {}
        kept = []
        present: dict[str, bool] = {}
        for r in records:
            if r.scene_id not in present:
                present[r.scene_id] = scene_available(self.data_dir, r.scene_id)
            if not present[r.scene_id]:
                self.skipped["missing_scene"] += 1
            elif train and vocab.index(r.answer) < 0:
                self.skipped["unknown_answer"] += 1
            else:
                kept.append(r)
        nonempty = {}
        self.records = []
        for r in kept:
            if r.scene_id not in nonempty:
                nonempty[r.scene_id] = len(np.load(self.data_dir / f"{r.scene_id}_aligned_vert.npy", mmap_mode="r")) > 0
            if nonempty[r.scene_id]:
                self.records.append(r)
            else:
                self.skipped["empty_scene"] += 1
        self.tokens = [(tokenize(r.situation), tokenize(r.question)) for r in self.records]

    def __len__(self) -> int:
        return len(self.records)

    def scene(self, scene_id: str) -> Scene:
        if scene_id not in self._scenes:
            self._scenes[scene_id] = load_scene(self.data_dir, scene_id, self.scans_dir)
        return self._scenes[scene_id]

    def _rng(self, index: int) -> np.random.Generator:
        if self.train:  # differs per epoch and worker: drawn from torch's (seeded) generator
            return np.random.default_rng(int(torch.randint(2 ** 62, ()).item()))
        return np.random.default_rng([self.seed, index])

    def __getitem__(self, index: int) -> dict:
        r = self.records[index]
        scene = self.scene(r.scene_id)
        rng = self._rng(index)
        pc, choices = point_cloud_input(scene, self.num_points, rng, self.use_color, self.use_height)
        coord, quat = situation_target(scene, r.position, r.rotation)
        item: dict = {}
        if self.train:
            boxes, classes = scene_boxes(scene)
            if self.do_augment:
                pc, boxes, coord, quat = augment(pc, boxes, coord, quat, rng)
            item.update(detection_targets(scene, choices, pc, boxes, classes))
        s_tokens, q_tokens = self.tokens[index]
        s_feat = self.glove.embed(s_tokens)
        if self.wos:  # --wos: every situation token is 'unk'
            s_feat = np.broadcast_to(self.glove.unk, s_feat.shape).copy()
        q_feat = self.glove.embed(q_tokens)
        answer = self.vocab.index(r.answer)
        scores = np.zeros(len(self.vocab), np.float32)
        if answer >= 0:
            scores[answer] = self.vocab.target_score(r.answer)
        item.update(
            point_clouds=pc.astype(np.float32), s_feat=s_feat.astype(np.float32), q_feat=q_feat.astype(np.float32),
            auxiliary_task=np.concatenate([coord, quat]).astype(np.float32), answer_cat_scores=scores,
            answer=answer, question_id=r.question_id, question_type=r.question_type)
        return item


def collate(items: list[dict]) -> dict:
    """Stack arrays; pad ``s_feat`` / ``q_feat`` to the batch's longest text (``s_len`` / ``q_len``)."""
    out: dict = {}
    for key in ("s_feat", "q_feat"):
        lengths = [len(it[key]) for it in items]
        pad = np.zeros((len(items), max(lengths), items[0][key].shape[1]), np.float32)
        for i, it in enumerate(items):
            pad[i, : lengths[i]] = it[key]
        out[key] = torch.from_numpy(pad)
        out[key[0] + "_len"] = torch.tensor(lengths, dtype=torch.long)
    for key, value in items[0].items():
        if key in ("s_feat", "q_feat"):
            continue
        if key == "question_type":
            out[key] = [it[key] for it in items]
        elif isinstance(value, np.ndarray):
            out[key] = torch.from_numpy(np.stack([it[key] for it in items]))
        else:
            out[key] = torch.tensor([it[key] for it in items], dtype=torch.long)
    return out


def glove_words(records: Sequence[SQARecord]) -> set[str]:
    """Every token of the situations and questions (what a text GloVe file is filtered to)."""
    words: set[str] = set()
    for r in records:
        words.update(tokenize(r.situation)[:MAX_TEXT_LEN])
        words.update(tokenize(r.question)[:MAX_TEXT_LEN])
    return words
