"""ImageNet readers (folder and tar) end to end on PIL-written fixtures, corrupt-image skipping, clear path errors,
and DeiT's transforms / Mixup / samplers."""

from __future__ import annotations

import argparse
import logging
import tarfile
from pathlib import Path

import pytest
import torch
from image_fixtures import WNIDS, write_jpeg
from PIL import Image
from timm.data import Mixup
from timm.data.auto_augment import RandAugment
from timm.data.random_erasing import RandomErasing
from torch.utils.data import DataLoader
from torchvision import transforms

from image_cls.data import (
    DataPathError,
    ImageFolderSkipping,
    ImageTarDataset,
    build_eval_transform,
    build_imagenet_dataset,
    build_mixup,
    build_train_sampler,
    build_train_transform,
    build_train_val,
    resolve_layout,
)

EVAL = build_eval_transform(48)
N_TRAIN_FILES = 3 * 4 + 2  # 4 images per class + a truncated JPEG + a non-image


@pytest.mark.parametrize("layout", ["folder", "tar"])
def test_read_end_to_end_and_skip_corrupt(request, layout, caplog):
    root = request.getfixturevalue(f"imagenet_{layout}")
    train, val, classes = build_train_val(root, EVAL, EVAL, layout=layout)
    assert isinstance(train, ImageFolderSkipping if layout == "folder" else ImageTarDataset)
    assert classes == list(WNIDS) and train.class_to_idx == {w: i for i, w in enumerate(WNIDS)}
    assert (len(train), len(val)) == (N_TRAIN_FILES, 6)
    with caplog.at_level(logging.WARNING, logger="image_cls.data.imagenet"):
        items = [train[i] for i in range(len(train))]
    assert train.num_skipped == 2
    assert sum("skipping unreadable image" in r.getMessage() for r in caplog.records) == 2
    assert any("zz_truncated.JPEG" in r.getMessage() for r in caplog.records)
    assert all(image.shape == (3, 48, 48) for image, _ in items)
    # A corrupt file yields the next readable sample: the truncated one (end of class 0) gives class 1's first image.
    labels = [label for _, label in items]
    assert labels == [0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2]
    assert [label for _, label in (val[i] for i in range(len(val)))] == [0, 0, 1, 1, 2, 2]
    # Images are dark (class 0) to bright (class 2): the pixels really come from the files.
    means = [float(image.mean()) for image, _ in items]
    assert means[0] < means[5] < means[10]


def test_tar_and_folder_give_the_same_samples(imagenet_folder, imagenet_tar):
    folder = build_imagenet_dataset(imagenet_folder, "train", EVAL, layout="folder")
    tar = build_imagenet_dataset(imagenet_tar, "train", EVAL, layout="tar")
    assert [n.split("/", 1)[1] for n in tar.names] == [
        str(Path(p).relative_to(imagenet_folder / "train")) for p, _ in folder.samples]
    for i in (0, 6, 13):
        torch.testing.assert_close(tar[i][0], folder[i][0])
        assert tar[i][1] == folder[i][1]


@pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning")
def test_tar_with_dataloader_workers_counts_skips_in_the_main_process(imagenet_tar):
    dataset = build_imagenet_dataset(imagenet_tar, "train", EVAL, layout="tar")
    first = dataset[0][0]  # the main process opens the tar before the workers fork: they must open their own
    loader = DataLoader(dataset, batch_size=4, num_workers=2, shuffle=False)
    images, labels = map(torch.cat, zip(*loader))
    assert labels.tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2]
    assert dataset.num_skipped == 2
    torch.testing.assert_close(images[0], first)
    torch.testing.assert_close(dataset[13][0], images[13])  # the main process's handle still reads correctly


def test_auto_layout_and_path_errors(tmp_path, imagenet_folder, imagenet_tar):
    assert resolve_layout(imagenet_folder, "train") == imagenet_folder / "train"
    assert resolve_layout(imagenet_tar, "val") == imagenet_tar / "val.tar"
    with pytest.raises(DataPathError, match="no such directory"):
        resolve_layout(tmp_path / "missing", "train")
    with pytest.raises(DataPathError, match=r"expected .*train/<wnid>/<image> or .*train\.tar"):
        resolve_layout(tmp_path, "train")
    with pytest.raises(DataPathError, match="expected .*train.tar"):
        resolve_layout(imagenet_folder, "train", layout="tar")
    with pytest.raises(DataPathError, match="layout must be one of"):
        resolve_layout(imagenet_folder, "train", layout="zip")


def test_mis_structured_folders_are_clear_errors(tmp_path):
    (tmp_path / "flat" / "train").mkdir(parents=True)
    write_jpeg(tmp_path / "flat" / "train" / "img.JPEG", 100)  # images without class folders
    with pytest.raises(DataPathError, match="no class folders"):
        build_imagenet_dataset(tmp_path / "flat", "train")
    write_jpeg(tmp_path / "empty" / "train" / WNIDS[0] / "a.JPEG", 100)
    (tmp_path / "empty" / "train" / WNIDS[1]).mkdir()
    with pytest.raises(DataPathError, match=f"no valid file for the classes {WNIDS[1]}"):
        build_imagenet_dataset(tmp_path / "empty", "train")
    write_jpeg(tmp_path / "ok" / "train" / WNIDS[0] / "a.JPEG", 100)
    write_jpeg(tmp_path / "ok" / "val" / "n99999999" / "b.JPEG", 100)
    with pytest.raises(DataPathError, match="not among the model's classes.*n99999999"):
        build_train_val(tmp_path / "ok", EVAL, EVAL)


