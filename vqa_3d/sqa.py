"""SQA3D annotations: the balanced question / annotation JSONs, the answer vocabulary, question types.

On disk (Zenodo ``sqa_task.zip``, ``balanced/``): ``v1_balanced_questions_{split}_scannetv2.json`` (VQAv2-style
``{"questions": [{question_id, scene_id, situation, question, alternative_situation}]}``) and
``v1_balanced_sqa_annotations_{split}_scannetv2.json`` (``{"annotations": [{question_id, scene_id,
answers: [{answer}], position: {x, y, z}, rotation: {_x, _y, _z, _w}, ...}]}``), plus ``answer_dict.json``
(``[answer -> id, id -> answer]``) and ScanQA's ``answer_counter.json`` (a list of answers, one per question).

The answer vocabulary follows ScanQA's ``get_answer_cands``: count the answers, keep the ``max_size`` most common
with at least ``min_freq`` occurrences, classes in sorted order; a class's BCE target is ``get_answer_score`` of
its count (0.3 / 0.6 / 0.9 / 1.0 for 1 / 2 / 3 / >= 4).
"""

from __future__ import annotations

import collections
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from common.engine.errors import DataPathError

QUESTION_TYPES = ("What", "Is", "How", "Can", "Which", "Others")  # Table E, by the question's first word
QUESTIONS_FILE = "v1_{version}_questions_{split}_scannetv2.json"
ANNOTATIONS_FILE = "v1_{version}_sqa_annotations_{split}_scannetv2.json"


@dataclass(frozen=True)
class SQARecord:
    """One situated question: text, answer, and the situation (position x, y, z; quaternion x, y, z, w)."""

    question_id: int
    scene_id: str
    situation: str
    question: str
    answer: str
    position: tuple[float, float, float]
    rotation: tuple[float, float, float, float]

    @property
    def question_type(self) -> str:
        return question_type(self.question)


def question_type(question: str) -> str:
    """Table E's column: the first word if it is What / Is / How / Can / Which (case as written), else Others."""
    words = question.split()
    first = words[0] if words else ""
    return first if first in QUESTION_TYPES[:-1] else "Others"


