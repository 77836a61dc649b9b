"""Command-line options of ``image_cls.train``: the engine's common flags plus DeiT's task flags.

Flag names follow facebookresearch/deit ``main.py`` where DeiT has the option (``--input-size``, ``--drop-path``,
``--aa``, ``--reprob``, ``--mixup``, ``--smoothing``, ``--repeated-aug``, ``--unscale-lr``, ``--data-path``,
``--data-set`` ...); every preset key of ``image_cls/configs`` is one of these options (YAML uses underscores).
Defaults are DeiT's; the presets hold the paper's values.
"""

from __future__ import annotations

import argparse

from common.engine import config
from common.frozen_lm import add_llm_args
from image_cls.data.imagenet import LAYOUTS
from image_cls.data.loaders import PIPELINES
from image_cls.models import LLM_POSITIONS

DATASETS = ("imagenet", "fashion_mnist", "digits")


def add_task_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the image-classification flags (model, LLM block, data, augmentation, mixup) to ``parser``."""
    b = argparse.BooleanOptionalAction
    model = parser.add_argument_group("model")
    model.add_argument("--model", default="vit_small_patch16_224_llm", help="a registered *_llm timm model")
    model.add_argument("--input-size", type=int, default=224, help="image size")
    model.add_argument("--drop", type=float, default=0.0, help="dropout rate")
    model.add_argument("--drop-path", type=float, default=0.1, help="stochastic depth rate")
    model.add_argument("--finetune", default=None, metavar="PTH",
                       help="start from these ViT weights (DeiT's --finetune: a DeiT / timm checkpoint, 'model' key "
                       "or bare): a head of another class count and the adapter start fresh, the position table is "
                       "resampled to --input-size; not loaded when the run resumes")
    model.add_argument("--num-classes", type=int, default=None,
                       help="outputs of the head: set from the data's classes (a run's config.yaml records it)")
    model.add_argument("--in-chans", type=int, default=None,
                       help="input channels: set from the data (3, or 1 for the grey demo sets)")

    llm = add_llm_args(parser)
    llm.add_argument("--llm-position", default="tail", choices=LLM_POSITIONS, help="where the block sits")

    data = parser.add_argument_group("data")
    data.add_argument("--dataset", "--data-set", dest="dataset", default="imagenet", choices=DATASETS,
                      help="imagenet: DATA_PATH/{train,val}; fashion_mnist: IDX files (DATA_PATH or the Debian "
                      "dataset-fashion-mnist folder); digits: scikit-learn's bundled digits")
    data.add_argument("--data-path", default=None, help="data set root")
    data.add_argument("--data-type", default="auto", choices=LAYOUTS,
                      help="imagenet layout: split folders, <split>.tar, or whichever exists")
    data.add_argument("--train-subset", type=int, default=0, help="train on a fixed random subset of N (0: all)")
    data.add_argument("--val-subset", type=int, default=0, help="evaluate on a fixed random subset of N (0: all)")
    data.add_argument("--data-pipeline", default="cpu", choices=PIPELINES,
                      help="cpu: timm transforms in DataLoader workers; dali: NVIDIA DALI decode + augment (the 'dali' "
                      "extra); gpu: torchvision nvJPEG decode + the same recipe on GPU tensors. "
                      "dali/gpu: ImageNet folders or tars; on the CPU when there is no CUDA")
    data.add_argument("--eval-crop-ratio", type=float, default=0.875, help="eval: resize to input/ratio, centre crop")

    aug = parser.add_argument_group("augmentation (imagenet; the grey demo sets are used as they are)")
    aug.add_argument("--color-jitter", type=float, default=0.4)
    aug.add_argument("--aa", type=config.optional_str,
                     default="rand-m9-mstd0.5-inc1", help="timm auto-augment; 'none' off")
    aug.add_argument("--train-interpolation", default="bicubic", choices=("random", "bilinear", "bicubic"))
    aug.add_argument("--reprob", type=float, default=0.25, help="random erasing probability")
    aug.add_argument("--remode", default="pixel", choices=("const", "rand", "pixel"))
    aug.add_argument("--recount", type=int, default=1)
    aug.add_argument("--repeated-aug", action=b, default=True, help="3 repeats per image (timm RepeatAugSampler)")

    config.add_mixup_args(parser)

    # --unscale-lr (DeiT: --lr x global batch / 512 unless set) comes from Task.build_parser (lr_reference_batch).
    # DeiT's defaults where the engine's differ.
    # The schedule steps once per epoch, after it, as DeiT's main.py (and LM4VisualEncoding's copy) does;
    # --sched-interval update is the per-update curve this task used before.
    parser.set_defaults(epochs=300, min_lr=1e-5, model_ema=True, model_ema_decay=0.99996, sched_interval="epoch")
    return parser


def build_parser(description: str | None = None) -> argparse.ArgumentParser:
    """The full parser of ``python -m image_cls.train`` (a fresh one per call, see ``config.parse_args``)."""
    from image_cls.task import TASK

    return TASK.build_parser(description or "Train a DeiT ViT with or without a frozen LLM block (image "
                             "classification).")
