"""``--data-pipeline gpu`` (torchvision decode + DeiT's recipe on tensors), run on the CPU: its ops against timm's PIL
ops, its RandAugment draws against timm's, the loader against the CPU path (order, skipping, layouts, eval crops),
and the train / evaluate command lines."""

from __future__ import annotations

import importlib.util
import json
import random
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from image_fixtures import WNIDS, write_jpeg
from PIL import Image
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.data import auto_augment as timm_aa
from timm.data.auto_augment import RandAugment
from train_helpers import evaluate_with_pipeline, train_argv

from common.engine import loop
from image_cls import train
from image_cls.data.build import build_task_data
from image_cls.data.gpu_pipeline import build_gpu_loaders, decode_images, image_decoders
from image_cls.data.loaders import check_pipeline_config
from image_cls.data.tensor_augment import TENSOR_OPS, TrainImageTransform, tensor_rand_augment
from image_cls.data.transforms import build_eval_transform, build_train_transform, posterize_keeping_zero_bits
from image_cls.options import build_parser

FILL = {"fillcolor": (124, 116, 104), "resample": Image.NEAREST}


@pytest.fixture(scope="module")
def picture() -> tuple[Image.Image, torch.Tensor]:
    """A smooth random 64 x 48 RGB picture, as PIL and as a uint8 CHW tensor."""
    pixels = np.random.default_rng(0).integers(0, 256, (12, 16, 3), dtype=np.uint8)
    image = Image.fromarray(pixels).resize((64, 48), Image.BICUBIC)
    return image, torch.from_numpy(np.array(image)).permute(2, 0, 1).contiguous()


def _pil_op(name: str):
    return posterize_keeping_zero_bits if name.startswith("Posterize") else timm_aa.NAME_TO_OP[name]


@pytest.mark.parametrize(("name", "args", "max_diff"), [
    ("AutoContrast", (), 0), ("Equalize", (), 0), ("Invert", (), 0), ("PosterizeIncreasing", (2,), 0),
    ("PosterizeIncreasing", (0,), 0), ("SolarizeIncreasing", (128,), 0), ("SolarizeIncreasing", (256,), 0),
    ("SolarizeAdd", (50,), 0), ("BrightnessIncreasing", (1.5,), 0), ("SharpnessIncreasing", (0.2,), 0),
    ("SharpnessIncreasing", (1.8,), 1), ("ColorIncreasing", (1.6,), 1), ("ContrastIncreasing", (0.4,), 1),
    ("ShearX", (0.3,), 0), ("ShearY", (-0.25,), 0), ("TranslateXRel", (0.25,), 0), ("TranslateYRel", (-0.125,), 0),
    ("Rotate", (30.0,), 0),
])
def test_tensor_ops_equal_timms_pil_ops(picture, name: str, args: tuple, max_diff: int) -> None:
    """Same arguments, nearest resampling for the geometric ops (no interpolation differences): equal up to the
    rounding of PIL's integer blends."""
    image, tensor = picture
    expected = np.asarray(_pil_op(name)(image, *args, **dict(FILL))).astype(int)
    got = TENSOR_OPS[name](tensor, *args, **dict(FILL)).permute(1, 2, 0).numpy().astype(int)
    assert np.abs(got - expected).max() <= max_diff


def test_rand_augment_draws_are_timms(picture) -> None:
    """With the same seeds, the tensor RandAugment calls the same ops with the same arguments as timm's."""
    timm_ra = next(t for t in build_train_transform(48).transforms if isinstance(t, RandAugment))
    tensor_ra = tensor_rand_augment(timm_ra)
    assert [op.name for op in tensor_ra.ops] == [op.name for op in timm_ra.ops]
    assert {"Invert", "SolarizeAdd"} <= {op.name for op in tensor_ra.ops}  # timm's op set, unlike DALI's

    def recorded(ra: RandAugment, image) -> list:
        calls = []
        for op in ra.ops:
            op.aug_fn = (lambda fn, name: lambda img, *a, **k: calls.append((name, a)) or img)(op.aug_fn, op.name)
        for seed in range(40):
            random.seed(seed)
            np.random.seed(seed)
            ra(image)
        return calls

    image, tensor = picture
    timm_calls = recorded(timm_ra.__class__(list(map(_copy_op, timm_ra.ops)), timm_ra.num_layers), image)
    tensor_calls = recorded(tensor_ra, tensor)
    assert timm_calls == tensor_calls and 20 < len(timm_calls) < 60  # 2 ops x p 0.5 x 40 images


