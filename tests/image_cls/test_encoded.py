"""The encoded-file readers of the GPU pipelines (``EncodedFiles``, DALI's ``EncodedBatches``): order, sharding,
layouts and skipping; runs without DALI."""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from common.engine import loop
from image_cls.data.build import build_task_data
from image_cls.data.encoded import EncodedBatches, encoded_image_problem
from image_cls.data.transforms import build_train_sampler
from image_cls.options import build_parser


def _args(root: Path, *extra: str):
    return build_parser().parse_args(["--data-path", str(root), "--batch-size", "4", "--no-repeated-aug",
                                      "--num-workers", "0", "--seed", "3", *extra])


def _encode(format: str, size: tuple[int, int] = (24, 16), **save) -> bytes:
    buffer = io.BytesIO()
    pixels = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, format=format, **save)
    return buffer.getvalue()


def _epoch(source: EncodedBatches, epoch: int = 0) -> list[tuple[list[bytes], list[int], list[int]]]:
    batches, iteration = [], 0
    while True:
        try:
            encoded, labels, skipped = source(SimpleNamespace(iteration=iteration, epoch_idx=epoch))
        except StopIteration:
            return batches
        batches.append(([e.tobytes() for e in encoded], [int(x[0]) for x in labels], [int(x[0]) for x in skipped]))
        iteration += 1


@pytest.mark.parametrize("format", ["JPEG", "PNG", "BMP", "TIFF", "WEBP", "PPM"])
def test_complete_images_pass(format: str) -> None:
    assert encoded_image_problem(_encode(format)) is None


def test_progressive_jpeg_and_trailing_bytes_pass() -> None:
    assert encoded_image_problem(_encode("JPEG", progressive=True)) is None
    assert encoded_image_problem(_encode("JPEG") + b"\x00" * 100) is None


@pytest.mark.parametrize("format", ["JPEG", "PNG"])
def test_every_truncation_of_a_jpeg_or_png_is_caught(format: str) -> None:
    data = _encode(format, progressive=True) if format == "JPEG" else _encode(format)
    caught = [encoded_image_problem(data[:cut]) is not None for cut in range(len(data))]
    assert all(caught), f"missed cuts: {[c for c, ok in enumerate(caught) if not ok][:5]}"


def test_empty_and_non_image_files_are_caught() -> None:
    assert encoded_image_problem(b"") == "empty file"
    assert "not an image" in encoded_image_problem(b"<html>404 Not Found</html>")
    assert "not an image" in encoded_image_problem(_encode("GIF"))  # DALI has no GIF decoder


@pytest.mark.parametrize("world", [1, 2])
def test_train_order_is_the_cpu_loaders_for_seed_epoch_and_rank(imagenet_folder: Path, world: int,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    args = _args(imagenet_folder)
    data = build_task_data(args)
    for rank in range(world):
        monkeypatch.setattr("common.engine.distributed.get_world_size", lambda w=world: w)
        monkeypatch.setattr("common.engine.distributed.get_rank", lambda r=rank: r)
        cpu = loop.make_loader(data.train, args, train=True)
        source = EncodedBatches(data.train, batch_size=4, train=True, seed=3, rank=rank, world_size=world)
        assert len(source) == len(cpu)
        for epoch in (0, 1, 5):
            cpu.sampler.set_epoch(epoch)
            cpu_labels = [label.tolist() for _, label in cpu]
            assert [labels for _, labels, _ in _epoch(source, epoch)] == cpu_labels


def test_seed_and_first_epoch_set_the_order(imagenet_folder: Path) -> None:
    data = build_task_data(_args(imagenet_folder))
    files = {seed: [b for batch, _, _ in _epoch(EncodedBatches(data.train, batch_size=4, train=True, seed=seed))
                    for b in batch] for seed in (0, 1)}
    assert files[0] != files[1]
    resumed = EncodedBatches(data.train, batch_size=4, train=True, first_epoch=2)
    assert _epoch(resumed, 0) == _epoch(EncodedBatches(data.train, batch_size=4, train=True), 2)


def test_unreadable_files_are_skipped_counted_and_replaced_as_on_the_cpu_path(imagenet_folder: Path) -> None:
    data = build_task_data(_args(imagenet_folder))
    source = EncodedBatches(data.train, batch_size=1, train=False)
    cpu_labels = [data.train[i][1] for i in range(len(data.train))]
    batches = _epoch(source)
    assert [labels[0] for _, labels, _ in batches] == cpu_labels
    assert sum(skipped[0] for _, _, skipped in batches) == data.train_source.num_skipped == 2
    assert all(encoded_image_problem(encoded[0]) is None for encoded, _, _ in batches)


def test_tar_and_folder_give_the_same_files(imagenet_folder: Path, imagenet_tar: Path) -> None:
    def val_epoch(root: Path):
        return _epoch(EncodedBatches(build_task_data(_args(root), train=False).val, batch_size=4, train=False))

    folder, tar = val_epoch(imagenet_folder), val_epoch(imagenet_tar)
    assert folder == tar and [len(b[0]) for b in folder] == [4, 2]  # eval keeps the partial last batch


def test_eval_shards_cover_the_set_once(imagenet_folder: Path) -> None:
    val = build_task_data(_args(imagenet_folder), train=False).val
    shards = [EncodedBatches(val, batch_size=2, train=False, rank=r, world_size=4) for r in range(4)]
    labels = [label for shard in shards for _, batch, _ in _epoch(shard) for label in batch]
    assert labels == [val[i][1] for i in range(len(val))]


def test_subset_and_pickled_copy(imagenet_tar: Path) -> None:
    data = build_task_data(_args(imagenet_tar, "--train-subset", "5"))
    source = EncodedBatches(data.train, batch_size=5, train=True)
    assert len(source) == 1
    copy = pickle.loads(pickle.dumps(source))  # what DALI's spawned workers get
    assert _epoch(copy) == _epoch(source)
    assert sorted(_epoch(source)[0][1]) == sorted(data.train[i][1] for i in range(5))


def test_non_imagenet_dataset_is_a_clear_error() -> None:
    data = build_task_data(build_parser().parse_args(["--dataset", "digits", "--input-size", "8"]))
    with pytest.raises(ValueError, match="ImageNet folders or tars only"):
        EncodedBatches(data.train, batch_size=4, train=True)


def test_repeated_augmentation_order_is_the_cpu_loaders(imagenet_folder: Path) -> None:
    args = _args(imagenet_folder, "--repeated-aug")
    data = build_task_data(args)
    for rank in range(2):
        cpu = loop.make_loader(data.train, args, train=True,
                               sampler=build_train_sampler(data.train, True, 2, rank, args.seed))
        source = EncodedBatches(data.train, batch_size=4, train=True, seed=3, rank=rank, world_size=2,
                                repeated_aug=True)
        for epoch in (0, 4):
            cpu.sampler.set_epoch(epoch)
            assert [labels for _, labels, _ in _epoch(source, epoch)] == [y.tolist() for _, y in cpu]
