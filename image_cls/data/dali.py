"""NVIDIA DALI input pipeline for ImageNet folders and tars (``--data-pipeline dali``): decode + DeiT recipe on the GPU.

Needs the ``dali`` extra (``pip install nvidia-dali-cuda120``); without CUDA the same pipeline runs on DALI's CPU
backend. What it does, against the CPU path (timm ``create_transform``, image_cls/data/transforms.py):

- train: ``fn.decoders.image_random_crop`` (RandomResizedCrop area 0.08-1, ratio 3/4-4/3, decode of the crop
  window only; device "mixed" on CUDA) -> bicubic resize to ``input_size`` -> RandAugment
  (``nvidia.dali.auto_aug.rand_augment``, n=2, m=9 on an 11-bin scale, i.e. 9/10 of each op's range like timm's
  m9) -> ``crop_mirror_normalize`` (random flip, ImageNet mean/std, CHW float32). Random erasing (timm
  ``RandomErasing`` on the batch) runs on the output tensors; Mixup/CutMix stays in ``train.py`` as for the CPU path.
  RandAugment differs from timm's ``rand-m9-mstd0.5-inc1``: DALI's op set has ``identity`` instead of timm's
  ``Invert`` and ``SolarizeAdd``; the magnitude is fixed at 9 (timm draws it per op from N(9, 0.5)); a chosen op
  is always applied (timm applies each with probability 0.5). Op ranges match timm's "increasing" ops (shear 0.3,
  translate 0.45 of the size, rotate 30 deg, enhance 1 +- 0.9, posterize 8->4 bits, solarize 256->0).
  Without ``--aa``, ``--color-jitter`` is DALI's ``color_twist`` (brightness/contrast/saturation, fixed order).
- eval (training's validation and ``image_cls.evaluate --data-pipeline dali``): decode -> bicubic resize of the
  shorter side to ``input_size / eval_crop_ratio`` (not for ImageNet-C's 224 px images) -> centre crop.
- Reading (image_cls/data/encoded.py): the files of the CPU path's datasets -- folders or ``<split>.tar``,
  same class indices, same subsets -- are read by a Python ``external_source`` in DALI's worker processes
  (``--num-workers`` of them; 0 reads in the training process) and decoded by DALI. The sample order is the CPU
  path's: ``DistributedSampler(seed=--seed)`` per epoch for training, or timm's ``RepeatAugSampler`` with
  ``--repeated-aug`` (each sample once per epoch across ranks, the last partial batch dropped; a resumed run replays
  the uninterrupted run's order), a contiguous unpadded shard per rank for evaluation. Files DALI could not decode
  (unreadable, empty, not an image, cut short) are skipped and counted like the CPU path's unreadable images.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.data.random_erasing import RandomErasing
from torch.utils.data import Dataset

from common.engine.data import SkipCounter
from image_cls.data.encoded import EncodedBatches

INSTALL_HINT = "pip install nvidia-dali-cuda120 (or the project's 'dali' extra: pip install -e '.[dali]')"
RAND_AUGMENT_BINS = 11  # magnitude m of 0..10, as timm's RandAugment levels


class DaliUnavailable(ImportError):
    """The ``dali`` extra is not installed (message names the package to install)."""


def import_dali() -> Any:
    """The ``nvidia.dali`` module, or ``DaliUnavailable`` with a one-line install hint."""
    try:
        return importlib.import_module("nvidia.dali")
    except ImportError as err:
        raise DaliUnavailable(f"--data-pipeline dali needs NVIDIA DALI, which is not installed ({err}): "
                              f"{INSTALL_HINT}") from None


def _rand_augment_args(aa: str) -> tuple[int, int]:
    """(n, m) of a timm RandAugment string such as ``rand-m9-mstd0.5-inc1`` (defaults n=2, m=9)."""
    n, m = 2, 9
    for part in aa.split("-")[1:]:
        if part.startswith("mstd") or part.startswith("inc"):
            continue
        if part.startswith("m"):
            m = int(part[1:])
        elif part.startswith("n"):
            n = int(part[1:])
    return n, m


@contextlib.contextmanager
def _without_dali_deprecations() -> Iterator[None]:
    """Drop the DeprecationWarnings DALI raises about itself: its ``rand_augment`` calls its own deprecated
    ``fn.experimental`` aliases and forces those warnings on (a "default" filter), so filters cannot mute them."""
    show = warnings.showwarning

    def show_others(message, category, filename, *args, **kwargs):
        if not (issubclass(category, DeprecationWarning) and "nvidia/dali" in filename.replace("\\", "/")):
            show(message, category, filename, *args, **kwargs)

    with warnings.catch_warnings():
        warnings.showwarning = show_others
        yield


def build_pipeline(source: EncodedBatches, args: argparse.Namespace, *, device: str = "cpu", seed: int = 0,
                   num_threads: int = 2, py_workers: int = 0, eval_resize: bool = True) -> Any:
    """The DALI pipeline over ``source``'s batches: outputs ``images`` (CHW float32), ``labels``, ``skipped``.

    ``device`` "gpu" decodes with nvJPEG ("mixed") and augments on the current CUDA device; ``py_workers`` > 0
    reads the files in that many spawned worker processes (0: in this process). ``eval_resize=False``: evaluation
    crops without resizing first (ImageNet-C's 224 px images, as ``build_imagenet_c_transform``).
    """
    dali = import_dali()
    from nvidia.dali import fn, types
    from nvidia.dali.auto_aug import rand_augment

    size, train = int(args.input_size), source.train
    decode_device = "mixed" if device == "gpu" else "cpu"
    mean = [255 * v for v in IMAGENET_DEFAULT_MEAN]
    std = [255 * v for v in IMAGENET_DEFAULT_STD]
    parallel = py_workers > 0

    @dali.pipeline_def(enable_conditionals=True)
    def pipeline():
        jpegs, label, skipped = fn.external_source(
            source=source, num_outputs=3, batch=True, batch_info=True, parallel=parallel,
            dtype=[types.UINT8, types.INT32, types.INT32],
            **({"prefetch_queue_depth": max(2, py_workers)} if parallel else {}))
        if train:
            images = fn.decoders.image_random_crop(
                jpegs, device=decode_device, output_type=types.RGB, random_area=[0.08, 1.0],
                random_aspect_ratio=[3 / 4, 4 / 3], num_attempts=10)
            images = fn.resize(images, resize_x=size, resize_y=size, interp_type=types.INTERP_CUBIC)
            if args.aa:
                n, m = _rand_augment_args(args.aa)
                images = rand_augment.rand_augment(images, n=n, m=m, num_magnitude_bins=RAND_AUGMENT_BINS,
                                                   shape=(size, size), max_translate_rel=0.45)
            elif args.color_jitter:
                low, high = 1 - args.color_jitter, 1 + args.color_jitter
                images = fn.color_twist(images, brightness=fn.random.uniform(range=[low, high]),
                                        contrast=fn.random.uniform(range=[low, high]),
                                        saturation=fn.random.uniform(range=[low, high]))
            mirror = fn.random.coin_flip(probability=0.5)
        else:
            images = fn.decoders.image(jpegs, device=decode_device, output_type=types.RGB)
            if eval_resize:
                images = fn.resize(images, resize_shorter=int(size / args.eval_crop_ratio),
                                   interp_type=types.INTERP_CUBIC)
            mirror = False
        images = fn.crop_mirror_normalize(images, dtype=types.FLOAT, output_layout="CHW", crop=(size, size),
                                          mean=mean, std=std, mirror=mirror)
        return images, label, skipped

    device_id = torch.cuda.current_device() if device == "gpu" else None
    workers = {"py_num_workers": py_workers, "py_start_method": "spawn"} if parallel else {}
    with _without_dali_deprecations():
        pipe = pipeline(batch_size=source.batch_size, num_threads=num_threads, device_id=device_id, seed=seed,
                        prefetch_queue_depth=2, **workers)
        pipe.build()
    return pipe


class DaliLoader:
    """(images, targets) batches of a DALI pipeline for ``common.engine.loop``: ``len`` = batches per epoch.

    ``fit`` calls ``set_epoch`` before each training epoch; the pipeline is built on the first iteration (DALI's
    epoch 0 = that epoch) and rebuilt only when the epochs stop following each other (e.g. an interrupted
    iteration). Targets are int64; random erasing (train) is applied to the batch; files skipped by the reader
    are added to ``skipped`` (the dataset's ``SkipCounter``).
    """

    def __init__(self, source: EncodedBatches, make_pipeline: Callable[[EncodedBatches], Any], *,
                 random_erasing: RandomErasing | None = None, skipped: SkipCounter | None = None) -> None:
        self.source, self.make_pipeline = source, make_pipeline
        self.random_erasing, self.skipped = random_erasing, skipped
        self._len = len(source)
        self._epoch = source.first_epoch
        self._iterator: Any = None
        self._next_epoch: int | None = None  # the epoch the built pipeline reads next (None: rebuild)

    def __len__(self) -> int:
        return self._len

    def set_epoch(self, epoch: int) -> None:
        """Read training epoch ``epoch`` next (its sample order)."""
        self._epoch = epoch

    def _build(self) -> None:
        from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy

        self._iterator = None  # the old pipeline and its workers go first
        self.source.first_epoch = self._epoch
        self._iterator = DALIGenericIterator([self.make_pipeline(self.source)], ["images", "labels", "skipped"],
                                             last_batch_policy=LastBatchPolicy.PARTIAL, auto_reset=True)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self._next_epoch != self._epoch:
            self._build()
        self._next_epoch = None
        for outputs in self._iterator:
            images, labels = outputs[0]["images"], outputs[0]["labels"].reshape(-1).long()
            if self.skipped is not None:
                skipped = int(outputs[0]["skipped"].sum())
                if skipped:
                    self.skipped.add(skipped)
            if self.random_erasing is not None:
                images = self.random_erasing(images)
            yield images, labels
        self._epoch += 1
        self._next_epoch = self._epoch


def _pipeline_factory(args: argparse.Namespace, device: torch.device, rank: int,
                      eval_resize: bool = True) -> Callable[[EncodedBatches], Any]:
    workers = max(0, int(args.num_workers))

    def make_pipeline(source: EncodedBatches) -> Any:
        return build_pipeline(source, args, device="gpu" if device.type == "cuda" else "cpu",
                              seed=int(args.seed) + rank, num_threads=max(1, workers), py_workers=workers,
                              eval_resize=eval_resize)

    return make_pipeline


def build_eval_loader(dataset: Dataset, args: argparse.Namespace, *, batch_size: int, rank: int = 0,
                      world_size: int = 1, device: torch.device | None = None, resize: bool = True) -> DaliLoader:
    """Evaluation loader over a folder / tar dataset (``--input-size``, ``--eval-crop-ratio``, ``--num-workers``):
    this rank's contiguous shard in dataset order, like the engine's evaluation sampler."""
    source = EncodedBatches(dataset, batch_size=batch_size, train=False, rank=rank, world_size=world_size)
    return DaliLoader(source, _pipeline_factory(args, device or torch.device("cpu"), rank, resize),
                      skipped=source.files.skipped)


def build_dali_loaders(train_set: Dataset | None, val_set: Dataset, args: argparse.Namespace, *, rank: int = 0,
                       world_size: int = 1, device: torch.device | None = None
                       ) -> tuple[DaliLoader | None, DaliLoader]:
    """Train (None without ``train_set``) and val loaders over the CPU path's datasets (folders or tars).

    Runs on the GPU (mixed decode) when ``device`` is CUDA, else on DALI's CPU backend; ``--num-workers`` reader
    processes and DALI threads; the validation batch is 1.5x ``--batch-size`` like the CPU path's.
    """
    device = device or torch.device("cpu")
    train_loader = None
    if train_set is not None:
        erasing = None
        if args.reprob > 0:
            erasing = RandomErasing(args.reprob, mode=args.remode, max_count=args.recount, device=device.type)
        source = EncodedBatches(train_set, batch_size=args.batch_size, train=True, seed=int(args.seed), rank=rank,
                                world_size=world_size, repeated_aug=bool(args.repeated_aug))
        train_loader = DaliLoader(source, _pipeline_factory(args, device, rank), random_erasing=erasing,
                                  skipped=source.files.skipped)
    val_loader = build_eval_loader(val_set, args, batch_size=int(1.5 * args.batch_size), rank=rank,
                                   world_size=world_size, device=device)
    return train_loader, val_loader
