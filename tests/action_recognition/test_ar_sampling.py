"""Frame indices equal VideoMAE's formulas (ssv2.py loadvideo_decord, restated below); test views and the training
transform do what VideoMAE's do (crop offsets, temporal views, one RandAugment draw / crop / erase box per clip,
no flip)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from PIL import Image
from timm.data import Mixup
from timm.data.auto_augment import rand_augment_transform

from action_recognition.data.sampling import multiview_frame_indices, temporal_view, train_frame_indices
from action_recognition.data.transforms import (
    ConsistentRandAugment,
    CubeErasing,
    TrainAugment,
    mix_clips,
    multiview_clips,
    random_resized_crop,
)


def videomae_train_indices(n, segments, rng):
    """VideoMAE ssv2.py, mode 'train' (decord's len(vr) = n)."""
    average_duration = n // segments
    if average_duration > 0:
        return list(np.multiply(list(range(segments)), average_duration) + rng.randint(average_duration,
                                                                                      size=segments))
    if n > segments:
        return list(np.sort(rng.randint(n, size=segments)))
    return list(np.zeros((segments,)))


def videomae_test_indices(n, segments, test_num_segment):
    """VideoMAE ssv2.py, mode 'test'."""
    tick = n / float(segments)
    index = list(np.array([int(tick / 2.0 + tick * x) for x in range(segments)] +
                          [int(tick * x) for x in range(segments)]))
    while len(index) < segments * test_num_segment:
        index.append(index[-1])
    return list(np.sort(np.array(index)))


@pytest.mark.parametrize("n", [1, 7, 15, 16, 17, 31, 32, 48, 101])
def test_train_indices_equal_videomae(n):
    for seed in range(3):
        ours = train_frame_indices(n, 16, np.random.RandomState(seed))
        theirs = videomae_train_indices(n, 16, np.random.RandomState(seed))
        assert ours == [int(v) for v in theirs] and len(ours) == 16
        assert all(0 <= i < n for i in ours) and ours == sorted(ours)


def test_train_indices_use_numpys_global_state_by_default():
    np.random.seed(5)
    ours = train_frame_indices(40, 16)
    assert ours == [int(v) for v in videomae_train_indices(40, 16, np.random.RandomState(5))]


@pytest.mark.parametrize("n", [1, 9, 16, 23, 32, 50])
def test_test_indices_equal_videomae_and_split_into_starts_and_midpoints(n):
    index = multiview_frame_indices(n, 16, 2)
    assert index == [int(v) for v in videomae_test_indices(n, 16, 2)] and len(index) == 32
    tick = n / 16
    assert temporal_view(index, 0) == [int(tick * s) for s in range(16)]
    assert temporal_view(index, 1) == [int(tick / 2 + tick * s) for s in range(16)]
    with pytest.raises(ValueError, match="1 or 2"):
        multiview_frame_indices(n, 16, 3)


def test_test_views_take_every_other_frame_and_three_crops_along_the_long_side():
    t2, h, w = 8, 32, 44  # short side already 32: no resize; crops start at int(k * (44 - 32) / 2) = 0, 6, 12
    frames = np.zeros((t2, h, w, 3), np.uint8)
    frames[..., 0] = np.arange(w, dtype=np.uint8)[None, None, :]
    frames[..., 1] = (np.arange(t2, dtype=np.uint8) * 10)[:, None, None]
    views = multiview_clips(frames, 32, num_segment=2, num_crop=3)
    assert views.shape == (6, 3, 4, 32, 32)
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    raw = (views * std.view(1, 3, 1, 1, 1) + mean.view(1, 3, 1, 1, 1)) * 255
    for v in range(6):
        segment, crop = divmod(v, 3)
        assert raw[v, 0, 0, 0, 0].round().item() == [0, 6, 12][crop]
        assert raw[v, 1, :, 0, 0].round().tolist() == [10.0 * f for f in range(segment, t2, 2)]
    tall = multiview_clips(np.zeros((4, 50, 40, 3), np.uint8), 32, num_segment=1, num_crop=3)
    assert tall.shape == (3, 3, 2, 32, 32)  # resized to 40 x 32 (long side truncated), crops along the height


def test_rand_augment_applies_one_draw_to_every_frame():
    rng = np.random.RandomState(0)
    a, b = (Image.fromarray(rng.randint(0, 255, (32, 32, 3), dtype=np.uint8)) for _ in range(2))
    augment = ConsistentRandAugment("rand-m7-n4-mstd0.5-inc1", 32, "bicubic")
    for seed in range(4):
        random.seed(seed)
        np.random.seed(seed)
        out = augment([a, b, a])
        assert np.array_equal(np.asarray(out[0]), np.asarray(out[2]))
    # the per-image timm transform draws anew for every frame (what the replay avoids)
    per_image = rand_augment_transform("rand-m7-n4-mstd0.5-inc1", {"translate_const": 14})
    random.seed(1)
    np.random.seed(1)
    differs = [not np.array_equal(np.asarray(per_image(a)), np.asarray(per_image(a))) for _ in range(5)]
    assert any(differs)


def test_crop_and_erase_use_one_box_for_the_whole_clip_and_never_flip():
    torch.manual_seed(0)
    clip = torch.arange(48, dtype=torch.float32).repeat(3, 4, 40, 1)  # value = column index, same in every frame
    cropped = random_resized_crop(clip, 32)
    assert cropped.shape == (3, 4, 32, 32) and torch.equal(cropped[:, :1].expand_as(cropped), cropped)
    random.seed(0)
    erased = CubeErasing(1.0)(torch.zeros(3, 4, 32, 32))
    box = erased != 0
    assert box.any() and torch.equal(box[:, :1].expand_as(box), box)  # same pixels in every frame and channel
    assert not torch.equal(erased[:, 0], erased[:, 1])  # fresh noise per frame
    augment = TrainAugment(32, auto_augment=None, reprob=0.0)
    frames = np.zeros((4, 40, 48, 3), np.uint8)
    frames[:, :, :24] = 255  # bright left half
    for seed in range(20):  # a flip would put the bright half on the right
        torch.manual_seed(seed)
        out = augment(frames)
        assert out.shape == (3, 4, 32, 32)
        assert out[0, :, :, 0].mean() >= out[0, :, :, -1].mean()


def test_cutmix_box_covers_the_same_pixels_in_every_frame():
    mixup = Mixup(mixup_alpha=0.0, cutmix_alpha=1.0, prob=1.0, label_smoothing=0.1, num_classes=3)
    clips = torch.stack([torch.zeros(3, 4, 16, 16), torch.ones(3, 4, 16, 16)])
    np.random.seed(3)
    mixed, targets = mix_clips(mixup, clips.clone(), torch.tensor([0, 1]))
    changed = mixed[0] != 0
    assert changed.any() and torch.equal(changed[:, :1].expand_as(changed), changed)
    assert targets.shape == (2, 3) and torch.allclose(targets.sum(1), torch.ones(2))
