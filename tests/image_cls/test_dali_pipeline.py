"""The DALI pipeline end to end on DALI's CPU backend (skipped when the ``dali`` extra is not installed)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from image_fixtures import WNIDS, write_jpeg
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch.utils.data import DataLoader, DistributedSampler
from train_helpers import evaluate_with_pipeline, train_argv

from image_cls import train
from image_cls.data.build import build_task_data
from image_cls.data.transforms import build_train_sampler
from image_cls.options import build_parser

pytest.importorskip("nvidia.dali")
from image_cls.data import dali  # noqa: E402

COLOURS = (40, 120, 200)


@pytest.fixture(scope="module")
def clean_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ImageNet folders of one colour per class, no corrupt files: 4 train / 2 val images per class."""
    root = tmp_path_factory.mktemp("dali_folder")
    for c, wnid in enumerate(WNIDS):
        for i in range(4):
            write_jpeg(root / "train" / wnid / f"{i}.JPEG", COLOURS[c], size=(80, 60), seed=i)
        for i in range(2):
            write_jpeg(root / "val" / wnid / f"v{i}.JPEG", COLOURS[c], size=(80, 60), seed=50 + i)
    return root


def _args(root: Path, *extra: str):
    return build_parser().parse_args(["--data-path", str(root), "--input-size", "48", "--batch-size", "4",
                                      "--no-repeated-aug", "--num-workers", "1", "--data-pipeline", "dali", *extra])


def test_eval_batches_are_normalised_centre_crops_in_class_order(clean_folder: Path) -> None:
    args = _args(clean_folder)
    data = build_task_data(args, train=False)
    _, val = dali.build_dali_loaders(None, data.val, args)
    batches = list(val)
    assert len(batches) == len(val) == 1
    images, labels = batches[0]
    assert images.shape == (6, 3, 48, 48) and images.dtype == torch.float32
    assert labels.dtype == torch.int64 and labels.tolist() == [0, 0, 1, 1, 2, 2]
    mean, std = torch.tensor(IMAGENET_DEFAULT_MEAN), torch.tensor(IMAGENET_DEFAULT_STD)
    for image, label in zip(images, labels, strict=True):
        expected = (COLOURS[int(label)] / 255 - mean) / std
        torch.testing.assert_close(image.mean((1, 2)), expected, atol=0.05, rtol=0)
    assert list(val)[0][1].tolist() == [0, 0, 1, 1, 2, 2]  # a second pass: same order


def test_train_batches_have_the_recipe_shapes(clean_folder: Path) -> None:
    args = _args(clean_folder, "--reprob", "1.0")
    data = build_task_data(args)
    train, _ = dali.build_dali_loaders(data.train, data.val, args)
    assert len(train) == 12 // 4
    for _ in range(2):
        batches = list(train)
        assert len(batches) == 3
        for images, labels in batches:
            assert images.shape == (4, 3, 48, 48) and images.dtype == torch.float32
            assert labels.dtype == torch.int64 and set(labels.tolist()) <= {0, 1, 2}
            assert torch.isfinite(images).all() and images.abs().max() < 10


@pytest.mark.parametrize(("layout", "repeated_aug"), [("folder", False), ("tar", False), ("folder", True)])
def test_train_labels_follow_the_cpu_order_per_rank_epoch_and_resume(layout: str, repeated_aug: bool,
                                                                    imagenet_folder: Path, imagenet_tar: Path) -> None:
    """On the fixture with a truncated and a non-image file: DALI reads what the CPU path reads, in its order."""
    root = imagenet_folder if layout == "folder" else imagenet_tar
    args = _args(root, "--aa", "none", "--color-jitter", "0", "--num-workers", "0", "--seed", "7",
                 "--repeated-aug" if repeated_aug else "--no-repeated-aug")
    data = build_task_data(args)
    for rank in range(2):
        loader, _ = dali.build_dali_loaders(data.train, data.val, args, rank=rank, world_size=2)
        sampler = (build_train_sampler(data.train, True, 2, rank, 7) if repeated_aug else
                   DistributedSampler(data.train, num_replicas=2, rank=rank, shuffle=True, seed=7))
        cpu = DataLoader(data.train, batch_size=4, drop_last=True, sampler=sampler)
        assert len(loader) == len(cpu) == 1
        for epoch in range(3):
            loader.set_epoch(epoch)
            cpu.sampler.set_epoch(epoch)
            assert [y.tolist() for _, y in loader] == [y.tolist() for _, y in cpu]
        resumed, _ = dali.build_dali_loaders(data.train, data.val, args, rank=rank, world_size=2)
        resumed.set_epoch(2)
        assert [y.tolist() for _, y in resumed] == [y.tolist() for _, y in cpu]
    assert data.train_source.num_skipped > 0  # the two corrupt files were met and counted


def test_train_and_evaluate_clis_on_the_tar_layout(imagenet_tar: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    train.run(train_argv(imagenet_tar, out, "--data-pipeline", "dali", "--no-repeated-aug", "--num-workers", "1",
                         "--input-size", "48"))
    log = [json.loads(line) for line in (out / "log.txt").read_text().splitlines()]
    assert log[-1]["epoch"] == 0 and log[-1]["skipped_train_images"] == 2
    logits, acc1 = {}, {}
    for pipeline in ("cpu", "dali"):
        logits[pipeline], result = evaluate_with_pipeline(out, tmp_path, pipeline)
        assert result["n"] == 6
        acc1[pipeline] = result["acc1"]
    assert acc1["dali"] == pytest.approx(log[-1]["test_acc1"], abs=1e-4)  # training's DALI evaluation
    # The same images in the same order; DALI's bicubic resize differs from PIL's by a little (0.5 % here).
    assert np.abs(logits["dali"] - logits["cpu"]).max() < 0.02 * np.abs(logits["cpu"]).max()