def _read_json(path: Path, key: str) -> list[dict]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataPathError(f"SQA3D file not found: {path}") from None
    except (OSError, ValueError) as e:
        raise DataPathError(f"{path}: not readable JSON ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get(key), list):
        raise DataPathError(f"{path}: expected a JSON object with a '{key}' list")
    return data[key]


def split_files(root: str | Path, split: str, version: str = "balanced") -> tuple[Path, Path]:
    """The question and annotation files of ``split`` under ``root`` (or ``root/<version>/``)."""
    root = Path(root)
    for folder in (root, root / version):
        q = folder / QUESTIONS_FILE.format(version=version, split=split)
        if q.is_file():
            return q, folder / ANNOTATIONS_FILE.format(version=version, split=split)
    raise DataPathError(f"no {QUESTIONS_FILE.format(version=version, split=split)} in {root} or {root / version}")


def read_split(root: str | Path, split: str, version: str = "balanced") -> list[SQARecord]:
    """Join the questions and annotations of one split by ``question_id`` (questions' order)."""
    q_path, a_path = split_files(root, split, version)
    annotations = {}
    for a in _read_json(a_path, "annotations"):
        annotations[a["question_id"]] = a
    records = []
    for q in _read_json(q_path, "questions"):
        a = annotations.get(q["question_id"])
        if a is None:
            raise DataPathError(f"{a_path}: no annotation for question {q['question_id']}")
        try:
            pos, rot = a["position"], a["rotation"]
            records.append(SQARecord(
                question_id=int(q["question_id"]), scene_id=q["scene_id"], situation=q["situation"],
                question=q["question"], answer=a["answers"][0]["answer"],
                position=(float(pos["x"]), float(pos["y"]), float(pos["z"])),
                rotation=(float(rot["_x"]), float(rot["_y"]), float(rot["_z"]), float(rot["_w"]))))
        except (KeyError, IndexError, TypeError, ValueError) as e:
            raise DataPathError(f"{a_path}: question {q.get('question_id')}: malformed entry ({e!r})") from None
    return records


def type_counts(records: Iterable[SQARecord]) -> dict[str, int]:
    """Questions per Table E column, in the table's order."""
    counts = collections.Counter(r.question_type for r in records)
    return {t: counts.get(t, 0) for t in QUESTION_TYPES}


def answer_score(count: int) -> float:
    """ScanQA's ``get_answer_score``: the soft BCE target of an answer seen ``count`` times."""
    return (0.0, 0.3, 0.6, 0.9)[count] if count < 4 else 1.0


@dataclass(frozen=True)
class AnswerVocab:
    """Answer classes (sorted, as ScanQA) with their counts."""

    answers: tuple[str, ...]
    counts: tuple[int, ...]

    @classmethod
    def from_answers(cls, answers: Iterable[str], min_freq: int = 1, max_size: int = -1) -> AnswerVocab:
        """``get_answer_cands``: the ``max_size`` most common answers (all when < 0) seen >= ``min_freq`` times."""
        counter = collections.Counter(sorted(answers))
        common = counter.most_common()[:max_size if max_size >= 0 else len(counter)]
        kept = dict(x for x in common if x[1] >= min_freq)
        names = tuple(sorted(kept))
        return cls(names, tuple(kept[a] for a in names))

    @classmethod
    def from_file(cls, path: str | Path, min_freq: int = 1, max_size: int = -1) -> AnswerVocab:
        """ScanQA's ``answer_counter.json`` (a list of answers, or ``{answer: count}``), or SQA3D's
        ``answer_dict.json`` (``[answer -> id, id -> answer]``; ids must be 0..n-1, counts unknown: 4 each, i.e.
        target 1.0)."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise DataPathError(f"answer vocabulary not found: {path}") from None
        except (OSError, ValueError) as e:
            raise DataPathError(f"{path}: not readable JSON ({e})") from None
        if isinstance(data, list) and len(data) == 2 and all(isinstance(d, dict) for d in data):
            a2i = data[0]
            ids = sorted(a2i.values())
            if ids != list(range(len(ids))):
                raise DataPathError(f"{path}: answer ids are not 0..{len(ids) - 1}")
            names = tuple(sorted(a2i, key=a2i.get))
            return cls(names, (4,) * len(names))
        if isinstance(data, list) and all(isinstance(a, str) for a in data):
            return cls.from_answers(data, min_freq, max_size)
        if isinstance(data, dict) and all(isinstance(v, int) for v in data.values()):
            return cls.from_answers([a for a, n in data.items() for _ in range(n)], min_freq, max_size)
        raise DataPathError(f"{path}: expected answer_counter.json (list of answers or answer -> count) or "
                            "answer_dict.json ([answer -> id, id -> answer])")

    def __len__(self) -> int:
        return len(self.answers)

    def index(self, answer: str) -> int:
        """Class of ``answer``, -1 when it is not in the vocabulary."""
        return self._lookup.get(answer, -1)

    def target_score(self, answer: str) -> float:
        i = self.index(answer)
        return answer_score(self.counts[i]) if i >= 0 else 0.0

    @property
    def _lookup(self) -> dict[str, int]:
        cached = self.__dict__.get("_lookup_cache")
        if cached is None:
            cached = {a: i for i, a in enumerate(self.answers)}
            object.__setattr__(self, "_lookup_cache", cached)
        return cached

    def write(self, path: str | Path) -> None:
        """As ``answer_counter.json`` in ``{answer: count}`` form (reads back to the same vocabulary)."""
        Path(path).write_text(json.dumps(dict(zip(self.answers, self.counts)), indent=1) + "\n")


def answers_of(records: Sequence[SQARecord]) -> list[str]:
    return [r.answer for r in records]
