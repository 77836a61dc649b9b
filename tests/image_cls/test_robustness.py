"""ImageNet-C / -A / -R / -Sketch on PIL-written fixtures, top-k accuracy with class subsets, and mCE."""

from __future__ import annotations

import math

import pytest
import torch
from image_fixtures import write_jpeg
from torch.utils.data import DataLoader

from image_cls.data import (
    IMAGENET_C_CORRUPTIONS,
    DataPathError,
    build_eval_transform,
    build_imagenet_c_transform,
    build_robustness_sets,
    imagenet_1k_wnids,
    imagenet_c_sets,
    imagenet_subset_set,
    imagenet_subset_wnids,
)
from image_cls.metrics import ALEXNET_CORRUPTION_ERROR, corruption_error, imagenet_c_summary, topk_accuracy

C_WNIDS = ("n01440764", "n01443537")  # classes 0 and 1 of ImageNet-1k
A_WNIDS = ("n01498041", "n01531178", "n01534433")  # ImageNet-A classes; 1k indices 6, 11, 13
SKETCH_WNIDS = ("n01440764", "n15075141")  # first and last of the 1000


@pytest.fixture(scope="module")
def imagenet_c(tmp_path_factory):
    """15 corruptions x 5 severities x 2 classes; class 0 dark, class 1 bright except at severities 4-5."""
    root = tmp_path_factory.mktemp("imagenet_c")
    for corruption in IMAGENET_C_CORRUPTIONS:
        for severity in range(1, 6):
            write_jpeg(root / corruption / str(severity) / C_WNIDS[0] / "a.JPEG", 30, size=(24, 24))
            write_jpeg(root / corruption / str(severity) / C_WNIDS[1] / "b.JPEG", 220 if severity <= 3 else 30,
                       size=(24, 24))
    return root


def brightness_classifier(images: torch.Tensor) -> torch.Tensor:
    """1000-way logits: class 1 if the (normalised) image is bright, else class 0; all others far below."""
    m = images.mean(dim=(1, 2, 3))
    logits = torch.full((len(images), 1000), -100.0)
    logits[:, 0], logits[:, 1] = -m, m
    return logits


def evaluate(eval_set) -> dict[str, float]:
    images, targets = map(torch.cat, zip(*DataLoader(eval_set.dataset, batch_size=8)))
    return topk_accuracy(brightness_classifier(images), targets, logit_indices=eval_set.logit_indices)


def test_imagenet_c_end_to_end(imagenet_c):
    sets = build_robustness_sets("imagenet-c", imagenet_c, build_eval_transform(16), build_imagenet_c_transform(16))
    assert len(sets) == 75 and {(s.corruption, s.severity) for s in sets} == {
        (c, s) for c in IMAGENET_C_CORRUPTIONS for s in range(1, 6)}
    assert sets[0].dataset.targets == [0, 1] and sets[0].logit_indices is None
    acc1 = {(s.corruption, s.severity): evaluate(s)["acc1"] for s in sets}
    assert acc1[("fog", 3)] == 100.0 and acc1[("fog", 4)] == 50.0
    summary = imagenet_c_summary(acc1)
    assert summary["acc1"] == pytest.approx(80.0) and summary["num_corruptions"] == 15
    # mCE as LM4VisualEncoding main.py computes it: mean over corruptions of (100 - acc_c) / (100 * AlexNet_c).
    expected = sum(20.0 / (100.0 * e) for e in ALEXNET_CORRUPTION_ERROR.values()) / 15 * 100
    assert summary["mce"] == pytest.approx(expected)
    assert summary["per_corruption"]["brightness"]["ce"] == pytest.approx(100 * 20.0 / 56.4592)


def test_imagenet_c_missing_folder_is_named(tmp_path, imagenet_c):
    write_jpeg(tmp_path / "fog" / "1" / C_WNIDS[0] / "a.JPEG", 30)
    with pytest.raises(DataPathError, match="missing 74 .*gaussian_noise/1"):
        imagenet_c_sets(tmp_path, build_imagenet_c_transform(16))
    assert len(imagenet_c_sets(imagenet_c, build_imagenet_c_transform(16), corruptions=["fog"])) == 5


