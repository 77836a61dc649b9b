"""image_cls as a ``common.task.Task``: DeiT ViT-T/S/B (± the frozen LLM block) on ImageNet, Fashion-MNIST, digits.

The DeiT recipe (facebookresearch/deit ``main.py``, kept by LM4VisualEncoding): ``--lr`` is the LR of 512 images,
scaled by the global batch (``--unscale-lr`` to use it as is); Mixup/CutMix with soft-target cross-entropy, else
label smoothing; repeated augmentation; EMA of the trainable weights. Evaluation: top-1 / top-5 / loss on the
validation split (``acc1`` selects ``best.pth``).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from common import recipe
from common.engine import distributed
from common.engine.errors import ConfigError
from common.task import AnalysisSample, Task, TaskData

log = logging.getLogger("image_cls.train")

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # what image_cls.data.transforms normalises RGB images with
IMAGENET_STD = (0.229, 0.224, 0.225)


def _normalization(source: Any) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """(mean, std) a small dataset normalises with (``data.small``), else None (ImageNet's statistics)."""
    if source is None or not hasattr(source, "mean"):
        return None
    return (source.mean,), (source.std,)


class ImageClassification(Task):
    name = "image_cls"
    best_metric = "acc1"
    best_mode = "max"
    metrics = ("acc1", "acc5", "loss")
    graft = "image_cls/models.py VisionTransformerLLM.__init__: self.llm = build_adapter(self.embed_dim, llm)"
    head_prefixes = ("norm.", "fc_norm.", "head.")  # the final norm after the block, the classifier
    lr_reference_batch = 512  # DeiT: --lr is the LR of a 512-image batch

    def add_args(self, parser: argparse.ArgumentParser) -> None:
        from image_cls.options import add_task_args

        add_task_args(parser)

    def check_args(self, args: argparse.Namespace) -> None:
        super().check_args(args)
        from image_cls.data.loaders import check_pipeline_config

        if recipe.mixup_active(args) and args.mixup_mode == "batch" and args.batch_size % 2:
            raise ConfigError(f"Mixup/CutMix need an even --batch-size, got {args.batch_size} (or set --mixup 0 "
                              "--cutmix 0)")
        for name in ("train_subset", "val_subset"):
            if getattr(args, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 0")
        try:
            check_pipeline_config(args)
        except (ValueError, ImportError) as err:  # incl. DaliUnavailable, naming the package to install
            raise ConfigError(str(err)) from None

    def build_data(self, args: argparse.Namespace, rank: int, world_size: int) -> TaskData:
        from image_cls.data.build import build_task_data
        from image_cls.data.loaders import build_train_val_loaders

        data = build_task_data(args)
        args.num_classes, args.in_chans = data.num_classes, data.in_chans
        log.info("%s on %s: %d classes, %d training / %d validation images", args.model, args.dataset,
                 data.num_classes, len(data.train), len(data.val))
        try:
            train_loader, val_loader = build_train_val_loaders(data, args, rank=rank, world_size=world_size,
                                                               device=distributed.current().device)
        except ValueError as err:  # e.g. a GPU pipeline on a dataset that is not an ImageNet folder or tar
            raise ConfigError(str(err)) from err

        def skipped() -> dict[str, int]:
            train, val = data.skipped_images()
            return {"train_images": train, "val_images": val}

        return TaskData(train=train_loader, evals={"val": val_loader}, skipped=skipped,
                        info={"num_classes": data.num_classes, "in_chans": data.in_chans, "classes": data.classes,
                              "val_set": data.val, "normalize": _normalization(data.val_source)})

    def build_model(self, args: argparse.Namespace) -> nn.Module:
        from image_cls.models import build_model

        if args.num_classes is None:
            raise ConfigError("--num-classes is not set (the data decides it; a run's config.yaml holds it)")
        return build_model(args, args.num_classes, in_chans=args.in_chans)

    def loss_fn(self, args: argparse.Namespace, data: TaskData):
        mixup_fn = recipe.build_mixup(args, args.num_classes)
        criterion = recipe.build_criterion(args, mixup_fn is not None)

        def loss(train_model: nn.Module, batch: Any) -> torch.Tensor:
            images, targets = batch
            if mixup_fn is not None:
                images, targets = mixup_fn(images, targets)
            return criterion(train_model(images), targets)

        return loss

    def evaluate(self, model: nn.Module, eval_set: Any, args: argparse.Namespace) -> dict[str, float]:
        from image_cls.evaluation import evaluate_accuracy

        return evaluate_accuracy(model, eval_set)

    def initialize(self, model: nn.Module, args: argparse.Namespace, resume: Path | None) -> nn.Module:
        if getattr(args, "finetune", None) and resume is None:
            from image_cls.checkpoints import load_finetune_weights

            load_finetune_weights(model, args.finetune)
        elif getattr(args, "finetune", None):
            log.info("resuming from %s: --finetune %s is not loaded", resume, args.finetune)
        return model

    def complete_config(self, saved: dict[str, Any], weights: Mapping[str, torch.Tensor]) -> None:
        """Runs saved before ``--num-classes`` / ``--in-chans`` existed: read them off the head and patch embed."""
        head, patch = weights.get("head.weight"), weights.get("patch_embed.proj.weight")
        if saved.get("num_classes") is None and head is not None:
            saved["num_classes"] = int(head.shape[0])
        if saved.get("in_chans") is None and patch is not None:
            saved["in_chans"] = int(patch.shape[1])

    # ---- analysis (tools.analyze) -----------------------------------------------------------------------------
    def analysis_samples(self, args: argparse.Namespace, paths: Sequence[str]) -> list[AnalysisSample]:
        """Each image through the evaluation transform (what the model sees at test time); ``display`` is the same
        crop as an (H, W, 3) array in [0, 1]. Inputs of 32 px or less are first resized to the input size."""
        import numpy as np
        from PIL import Image
        from torchvision import transforms

        from .data.transforms import build_eval_transform

        size, in_chans = int(args.input_size), int(args.in_chans or 3)
        mean, std = (IMAGENET_MEAN, IMAGENET_STD) if in_chans == 3 else ((0.5,) * in_chans, (0.5,) * in_chans)
        transform = build_eval_transform(size, float(args.eval_crop_ratio), mean, std)
        geometry = transforms.Compose(transform.transforms[:-2])  # without ToTensor + Normalize
        samples = []
        for path in paths:
            with Image.open(path) as raw:
                image = raw.convert("RGB" if in_chans == 3 else "L")
            if size <= 32 and image.size != (size, size):
                image = image.resize((size, size), Image.Resampling.BICUBIC)
            display = np.asarray(geometry(image).convert("RGB"), dtype=np.float32) / 255.0
            samples.append(AnalysisSample(name=Path(path).name, inputs=transform(image)[None], display=display))
        return samples

    def analysis_spec(self, model: nn.Module, inputs: Any) -> Any:
        from common.analysis import vit_spec

        return vit_spec(model, tuple(inputs.shape))


TASK = ImageClassification()
