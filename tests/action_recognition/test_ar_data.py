"""SSv2 CSVs in VideoMAE's layout, the datasets built on them, and unusable videos skipped, logged and counted."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest
import torch
from ar_fixtures import CODECS, read_index, write_video

from action_recognition.data import (
    DataPathError,
    SSv2TestDataset,
    SSv2TrainDataset,
    TrainAugment,
    collate_test,
    multiview_frame_indices,
    read_annotation_csv,
)
from action_recognition.data.video import VideoReader


def test_csv_paths_are_resolved_against_the_data_root(tmp_path, ssv2_root):
    records = read_annotation_csv(ssv2_root["lists"] / "train.csv", ssv2_root["videos"], num_classes=3)
    assert len(records) == 6 and all(r.path.is_file() and r.path.parent == ssv2_root["videos"] for r in records)
    assert [r.label for r in records] == [0, 1, 2, 0, 1, 2]
    spaced = tmp_path / "with space" / "a b.webm"
    spaced.parent.mkdir()
    shutil.copy(records[0].path, spaced)
    csv = tmp_path / "val.csv"
    csv.write_text(f"{spaced} 2\n\n{records[1].path.name} 1\n")  # absolute path with a space; a relative one
    parsed = read_annotation_csv(csv, ssv2_root["videos"])
    assert [(r.path, r.label) for r in parsed] == [(spaced, 2), (records[1].path, 1)]


@pytest.mark.parametrize(("text", "message"), [
    ("a.webm\n", r"val.csv:1: expected '<path> <label>'"),
    ("a.webm 1\nb.webm x\n", r"val.csv:2: expected"),
    ("a.webm 7\n", r"val.csv:1: label 7 outside \[0, 3\)"),
    ("\n", "lists no videos"),
    ("gone.webm 1\n", "none of the first 1 videos"),
])
def test_malformed_csvs_name_file_and_line(tmp_path, text, message):
    (tmp_path / "val.csv").write_text(text)
    with pytest.raises(DataPathError, match=message):
        read_annotation_csv(tmp_path / "val.csv", num_classes=3)
    with pytest.raises(DataPathError, match="annotation file not found"):
        read_annotation_csv(tmp_path / "train.csv")


def test_train_items_hold_num_sample_augmented_clips_of_one_video(ssv2_root):
    records = read_annotation_csv(ssv2_root["lists"] / "train.csv", ssv2_root["videos"])
    dataset = SSv2TrainDataset(records, TrainAugment(32), num_frames=8, num_sample=2)
    torch.manual_seed(0)
    np.random.seed(0)
    clips, label = dataset[1]
    assert clips.shape == (2, 3, 8, 32, 32) and label == 1
    assert not torch.equal(clips[0], clips[1])  # two augmentations of the same decode


def test_test_items_hold_all_views_of_the_videomae_indices(ssv2_root):
    records = read_annotation_csv(ssv2_root["lists"] / "val.csv", ssv2_root["videos"])
    dataset = SSv2TestDataset(records, num_frames=8, test_num_segment=2, test_num_crop=3, short_side_size=32)
    views, label, index = dataset[3]
    assert views.shape == (6, 3, 8, 32, 32) and (label, index) == (records[3].label, 3)
    with VideoReader(records[3].path) as reader:
        wanted = multiview_frame_indices(len(reader), 8, 2)
        assert [read_index(f) for f in reader.get_frames(wanted)] == wanted
    views2, labels, ids = collate_test([dataset[0], None, dataset[2]])
    assert views2.shape == (2, 6, 3, 8, 32, 32) and ids.tolist() == [0, 2]
    assert labels.tolist() == [records[0].label, records[2].label]
    empty, labels, ids = collate_test([None])
    assert empty.numel() == 0 and labels.numel() == ids.numel() == 0


def test_unusable_videos_are_skipped_logged_and_counted(tmp_path, ssv2_root, caplog):
    good = read_annotation_csv(ssv2_root["lists"] / "train.csv", ssv2_root["videos"])
    broken = tmp_path / "broken.webm"
    broken.write_bytes(b"\x1a\x45\xdf\xa3 definitely not a video" * 10)
    ext, codec = CODECS[-1]
    short = write_video(tmp_path / f"short.{ext}", codec, 3)
    records = [type(good[0])(broken, 0), good[1], type(good[0])(short, 2), good[3]]
    train = SSv2TrainDataset(records, TrainAugment(32, auto_augment=None), num_frames=8, num_sample=1)
    with caplog.at_level(logging.WARNING, logger="action_recognition.data.ssv2"):
        clips, label = train[0]  # broken -> the next video
        assert label == good[1].label and clips.shape == (1, 3, 8, 32, 32)
        assert train[2][1] == good[3].label  # 3 frames < 8: too short, next one
    assert train.num_skipped == 2
    assert any("broken.webm" in r.message for r in caplog.records)
    assert any("short." in r.message and "only 3 frames" in r.message for r in caplog.records)
    test = SSv2TestDataset(records, num_frames=8, short_side_size=32)
    assert test[0] is None and test[2] is None and test[1] is not None and test.num_skipped == 2
    keep_short = SSv2TestDataset(records, num_frames=8, short_side_size=32, min_frames=1)
    assert keep_short[2][0].shape == (6, 3, 8, 32, 32)  # upstream keeps short videos (frames repeat)
    with pytest.raises(DataPathError, match="consecutive unusable videos"):
        SSv2TrainDataset([records[0], records[2]], TrainAugment(32), num_frames=8)[0]
