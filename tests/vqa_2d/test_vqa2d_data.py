"""The readers on fixtures written in both on-disk formats: METER's vocabulary and targets, JSON == arrow,
Flickr30k captions and negatives, skips."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from vqa_fixtures import write_f30k_arrow, write_f30k_karpathy, write_vqa_arrow, write_vqa_json

from common.engine.errors import DataPathError
from vqa_2d.data import f30k, vqav2
from vqa_2d.data.inputs import encode_text, image_transform, load_tokenizer


def test_json_vocabulary_is_meters(tmp_path):
    root = write_vqa_json(tmp_path, n_train=6, n_val=3)
    # add normalised duplicates: "Two" / "two " / "2" count as one answer "2"
    ann_path = root / "v2_mscoco_train2014_annotations.json"
    data = json.loads(ann_path.read_text())
    extra = dict(data["annotations"][0], multiple_choice_answer="Two")
    data["annotations"] += [extra] * 4 + [dict(extra, multiple_choice_answer="2")] * 5
    ann_path.write_text(json.dumps(data))
    vocab = vqav2.json_answer_vocab(root, min_count=4)
    assert vocab == ["no", "2"]  # red/green/blue: 3 each over train + val; "no": 9; "2": 9 (after normalize_word)
    assert vqav2.json_answer_vocab(root, min_count=1)[:4] == ["red", "no", "green", "blue"]  # first occurrence


def test_json_and_arrow_give_the_same_questions_and_targets(tmp_path):
    json_root = write_vqa_json(tmp_path / "json", n_train=3, n_val=2)
    arrow_root = write_vqa_arrow(tmp_path / "arrow", n_train=3, n_val=2)
    label2ans = vqav2.arrow_answer_vocab(arrow_root)
    assert label2ans == ["red", "green", "blue", "no"]
    ans2label = {a: i for i, a in enumerate(label2ans)}
    from_json, skipped = vqav2.read_json_split(json_root, "train2014", ans2label, keep_unlabelled=False)
    from_arrow = vqav2.read_arrow_split(arrow_root, "train")
    assert skipped == {"missing_image": 0, "no_label": 0}
    key = sorted((q.question_id, q.question, tuple(q.labels)) for q in from_json)
    assert key == sorted((q.question_id, q.question, tuple(q.labels)) for q in from_arrow)
    color_q = next(q for q in from_json if q.question_id == 10)
    assert color_q.labels == [0] and color_q.scores == [1.0]  # 9 x "red" -> 1.0; "dark red" is no label
    assert len(color_q.answers) == 10 and color_q.answer_type == "other"


def test_vqa_dataset_targets_and_unlabelled_questions(tmp_path, tokenizer_dir):
    root = write_vqa_json(tmp_path, n_train=2, n_val=1)
    qs, skipped = vqav2.read_json_split(root, "train2014", {"no": 0}, keep_unlabelled=False)
    assert skipped["no_label"] == 2 and all(q.labels == [0] for q in qs)  # colour questions have no label
    qs, _ = vqav2.read_json_split(root, "val2014", {"no": 0}, keep_unlabelled=True)
    assert len(qs) == 2
    ds = vqav2.VQADataset(qs, 1, load_tokenizer(tokenizer_dir), 12, image_transform(32, False))
    sample = ds[1]
    assert sample["pixels"].shape == (3, 32, 32) and sample["targets"].tolist() == [1.0]
    assert sample["text_ids"].shape == (12,) and sample["text_masks"].sum() < 12


def test_missing_files_are_data_errors(tmp_path):
    with pytest.raises(DataPathError, match="questions.json"):
        vqav2.read_json_split(tmp_path, "train2014", {}, False)
    with pytest.raises(DataPathError, match="vqav2_val.arrow"):
        vqav2.read_arrow_split(tmp_path, "val")
    with pytest.raises(DataPathError, match="dataset_flickr30k.json"):
        f30k.read_karpathy(tmp_path, ["test"])


def test_flickr30k_both_formats(tmp_path, tokenizer_dir):
    karpathy, skipped = f30k.read_karpathy(write_f30k_karpathy(tmp_path / "k", 4, 3, empty_caption=True), ["test"])
    arrow, _ = f30k.read_arrow(write_f30k_arrow(tmp_path / "a", 4, 3), ["test"])
    assert skipped == {"missing_image": 0, "empty_caption": 1}
    assert [im.captions for im in karpathy] == [im.captions for im in arrow]
    tok = load_tokenizer(tokenizer_dir)
    texts = f30k.TextSet(karpathy, tok, 12)
    assert texts.text_image.tolist() == [0, 0, 1, 1, 2, 2]
    ids, mask = encode_text(tok, karpathy[1].captions[0], 12)
    assert torch.equal(texts[2]["text_ids"], ids) and texts[2]["image_index"] == 1


def test_negative_captions_come_from_other_images(tmp_path, tokenizer_dir):
    images, _ = f30k.read_karpathy(write_f30k_karpathy(tmp_path, 4, 1), ["train"])
    tok = load_tokenizer(tokenizer_dir)
    ds = f30k.CaptionTrainDataset(images, tok, 16, image_transform(32, True), draw_false_text=5)
    own = {tuple(encode_text(tok, c, 16)[0].tolist()) for c in images[0].captions}
    for _ in range(5):
        sample = ds[0]
        assert sample["text_ids"].shape == (6, 16)
        assert tuple(sample["text_ids"][0].tolist()) in own
        assert not any(tuple(t.tolist()) in own for t in sample["text_ids"][1:])


def test_tokenizer_errors(tmp_path):
    with pytest.raises(DataPathError, match="no such file"):
        load_tokenizer(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataPathError, match="not a tokenizer"):
        load_tokenizer(tmp_path / "empty")
    assert Path(tmp_path).is_dir()
