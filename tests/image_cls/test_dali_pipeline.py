"""The DALI pipeline end to end on DALI's CPU backend (skipped when the ``dali`` extra is not installed)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from image_fixtures import WNIDS, write_jpeg
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from image_cls.data.build import build_task_data
from image_cls.options import build_parser

pytest.importorskip("nvidia.dali")
from image_cls.data import dali  # noqa: E402

COLOURS = (40, 120, 200)


@pytest.fixture(scope="module")
def clean_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ImageNet folders without corrupt files (DALI does not skip them): 4 train / 2 val images per class."""
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


def test_shards_read_each_sample_once_per_epoch_and_ranks_agree_on_length(clean_folder: Path) -> None:
    args = _args(clean_folder, "--aa", "none", "--color-jitter", "0")
    files, _ = dali.file_list(build_task_data(args).train_source)
    files = files[:11]
    ids = list(range(len(files)))  # the label of each file is its own index
    loaders = [dali.DaliLoader(dali.build_pipeline(files, ids, args, train=True, batch_size=2, shard_id=rank,
                                                   num_shards=2, seed=rank, num_threads=1),
                               train=True, num_samples=len(files), world_size=2, batch_size=2)
               for rank in range(2)]
    assert [len(loader) for loader in loaders] == [2, 2]  # shards of 5 and 6: (11 // 2) // 2 on both ranks
    orders = []
    for _ in range(3):
        seen = [label for loader in loaders for _, labels in loader for label in labels.tolist()]
        assert len(seen) == 8 and len(set(seen)) == 8
        orders.append(seen)
    assert orders[0] != orders[1] or orders[1] != orders[2]  # reshuffled across epochs
