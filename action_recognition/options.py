"""Command-line options of ``action_recognition.train`` / ``evaluate``: the engine's common flags plus VideoMAE's.

Flag names follow MCG-NJU/VideoMAE ``run_class_finetuning.py`` with dashes (``--num-sample``, ``--tubelet-size``,
``--short-side-size``, ``--test-num-segment``, ``--test-num-crop``, ``--finetune``, ``--model-key``, ``--aa``,
``--reprob``, ``--mixup``, ...); every preset key of ``action_recognition/configs`` is one of these options (YAML
uses underscores). Defaults are VideoMAE's SSv2 ones; the presets hold the paper's values.
"""

from __future__ import annotations

import argparse

from common import recipe
from common.engine import config
from common.engine.errors import ConfigError
from common.frozen_lm import add_llm_args
from common.frozen_lm.lm4ve import add_lm4ve_args

from .data.sampling import MAX_TEST_SEGMENTS
from .models import ARCHS, SSV2_CLASSES


def add_task_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the SSv2 / VideoMAE / LLM flags to ``parser`` (which holds ``config.add_common_args``)."""
    b = argparse.BooleanOptionalAction
    data = parser.add_argument_group("data (Something-Something-v2)")
    data.add_argument("--data-path", default=None, help="folder holding train.csv and val.csv ('<path> <label>' lines)")
    data.add_argument("--data-root", default=None,
                      help="folder the CSVs' relative video paths are resolved against (default: --data-path)")
    data.add_argument("--nb-classes", type=int, default=SSV2_CLASSES)
    data.add_argument("--num-frames", type=int, default=16, help="frames per clip (= TSN segments)")
    data.add_argument("--input-size", type=int, default=224, help="training crop size")
    data.add_argument("--short-side-size", type=int, default=224, help="test: short side resized to this, crops of it")
    data.add_argument("--test-num-segment", type=int, default=2, choices=range(1, MAX_TEST_SEGMENTS + 1),
                      help="temporal test views (segment starts, midpoints)")
    data.add_argument("--test-num-crop", type=int, default=3, help="spatial test crops along the long side")
    data.add_argument("--min-video-frames", type=int, default=None,
                      help="videos with fewer frames are skipped (default: --num-frames; 1 keeps them, as upstream)")
    data.add_argument("--num-sample", type=int, default=2, help="augmented clips per loaded video (repeated aug)")
    data.add_argument("--eval-batch-size", type=int, default=None, help="videos per evaluation batch (default: "
                      "--batch-size); each brings test-num-segment x test-num-crop clips")

    model = parser.add_argument_group("model (VideoMAE fine-tuning ViT)")
    model.add_argument("--model", default="vit_base_patch16_224", choices=sorted(ARCHS))
    model.add_argument("--embed-dim", type=int, default=None, help="override the model's width (small test models)")
    model.add_argument("--depth", type=int, default=None, help="override the model's depth")
    model.add_argument("--num-heads", type=int, default=None, help="override the model's heads")
    model.add_argument("--patch-size", type=int, default=None, help="override the model's patch size")
    model.add_argument("--tubelet-size", type=int, default=2)
    model.add_argument("--drop", type=float, default=0.0, help="dropout after the embedding and in the blocks")
    model.add_argument("--attn-drop-rate", type=float, default=0.0)
    model.add_argument("--drop-path", type=float, default=0.1, help="stochastic depth, linear 0 .. this")
    model.add_argument("--fc-drop-rate", type=float, default=0.0, help="dropout before the head")
    model.add_argument("--init-scale", type=float, default=0.001, help="head weight and bias scale at init")
    model.add_argument("--use-checkpoint", action=b, default=False, help="activation checkpointing of the ViT blocks")
    model.add_argument("--finetune", default=None, metavar="PTH",
                       help="VideoMAE pretrained (videomae_ssv2_vit{s,b}.pth) or fine-tuned checkpoint to start from")
    model.add_argument("--model-key", default="model|module", help="where the weights sit in --finetune")
    add_lm4ve_args(model, default="verify")  # an LM4VE file's LLaMA block must be --llm-path's (layer 15 officially)

    add_llm_args(parser, layers_help="block indices, consecutive (LM4VE's video code: 15; the paper: -1, the last)")

    aug = parser.add_argument_group("augmentation")
    aug.add_argument("--aa", type=config.optional_str,
                     default="rand-m7-n4-mstd0.5-inc1", help="timm RandAugment; 'none' off")
    aug.add_argument("--train-interpolation", default="bicubic", choices=("random", "bilinear", "bicubic"))
    aug.add_argument("--reprob", type=float, default=0.25, help="random erasing probability")
    aug.add_argument("--remode", default="pixel", choices=("const", "rand", "pixel"))
    aug.add_argument("--recount", type=int, default=1)

    config.add_mixup_args(parser)

    # --total-batch-size (videos per update over all processes) is the engine's; --unscale-lr (lr, min_lr and
    # warmup_lr x total batch / 256 unless set) comes from Task.build_parser (ActionRecognition.lr_reference_batch).
    # VideoMAE's SSv2 defaults where the engine's differ.
    parser.set_defaults(epochs=30, lr=1e-3, layer_decay=0.75, warmup_epochs=5.0, warmup_lr=1e-6, min_lr=1e-6,
                        weight_decay=0.05, batch_size=8)
    return parser


def build_parser(description: str = "Fine-tune VideoMAE (± a frozen LLM block) on Something-Something-v2.",
                 ) -> argparse.ArgumentParser:
    """The full parser (a fresh one per call, see ``config.parse_args``): ``action_recognition.task``'s."""
    from action_recognition.task import TASK

    return TASK.build_parser(description)


def check_args(args: argparse.Namespace) -> None:
    """Refuse option values that cannot work, before any data or checkpoint is read."""
    for name in ("num_frames", "input_size", "short_side_size", "test_num_crop", "num_sample", "nb_classes",
                 "tubelet_size"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.short_side_size != args.input_size:
        raise ConfigError(f"--short-side-size {args.short_side_size} must equal --input-size {args.input_size}: the "
                          "test crops are short-side squares fed to the same model")
    if args.num_frames % args.tubelet_size:
        raise ConfigError(f"--num-frames {args.num_frames} is not a multiple of --tubelet-size {args.tubelet_size}")
    for name in ("eval_batch_size", "total_batch_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {value}")


def check_mixup_batch(args: argparse.Namespace) -> None:
    """timm's Mixup pairs clip i with clip B - 1 - i: the per-process clip count must be even."""
    if recipe.mixup_active(args) and (args.batch_size * args.num_sample) % 2:
        raise ConfigError(f"Mixup/CutMix need an even number of clips per batch, got --batch-size {args.batch_size} "
                          f"x --num-sample {args.num_sample}")