def _copy_op(op):
    import copy

    return copy.copy(op)


def test_train_image_transform_crops_flips_and_augments(picture) -> None:
    _, tensor = picture
    transform = TrainImageTransform(build_train_transform(32 + 16), 48)
    assert (transform.scale, transform.ratio, transform.flip_p) == ((0.08, 1.0), (3 / 4, 4 / 3), 0.5)
    outputs = [transform(tensor) for _ in range(8)]
    assert all(o.shape == (3, 48, 48) and o.dtype == torch.uint8 for o in outputs)
    assert len({o.sum().item() for o in outputs}) > 1  # random crops differ
    jitter = TrainImageTransform(build_train_transform(48, aa=None), 48)
    assert jitter.rand_augment is None and jitter.color_jitter is not None


def _args(root: Path, *extra: str):
    return build_parser().parse_args(["--data-path", str(root), "--input-size", "48", "--batch-size", "4",
                                      "--num-workers", "0", "--seed", "5", "--data-pipeline", "gpu", *extra])


@pytest.mark.parametrize("layout", ["folder", "tar"])
def test_train_batches_follow_the_cpu_order_and_skip_like_it(layout: str, imagenet_folder: Path,
                                                             imagenet_tar: Path) -> None:
    root = imagenet_folder if layout == "folder" else imagenet_tar
    args = _args(root, "--no-repeated-aug", "--reprob", "1.0")
    data = build_task_data(args)
    train_loader, _ = build_gpu_loaders(data.train, data.val, args)
    cpu = loop.make_loader(data.train, args, train=True)
    assert len(train_loader) == len(cpu) == 3 and train_loader.sampler is not cpu.sampler
    before = data.train_source.num_skipped
    for epoch in (0, 1):
        train_loader.sampler.set_epoch(epoch)
        cpu.sampler.set_epoch(epoch)
        batches = list(train_loader)
        assert [y.tolist() for _, y in batches] == [y.tolist() for _, y in cpu]
        for images, _ in batches:
            assert images.shape == (4, 3, 48, 48) and images.dtype == torch.float32
            assert torch.isfinite(images).all() and images.abs().max() < 10
    # the truncated and the non-image file: skipped by both pipelines in each epoch, counted once per read
    assert data.train_source.num_skipped - before == 2 * 2 * 2


def test_eval_batches_match_the_cpu_eval_transform(imagenet_folder: Path) -> None:
    args = _args(imagenet_folder)
    data = build_task_data(args, train=False)
    _, val = build_gpu_loaders(None, data.val, args)
    images, labels = next(iter(val))
    expected = torch.stack([build_eval_transform(48)(_pil(data.val, i)) for i in range(len(data.val))])
    assert labels.tolist() == [0, 0, 1, 1, 2, 2] and images.shape == (6, 3, 48, 48)
    # torchvision's antialiased bicubic on tensors vs PIL's: a few grey levels at most
    assert (images - expected).abs().mean() < 0.02 and (images - expected).abs().max() < 0.2
    mean = torch.tensor(IMAGENET_DEFAULT_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_DEFAULT_STD).view(3, 1, 1)
    assert ((images * std + mean) >= -1e-6).all()


def _pil(dataset, i: int) -> Image.Image:
    with Image.open(dataset.samples[i][0]) as image:
        return image.convert("RGB")


