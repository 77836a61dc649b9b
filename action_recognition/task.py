"""action_recognition as a ``common.task.Task``: VideoMAE ViT-S/B fine-tuning (± the frozen LLM block) on
Something-Something-v2, VideoMAE's ``run_class_finetuning.py`` recipe.

``--lr``, ``--min-lr`` and ``--warmup-lr`` are per 256 videos, scaled by the total batch (``--unscale-lr`` to use
them as given); layer-wise LR decay with VideoMAE's layer ids; Mixup/CutMix with soft-target cross-entropy. Every
evaluation is the full test protocol (``test_num_segment x test_num_crop`` views per video, softmax averaged per
video, merged over all ranks): ``acc1`` selects ``best.pth``.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from common.engine import loop, optim
from common.task import AnalysisSample, Task, TaskData

log = logging.getLogger("action_recognition.train")


class ActionRecognition(Task):
    name = "action_recognition"
    best_metric = "acc1"
    best_mode = "max"
    metrics = ("acc1", "acc5", "loss", "videos", "skipped_videos")
    graft = "action_recognition/models.py VideoViT.__init__: self.llm = build_adapter(embed_dim, llm)"
    head_prefixes = ("fc_norm.", "head.")  # the pooled-token norm, the classifier
    lr_reference_batch = 256  # VideoMAE: lr, min_lr and warmup_lr are per 256 videos
    lr_scaled_keys = ("lr", "min_lr", "warmup_lr")

    def add_args(self, parser: argparse.ArgumentParser) -> None:
        from action_recognition.options import add_task_args

        add_task_args(parser)

    def check_args(self, args: argparse.Namespace) -> None:
        from action_recognition.data import annotation_path
        from action_recognition.options import check_args

        check_args(args)
        for split in ("train", "val"):  # a wrong --data-path fails before the run directory is written
            annotation_path(args.data_path, split)
        super().check_args(args)

    def build_data(self, args: argparse.Namespace, rank: int, world_size: int) -> TaskData:
        from action_recognition.data import build_test_dataset, build_train_dataset
        from action_recognition.options import check_mixup_batch
        from action_recognition.train import eval_loader

        check_mixup_batch(args)  # after --total-batch-size set the per-process batch
        train_set, val_set = build_train_dataset(args), build_test_dataset(args)
        log.info("%s: %d training / %d validation videos (x %d clips each in training)", args.model, len(train_set),
                 len(val_set), args.num_sample)
        return TaskData(train=loop.make_loader(train_set, args, train=True), evals={"val": eval_loader(val_set, args)},
                        skipped=lambda: {"train_videos": train_set.num_skipped},
                        info={"train": len(train_set), "val": len(val_set)})

    def build_model(self, args: argparse.Namespace) -> nn.Module:
        from action_recognition.models import build_model

        return build_model(args)

    def loss_fn(self, args: argparse.Namespace, data: TaskData):
        from action_recognition.train import make_loss_fn

        return make_loss_fn(args)

    def evaluate(self, model: nn.Module, eval_set: Any, args: argparse.Namespace) -> dict[str, float]:
        from action_recognition.train import make_evaluate_fn

        return make_evaluate_fn(args.nb_classes, args.batch_size * args.num_sample)(model, eval_set)

    def build_optimizer(self, args: argparse.Namespace, model: nn.Module) -> torch.optim.Optimizer:
        """AdamW with VideoMAE's layer-wise LR decay (``--layer-decay``; layer ids of ``VideoViT.layer_id``)."""
        return optim.build_optimizer(args, model, layer_id_fn=model.layer_id, num_layers=model.num_layers)

    def initialize(self, model: nn.Module, args: argparse.Namespace, resume: Path | None) -> nn.Module:
        """``--finetune`` (VideoMAE pretrained or fine-tuned weights) unless the run resumes."""
        from action_recognition.checkpoints import load_videomae_checkpoint

        if args.finetune and resume is None:
            load_videomae_checkpoint(model, args.finetune, args.model_key, args.lm4ve_policy)
        elif args.finetune:
            log.info("resuming from %s: --finetune %s is not loaded", resume, args.finetune)
        return model

    # ---- analysis (tools.analyze) -----------------------------------------------------------------------------
    def analysis_samples(self, args: argparse.Namespace, paths: Sequence[str]) -> list[AnalysisSample]:
        """Videos (any container PyAV reads): the first test view (segment starts, first crop) as the evaluation
        decodes it; drawn per frame (tubelet grid)."""
        from action_recognition.data import VideoReader, multiview_clips, multiview_frame_indices

        samples = []
        for path in map(Path, paths):
            with VideoReader(path) as reader:
                frames = reader.get_frames(multiview_frame_indices(len(reader), args.num_frames, 1))
            clip = multiview_clips(frames, args.short_side_size, 1, 1)  # (1, 3, T, S, S)
            display = _denormalize(clip[0]).permute(1, 2, 3, 0).numpy()  # (T, S, S, 3) in [0, 1]
            samples.append(AnalysisSample(name=path.name, inputs=clip, display=display))
        return samples

    def analysis_spec(self, model: nn.Module, inputs: Any) -> Any:
        from common.analysis import video_spec

        return video_spec(model, tuple(inputs.shape))


def _denormalize(clip: torch.Tensor) -> torch.Tensor:
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    mean = torch.tensor(IMAGENET_DEFAULT_MEAN)[:, None, None, None]
    std = torch.tensor(IMAGENET_DEFAULT_STD)[:, None, None, None]
    return (clip * std + mean).clamp(0, 1)


TASK = ActionRecognition()
