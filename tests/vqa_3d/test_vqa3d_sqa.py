"""SQA3D readers, the answer vocabulary and the question types on the real test split; EM metrics by hand."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from common.engine.errors import DataPathError
from vqa_3d.metrics import em_metrics, exact_match, format_table
from vqa_3d.sqa import QUESTION_TYPES, AnswerVocab, answer_score, question_type, read_split, type_counts

REAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "sqa3d_test"
needs_real = pytest.mark.skipif(not REAL.is_dir(), reason=f"the real SQA3D test split is not at {REAL}")
# Table E's per-type EM@1 (SQA3D row) and its overall 47.20
SQA3D_ROW = {"What": 33.48, "Is": 66.10, "How": 42.37, "Can": 69.53, "Which": 43.02, "Others": 46.40}


@pytest.fixture(scope="module")
def real_test():
    return read_split(REAL, "test")


@needs_real
def test_real_test_split_reads_and_joins_by_question_id(real_test):
    assert len(real_test) == 3519
    assert len({r.scene_id for r in real_test}) == 67
    first = real_test[0]
    assert first.scene_id == "scene0050_00" and first.question_id == 220602000002
    assert first.question == "What instrument in front of me is ebony and ivory?" and first.answer == "piano"
    assert first.position == pytest.approx((0.7110268899979686, -0.03219739162793617, 0.0))
    assert first.rotation == pytest.approx((0.0, 0.0, -0.9995736030415032, -0.02919952230128897))
    assert all(abs(sum(q * q for q in r.rotation) - 1) < 1e-6 for r in real_test)


@needs_real
def test_real_per_type_counts_reproduce_table_e(real_test):
    counts = type_counts(real_test)
    assert counts == {"What": 1144, "Is": 652, "How": 465, "Can": 338, "Which": 351, "Others": 569}
    # the counts are the ones behind the paper's row: each percentage (2 decimals) is a whole number of correct
    # answers of its column, and those sum to the overall 47.20
    correct = {t: SQA3D_ROW[t] * counts[t] / 100 for t in QUESTION_TYPES}
    assert all(abs(v - round(v)) <= 0.00005 * counts[t] for t, v in correct.items())
    assert 100 * sum(round(v) for v in correct.values()) / 3519 == pytest.approx(47.20, abs=0.005)


@needs_real
def test_real_answer_vocabulary_is_sorted_with_scanqa_scores(real_test):
    vocab = AnswerVocab.from_answers(a.answer for a in real_test)
    assert list(vocab.answers) == sorted(vocab.answers) and len(vocab) > 100
    assert sum(vocab.counts) == 3519
    top = max(range(len(vocab)), key=vocab.counts.__getitem__)
    assert vocab.target_score(vocab.answers[top]) == 1.0
    rare = vocab.answers[vocab.counts.index(1)]
    assert vocab.target_score(rare) == 0.3 and vocab.index("no such answer") == -1
    trimmed = AnswerVocab.from_answers((a.answer for a in real_test), min_freq=2, max_size=50)
    assert len(trimmed) == 50 and min(trimmed.counts) >= 2


def test_question_type_is_the_case_sensitive_first_word():
    assert [question_type(q) for q in ("What is it?", "Is it?", "How many?", "Can I?", "Which one?", "what is it?",
                                       "Where?", "  Which way?", "")] == [
        "What", "Is", "How", "Can", "Which", "Others", "Others", "Which", "Others"]


def test_answer_score_is_scanqas():
    assert [answer_score(n) for n in range(6)] == [0.0, 0.3, 0.6, 0.9, 1.0, 1.0]


def test_vocab_files_in_the_three_layouts(tmp_path):
    counter = tmp_path / "answer_counter.json"
    counter.write_text(json.dumps(["yes", "no", "yes", "two", "yes", "yes"]))
    vocab = AnswerVocab.from_file(counter)
    assert vocab.answers == ("no", "two", "yes") and vocab.counts == (1, 1, 4)
    written = tmp_path / "vocab.json"
    vocab.write(written)
    assert AnswerVocab.from_file(written) == vocab
    answer_dict = tmp_path / "answer_dict.json"
    answer_dict.write_text(json.dumps([{"yes": 1, "no": 0}, {"0": "no", "1": "yes"}]))
    assert AnswerVocab.from_file(answer_dict).answers == ("no", "yes")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"yes": "many"}))
    with pytest.raises(DataPathError, match="expected answer_counter.json"):
        AnswerVocab.from_file(bad)


def test_missing_or_malformed_split_files_are_data_errors(tmp_path):
    with pytest.raises(DataPathError, match="no v1_balanced_questions_val_scannetv2.json"):
        read_split(tmp_path, "val")
    (tmp_path / "v1_balanced_questions_val_scannetv2.json").write_text(json.dumps({"questions": [
        {"question_id": 1, "scene_id": "s", "situation": "x", "question": "What?"}]}))
    (tmp_path / "v1_balanced_sqa_annotations_val_scannetv2.json").write_text(json.dumps({"annotations": []}))
    with pytest.raises(DataPathError, match="no annotation for question 1"):
        read_split(tmp_path, "val")


def test_exact_match_at_1_and_10_by_hand():
    scores = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1], [0.2, 0.3, 0.5], [0.5, 0.4, 0.1]])
    targets = torch.tensor([1, 2, 2, -1])  # the last answer has no class: wrong at every k
    assert exact_match(scores, targets, 1).tolist() == [True, False, True, False]
    assert exact_match(scores, targets, 2).tolist() == [True, False, True, False]
    assert exact_match(scores, targets, 10).tolist() == [True, True, True, False]


def test_em_metrics_per_type_and_table():
    scores = torch.eye(6)
    targets = torch.tensor([0, 1, 2, 0, 4, -1])
    types = ["What", "What", "Is", "Can", "Which", "Others"]
    m = em_metrics(scores, targets, types)
    assert m["em1"] == pytest.approx(400 / 6) and m["em10"] == pytest.approx(500 / 6)
    assert (m["em1_what"], m["em1_is"], m["em1_can"], m["em1_which"], m["em1_others"]) == (100, 100, 0, 100, 0)
    assert math.isnan(m["em1_how"]) and m["n_how"] == 0 and m["n_what"] == 2 and m["n"] == 6
    table = format_table(m).splitlines()
    assert table[0] == "| EM@1 | EM@10 | What | Is | How | Can | Which | Others |"
    assert table[1].startswith("| 66.67 | 83.33 | 100.00 | 100.00 | nan |")
    assert table[2] == "| n=6 | n=6 | n=2 | n=1 | n=0 | n=1 | n=1 | n=1 |"