UNDECODABLE_JPEG = b"\xff\xd8\xff\xe0" + b"\x13" * 40 + b"\xff\xda" + b"\x00" * 40 + b"\xff\xd9"


@pytest.mark.parametrize("backend", ["torchcodec", "torchvision"])
def test_decoding_png_and_an_undecodable_jpeg(backend: str, tmp_path: Path, monkeypatch) -> None:
    if backend == "torchvision":
        monkeypatch.setitem(sys.modules, "torchcodec.decoders", None)  # import fails: the fallback
    elif importlib.util.find_spec("torchcodec") is None:
        pytest.skip("torchcodec (extra gpu-decode) is not installed")
    decoders = image_decoders()
    assert decoders[2] == backend
    jpeg = write_jpeg(tmp_path / "a.JPEG", (10, 200, 30), size=(20, 10))
    png = tmp_path / "b.png"
    Image.new("RGB", (6, 4), (1, 2, 3)).save(png)
    files = [torch.frombuffer(bytearray(b), dtype=torch.uint8)
             for b in (jpeg.read_bytes(), png.read_bytes(), UNDECODABLE_JPEG)]
    images = decode_images(files, torch.device("cpu"), decoders)
    assert images[0].shape == (3, 10, 20) and images[1].shape == (3, 4, 6) and images[2] is None
    assert images[1][:, 0, 0].tolist() == [1, 2, 3]
    with Image.open(jpeg) as reference:  # libjpeg either way: PIL's pixels
        assert torch.equal(images[0], torch.from_numpy(np.array(reference.convert("RGB"))).permute(2, 0, 1))


def test_an_undecodable_file_is_replaced_in_its_batch_and_counted(tmp_path: Path) -> None:
    for c, wnid in enumerate(WNIDS[:2]):
        for i in range(2):
            write_jpeg(tmp_path / "train" / wnid / f"{i}.JPEG", 60 + 100 * c, size=(64, 64), seed=i)
            write_jpeg(tmp_path / "val" / wnid / f"{i}.JPEG", 60 + 100 * c, size=(64, 64), seed=i)
    (tmp_path / "val" / WNIDS[1] / "bad.JPEG").write_bytes(UNDECODABLE_JPEG)  # passes the marker check
    args = _args(tmp_path)
    data = build_task_data(args, train=False)
    _, val = build_gpu_loaders(None, data.val, args)
    images, labels = next(iter(val))
    assert images.shape == (5, 3, 48, 48) and labels.tolist() == [0, 0, 1, 1, 0]  # the first image stands in
    assert data.val_source.num_skipped == 1


@pytest.mark.parametrize(("extra", "message"), [
    (("--dataset", "digits"), "ImageNet folders or tars only"),
    (("--input-size", "32"), "input-size"),
    (("--aa", "v0"), "RandAugment"),
])
def test_unsupported_settings_are_config_errors(extra: tuple[str, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_pipeline_config(_args(Path("/nonexistent"), *extra))


def test_train_and_evaluate_clis(imagenet_tar: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    train.run(train_argv(imagenet_tar, out, "--data-pipeline", "gpu"))  # DeiT's repeated augmentation included
    log = [json.loads(line) for line in (out / "log.txt").read_text().splitlines()]
    assert log[-1]["epoch"] == 0 and log[-1]["skipped_train_images"] >= 2
    logits, acc1 = {}, {}
    for pipeline in ("cpu", "gpu"):
        logits[pipeline], result = evaluate_with_pipeline(out, tmp_path, pipeline)
        assert result["n"] == 6
        acc1[pipeline] = result["acc1"]
    assert acc1["gpu"] == pytest.approx(log[-1]["test_acc1"], abs=1e-4)  # training's evaluation, same pipeline
    assert np.abs(logits["gpu"] - logits["cpu"]).max() < 0.02 * np.abs(logits["cpu"]).max()