def test_mis_structured_tars_are_clear_errors(tmp_path):
    image = write_jpeg(tmp_path / "x.JPEG", 100)
    with tarfile.open(tmp_path / "flat.tar", "w") as tar:
        tar.add(image, arcname="train/x.JPEG")  # one '/' only: not <split>/<wnid>/<file>
    with pytest.raises(DataPathError, match="no image members named <split>/<wnid>/<file>"):
        ImageTarDataset(tmp_path / "flat.tar")
    (tmp_path / "gz").mkdir()
    with tarfile.open(tmp_path / "gz" / "train.tar", "w:gz") as tar:
        tar.add(image, arcname=f"train/{WNIDS[0]}/x.JPEG")
    with pytest.raises(DataPathError, match="not an uncompressed tar"):
        build_imagenet_dataset(tmp_path / "gz", "train")


def test_a_broken_data_set_stops_with_an_error(tmp_path):
    for i in range(3):
        (tmp_path / "bad" / WNIDS[0]).mkdir(parents=True, exist_ok=True)
        (tmp_path / "bad" / WNIDS[0] / f"{i}.JPEG").write_bytes(b"garbage")
    dataset = ImageFolderSkipping(tmp_path / "bad")
    with pytest.raises(DataPathError, match="consecutive unreadable images"):
        dataset[0]


def test_deit_train_and_eval_transforms():
    image = Image.new("RGB", (80, 60), (120, 30, 200))
    train = build_train_transform(48)
    kinds = [type(t) for t in train.transforms]
    assert RandAugment in kinds and RandomErasing in kinds
    erasing = next(t for t in train.transforms if isinstance(t, RandomErasing))
    assert (erasing.probability, erasing.mode) == (0.25, "pixel")
    rand_aug = next(t for t in train.transforms if isinstance(t, RandAugment))
    assert rand_aug.num_layers == 2 and all(op.magnitude == 9 for op in rand_aug.ops)
    assert train(image).shape == (3, 48, 48)
    assert isinstance(build_train_transform(32).transforms[0], transforms.RandomCrop)  # DeiT: small inputs
    resize, crop = EVAL.transforms[:2]
    assert (resize.size, resize.interpolation, crop.size) == (54, transforms.InterpolationMode.BICUBIC, (48, 48))
    assert build_eval_transform(224).transforms[0].size == 256
    assert EVAL(image).shape == (3, 48, 48)


def test_rand_augment_posterize_at_full_magnitude_gives_black_not_an_error():
    """m9 with mstd 0.5 reaches magnitude 10 (0 bits kept) in ~2 % of draws; Pillow >= 13 refuses 0 bits."""
    rand_aug = next(t for t in build_train_transform(48).transforms if isinstance(t, RandAugment))
    posterize = next(op for op in rand_aug.ops if op.name == "PosterizeIncreasing")
    posterize.prob, posterize.magnitude, posterize.magnitude_std = 1.0, 10, 0
    out = posterize(Image.new("RGB", (8, 8), (200, 120, 60)))
    assert out.mode == "RGB" and out.getextrema() == ((0, 0),) * 3
    posterize.magnitude = 5  # 4 - int(5 / 10 * 4) = 2 bits kept
    assert posterize(Image.new("RGB", (8, 8), (200, 120, 60))).getpixel((0, 0)) == (192, 64, 0)


def test_mixup_cutmix_from_the_recipe():
    args = argparse.Namespace(mixup=0.8, cutmix=1.0, cutmix_minmax=None, mixup_prob=1.0, mixup_switch_prob=0.5,
                              mixup_mode="batch", smoothing=0.1)
    mixup = build_mixup(args, num_classes=5)
    assert isinstance(mixup, Mixup) and (mixup.mixup_alpha, mixup.cutmix_alpha, mixup.label_smoothing) == (0.8, 1, 0.1)
    x, y = mixup(torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 3]))
    assert y.shape == (4, 5) and torch.allclose(y.sum(1), torch.ones(4))
    assert build_mixup(argparse.Namespace(**{**vars(args), "mixup": 0.0, "cutmix": 0.0}), 5) is None


def test_repeated_augmentation_sampler():
    dataset = list(range(12))
    sampler = build_train_sampler(dataset, repeated_aug=True)
    sampler.set_epoch(3)
    order = list(sampler)
    assert len(order) == 12 and all(order[i] == order[i + 1] == order[i + 2] for i in range(0, 12, 3))
    # Across 3 processes each sees the same 4 images: the 3 augmented copies of an image go to different GPUs.
    ranks = [list(build_train_sampler(dataset, True, num_replicas=3, rank=r)) for r in range(3)]
    assert ranks[0] == ranks[1] == ranks[2] and len(set(ranks[0])) == 4
    plain = build_train_sampler(dataset, repeated_aug=False, seed=1)
    first = list(plain)
    assert sorted(first) == dataset and list(plain) == first
    plain.set_epoch(1)
    assert list(plain) != first
