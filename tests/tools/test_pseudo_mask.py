"""Pseudo-mask mIoU on synthetic masks with known answers, and ImageNet-S mask reading."""

import numpy as np
import pytest
from PIL import Image

from tools.analysis.images import decode_mask, find_mask, foreground_and_ignore, load_mask, load_sample
from tools.analysis.pseudo_mask import best_threshold_iou, downsample_mask, iou, pseudo_mask_miou
from tools.analyze import expand_inputs


def test_downsample_majority_and_ignore():
    fg = np.zeros((8, 8), bool)
    fg[:4, :4] = True  # token (0, 0) fully foreground
    fg[:4, 4:6] = True  # token (0, 1) half foreground -> not more than half -> background
    fg[4:, :3] = True  # token (1, 0): 3/4 foreground
    ignore = np.zeros((8, 8), bool)
    ignore[4:, 4:] = True  # token (1, 1) all ignore -> invalid
    target, valid = downsample_mask(fg, (2, 2), ignore)
    assert target.tolist() == [[True, False], [True, False]]
    assert valid.tolist() == [[True, True], [True, False]]


def test_downsample_counts_foreground_among_non_ignored_pixels():
    fg = np.zeros((4, 4), bool)
    ignore = np.zeros((4, 4), bool)
    fg[0, :] = True  # 4 of 16 pixels
    ignore[1:3, :] = True  # 8 ignored: 4 of the 8 valid pixels are foreground -> not a majority
    target, valid = downsample_mask(fg, (1, 1), ignore)
    assert not target[0, 0] and not valid[0, 0]  # exactly half ignored -> left out
    ignore[2, :] = False  # 4 ignored of 16 -> valid; foreground 4 of 12 valid pixels -> background
    target, valid = downsample_mask(fg, (1, 1), ignore)
    assert not target[0, 0] and valid[0, 0]
    fg[3, :3] = True  # 7 of 12 valid pixels -> foreground
    target, valid = downsample_mask(fg, (1, 1), ignore)
    assert target[0, 0] and valid[0, 0]


def test_best_threshold_on_a_perfectly_separable_map():
    target = np.zeros((4, 4), bool)
    target[1:3, 1:3] = True
    activation = np.where(target, 0.8, np.linspace(0.0, 0.45, 16).reshape(4, 4))
    score, threshold = best_threshold_iou(activation, target)
    assert score == 1.0 and threshold == 0.5  # t in 0.5..0.7 all perfect; the lowest is kept


def test_miou_known_answer():
    perfect_target = np.array([[True, False], [False, False]])
    perfect_map = np.array([[1.0, 0.0], [0.2, 0.0]])
    # target [1,1,0,0]; activation [1, .05, .5, 0]: t<=0.4 -> {0,2} IoU 1/3, t>=0.5 -> {0} IoU 1/2
    half_target = np.array([[True, True, False, False]])
    half_map = np.array([[1.0, 0.05, 0.5, 0.0]])
    first = pseudo_mask_miou(np.stack([perfect_map]), [perfect_target])
    assert first.miou == 1.0
    second = pseudo_mask_miou(half_map[None], [half_target])
    assert second.ious == [0.5] and second.thresholds == [0.5]
    assert best_threshold_iou(half_map, half_target, thresholds=(0.1, 0.2))[0] == pytest.approx(1 / 3)
    combined = pseudo_mask_miou([perfect_map.reshape(1, 4), half_map], [perfect_target.reshape(1, 4), half_target])
    assert combined.miou == pytest.approx(0.75) and combined.n_images == 2


def test_iou_respects_valid_tokens():
    prediction = np.array([True, True, False])
    target = np.array([True, False, False])
    assert iou(prediction, target) == 0.5
    assert iou(prediction, target, valid=np.array([True, False, True])) == 1.0


def _imagenet_s_mask(labels: np.ndarray) -> Image.Image:
    """RGB PNG with class id = R + 256 * G (ImageNet-S encoding)."""
    rgb = np.zeros((*labels.shape, 3), np.uint8)
    rgb[..., 0] = labels % 256
    rgb[..., 1] = labels // 256
    return Image.fromarray(rgb)


def test_imagenet_s_layout_masks_and_geometry(tmp_path):
    labels = np.zeros((40, 60), np.int64)
    labels[10:30, 20:40] = 300  # class 300 -> R=44, G=1
    labels[:, :4] = 1000  # ignore band
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 60, 3), np.uint8))
    beside = tmp_path / "validation" / "n01443537"
    beside.mkdir(parents=True)
    image.save(beside / "a.JPEG")
    _imagenet_s_mask(labels).save(beside / "a.png")
    official = tmp_path / "validation-segmentation" / "n01443537"
    official.mkdir(parents=True)
    image.save(beside / "b.JPEG")
    _imagenet_s_mask(labels).save(official / "b.png")

    decoded = decode_mask(beside / "a.png")
    assert decoded[20, 30] == 300 and decoded[0, 0] == 1000 and decoded[0, 10] == 0
    fg, ignore = foreground_and_ignore(decoded)
    assert fg.sum() == 400 and ignore.sum() == 160
    assert find_mask(beside / "a.JPEG") == beside / "a.png"
    assert find_mask(beside / "b.JPEG") == official / "b.png"
    assert expand_inputs([tmp_path / "validation"]) == [beside / "a.JPEG", beside / "b.JPEG"]  # masks not inputs

    sample = load_sample(beside / "a.JPEG", size=40, crop_pct=1.0)
    assert sample.tensor.shape == (3, 40, 40) and sample.display.shape == (40, 40, 3)
    # short side 40 stays, the 60-wide image is centre-cropped to columns 10..50: object at columns 10..30
    assert sample.foreground[10:30, 10:30].all() and sample.foreground.sum() == 400
    assert not sample.ignore.any()  # the ignore band was cropped away
    foreground, ignore = load_mask(beside / "a.JPEG", 40, 1.0)  # what tools.analyze pairs with a task's sample
    assert np.array_equal(foreground, sample.foreground) and np.array_equal(ignore, sample.ignore)