@pytest.mark.parametrize("name", ["imagenet-a", "imagenet-r"])
def test_200_class_subsets_are_scored_200_way(tmp_path, name, caplog):
    for i, wnid in enumerate(A_WNIDS):
        write_jpeg(tmp_path / wnid / f"{i}.JPEG", 100, size=(20, 20))
    with caplog.at_level("WARNING"):
        (eval_set,) = build_robustness_sets(name, tmp_path, build_eval_transform(16), build_imagenet_c_transform(16))
    assert "197 of its 200 classes have no folder" in caplog.text
    # The official rule (LM4VE main.py, Hendrycks' eval scripts), from timm's copy of the set's 200 wnids, not from
    # the folder: all_wnids (sorted 1000) -> mask = [wnid in the 200]; output[:, mask]; label = rank among the 200.
    official = imagenet_subset_wnids(name)
    mask = torch.tensor([w in official for w in imagenet_1k_wnids()])
    labels = [sorted(official).index(w) for w in A_WNIDS]
    assert eval_set.logit_indices.shape == (200,) and eval_set.dataset.targets == labels
    logits = torch.randn(5, 1000)
    torch.testing.assert_close(logits.index_select(1, eval_set.logit_indices), logits[:, mask])
    # Scored over the 200 columns: a class of the set without a folder still takes the prediction.
    absent = next(i for i, w in enumerate(imagenet_1k_wnids()) if w in official and w not in A_WNIDS)
    logits = torch.zeros(3, 1000)
    logits[:, 500 if 500 not in eval_set.logit_indices else 0] = 50.0  # outside the 200: never counts
    logits[0, 11] = logits[1, absent] = logits[2, 13] = 10.0
    targets = torch.tensor([labels[1], labels[1], labels[2]])
    assert topk_accuracy(logits, targets, topk=(1,), logit_indices=eval_set.logit_indices) == {
        "acc1": pytest.approx(200 / 3)}


def test_the_200_class_lists(tmp_path):
    all_wnids = imagenet_1k_wnids()
    assert len(all_wnids) == 1000 and all_wnids == sorted(all_wnids) and all_wnids[:2] == list(C_WNIDS)
    a, r = imagenet_subset_wnids("imagenet-a"), imagenet_subset_wnids("imagenet-r")
    assert len(set(a)) == len(set(r)) == 200 and set(a) | set(r) <= set(all_wnids) and set(a) != set(r)
    assert [all_wnids.index(w) for w in A_WNIDS] == [6, 11, 13] and set(A_WNIDS) <= set(a) & set(r)
    write_jpeg(tmp_path / "n01440764" / "x.JPEG", 100)  # tench: in ImageNet-1k, not in ImageNet-A
    with pytest.raises(DataPathError, match="not imagenet-a classes.*n01440764"):
        imagenet_subset_set("imagenet-a", tmp_path, build_eval_transform(48))


def test_sketch_is_1000_way_with_imagenet_indices(tmp_path):
    for i, wnid in enumerate(SKETCH_WNIDS):
        write_jpeg(tmp_path / "sketch" / wnid / f"{i}.JPEG", 200, size=(70, 60))
    (eval_set,) = build_robustness_sets("imagenet-sketch", tmp_path / "sketch", build_eval_transform(48),
                                        build_imagenet_c_transform(16))
    assert eval_set.logit_indices is None and eval_set.dataset.targets == [0, 999]
    image, _ = eval_set.dataset[1]
    assert image.shape == (3, 48, 48)
    with pytest.raises(ValueError, match="unknown robustness set"):
        build_robustness_sets("imagenet-v2", tmp_path, build_eval_transform(16), build_imagenet_c_transform(16))


def test_topk_accuracy_numbers():
    logits = torch.tensor([[5.0, 4, 3, 2, 1, 0], [0, 1, 2, 3, 4, 5], [0, 9, 1, 2, 3, 4]])
    # row 0: target 0 is first; row 1: target 0 ranks 6th; row 2: target 1 is first
    assert topk_accuracy(logits, torch.tensor([0, 0, 1])) == {"acc1": pytest.approx(200 / 3),
                                                              "acc5": pytest.approx(200 / 3)}
    # targets ranked 5th, 5th and 6th
    assert topk_accuracy(logits, torch.tensor([4, 1, 0]), topk=(1, 5)) == {"acc1": 0.0, "acc5": pytest.approx(200 / 3)}
    with pytest.raises(ValueError, match="empty"):
        topk_accuracy(logits[:0], torch.tensor([], dtype=torch.long))


def test_mce_definition_and_errors():
    assert ALEXNET_CORRUPTION_ERROR["gaussian_noise"] == 0.886428 and len(ALEXNET_CORRUPTION_ERROR) == 15
    assert set(ALEXNET_CORRUPTION_ERROR) == set(IMAGENET_C_CORRUPTIONS)
    assert corruption_error(100 - 88.6428, 0.886428) == pytest.approx(1.0)  # AlexNet itself has CE 1
    full = {(c, s): 50.0 for c in IMAGENET_C_CORRUPTIONS for s in range(1, 6)}
    assert math.isclose(imagenet_c_summary(full)["mce"],
                        100 * sum(0.5 / e for e in ALEXNET_CORRUPTION_ERROR.values()) / 15)
    with pytest.raises(ValueError, match="severities"):
        imagenet_c_summary({("fog", 1): 50.0})
    with pytest.raises(ValueError, match="no AlexNet error"):
        imagenet_c_summary({("speckle_noise", s): 50.0 for s in range(1, 6)})
