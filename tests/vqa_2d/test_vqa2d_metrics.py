"""The official VQA accuracy and normaliser on hand-made cases, METER's vocabulary and soft scores, and retrieval
recall on score matrices with known ranks."""

from itertools import combinations

import pytest
import torch

from vqa_2d.metrics_retrieval import recall_at_k
from vqa_2d.metrics_vqa import (
    VQAAccuracy,
    answer_targets,
    build_answer_vocab,
    normalize_answer,
    normalize_word,
    question_accuracy,
    soft_score,
)


@pytest.mark.parametrize("raw, expected", [
    ("Two", "2"), ("the dog", "dog"), ("A Red Car", "red car"), ("none", "0"), ("ten", "10"),
    ("isnt", "isn't"), ("dont know", "don't know"), ("yes.", "yes"), ("3.5", "3.5"), ("1,000", "1000"),
    ("left-side", "left side"), ("hot dog!", "hot dog"), ("  red\n", "red"), ("t-shirt", "t shirt"),
    ("black and white", "black and white"), ("mr. smith", "mr smith"),
])
def test_official_normaliser(raw, expected):
    assert normalize_answer(raw) == expected


def test_punctuation_next_to_space_is_dropped_not_spaced():
    # "a - b": the mark touches a space, so it is removed (not replaced by a space)
    assert normalize_answer("red - blue") == "red blue"
    assert normalize_answer("red/blue") == "red blue"
    assert normalize_answer("red /blue") == "red blue"


def test_meter_normalize_word_drops_commas():
    assert normalize_word("Two, three") == "2 3"
    assert normalize_answer("Two, three") == "2 3"


def reference_accuracy(pred: str, gts: list[str]) -> float:
    """min(1, #humans that said it / 3) averaged over every 9-of-10 subset, with exact-string matching."""
    subsets = list(combinations(range(len(gts)), len(gts) - 1))
    return sum(min(1.0, sum(gts[i] == pred for i in s) / 3) for s in subsets) / len(subsets)


@pytest.mark.parametrize("count", range(11))
def test_accuracy_matches_leave_one_out_formula(count):
    gts = ["cat"] * count + ["dog"] * (10 - count)
    assert question_accuracy("cat", gts) == pytest.approx(reference_accuracy("cat", gts))
    assert question_accuracy("cat", gts) == pytest.approx({0: 0, 1: 0.3, 2: 0.6, 3: 0.9}.get(count, 1.0))


def test_accuracy_normalises_prediction_and_gt_punctuation():
    gts = ["two"] * 2 + ["2"] * 3 + ["yes."] * 5
    assert question_accuracy("Two", gts) == pytest.approx(0.9)  # "Two" -> "2"; gt "two" is not digit-mapped
    assert question_accuracy("yes", gts) == pytest.approx(1.0)  # gt "yes." -> "yes" (the answers differ)
    same = ["yes."] * 10  # all identical: the official script leaves the ground truth as is
    assert question_accuracy("yes", same) == 0.0
    # official quirk: a gt "yes!" becomes "yes " (mark -> space, no strip afterwards) and never matches
    assert question_accuracy("yes", ["yes!"] * 5 + ["no"] * 5) == 0.0


def test_accumulator_per_answer_type():
    acc = VQAAccuracy()
    acc.update("yes", ["yes"] * 10, "yes/no")
    acc.update("2", ["2"] * 2 + ["3"] * 8, "number")
    acc.update("red", ["blue"] * 10, "other")
    out = acc.result()
    assert out["acc"] == pytest.approx(100 * (1 + 0.6 + 0) / 3)
    assert out["acc_yes/no"] == 100.0 and out["acc_number"] == pytest.approx(60.0) and out["acc_other"] == 0.0


def test_soft_scores_and_targets_as_meter():
    assert [soft_score(n) for n in range(6)] == [0.0, 0.3, 0.6, 0.9, 1.0, 1.0]
    labels, scores = answer_targets(["red"] * 4 + ["Red"] * 2 + ["blue"] + ["pink"] * 3, {"red": 0, "blue": 1})
    assert labels == [0, 1] and scores == [1.0, 0.3]  # raw strings: "Red" is not "red" (as upstream)


def test_vocabulary_threshold_and_order():
    answers = ["Two"] * 9 + ["yes"] * 10 + ["the cat"] * 8 + ["2"]
    assert build_answer_vocab(answers, 9) == ["2", "yes"]
    assert build_answer_vocab(answers, 8) == ["2", "yes", "cat"]


def test_recall_with_known_ranks():
    # 3 images, 6 texts (2 per image); text t belongs to image t // 2
    text_image = torch.tensor([0, 0, 1, 1, 2, 2])
    scores = torch.tensor([
        [9.0, 1.0, 8.0, 0.0, 0.0, 0.0],   # image 0: its caption 0 ranks 1st
        [7.0, 0.5, 1.0, 2.0, 6.0, 5.0],   # image 1: best own caption (3) ranks 4th
        [0.0, 0.0, 0.0, 0.0, 0.1, 0.2],   # image 2: own captions rank 1st-2nd
    ])
    r = recall_at_k(scores, text_image, ks=(1, 5, 10))
    assert r["tr_r1"] == pytest.approx(200 / 3) and r["tr_r5"] == 100.0
    # IR: text 0 -> image 0 top1; text1 -> scores (1,.5,0): image0 top1; text2 -> (8,1,0) wrong; text3 -> (0,2,0)
    # right; text4 -> (0,6,.1): image 2 ranks 2nd; text5 -> (0,5,.2): 2nd
    assert r["ir_r1"] == pytest.approx(300 / 6)
    assert r["ir_r5"] == 100.0
    assert r["rsum"] == pytest.approx(sum(r[f"{d}_r{k}"] for d in ("ir", "tr") for k in (1, 5, 10)))


def test_recall_rejects_mismatched_ids():
    with pytest.raises(ValueError):
        recall_at_k(torch.zeros(2, 3), torch.tensor([0, 1]))
