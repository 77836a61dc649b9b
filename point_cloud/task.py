"""point_cloud as a ``common.task.Task``: Point-BERT fine-tuning (± the frozen LLM block) on ScanObjectNN and
ModelNet40, as LM4VisualEncoding's ``pointcloud_classification`` runs it.

Training draws Point-BERT's FPS pool and random subset on the device; evaluation is the overall accuracy on the
test split (``acc``, as upstream validates), optionally with test-time voting (``--vote``: ``acc_vote``).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from common.engine import distributed, loop
from common.engine.errors import DataPathError
from common.task import AnalysisSample, Task, TaskData

log = logging.getLogger("point_cloud.train")


class PointCloudClassification(Task):
    name = "point_cloud"
    best_metric = "acc"
    best_mode = "max"
    metrics = ("acc", "acc_vote", "acc_vote_mean")
    graft = "point_cloud/models.py PointTransformer.__init__: self.llm = build_adapter(cfg.trans_dim, llm)"
    head_prefixes = ("norm.", "cls_head_finetune.")  # the final norm after the block, the classifier

    def add_args(self, parser: argparse.ArgumentParser) -> None:
        from point_cloud.train import add_task_args

        add_task_args(parser)

    def check_args(self, args: argparse.Namespace) -> None:
        from point_cloud.train import check_args

        check_args(args)  # the data path first: a preset's missing path is the first thing a new user meets
        super().check_args(args)

    def build_data(self, args: argparse.Namespace, rank: int, world_size: int) -> TaskData:
        from point_cloud.train import build_split

        train_set, test_set = build_split(args, "train"), build_split(args, "test")
        return TaskData(train=loop.make_loader(train_set, args, train=True),
                        evals={"test": loop.make_loader(test_set, args, train=False)},
                        info={"train": len(train_set), "test": len(test_set)})

    def build_model(self, args: argparse.Namespace) -> nn.Module:
        from point_cloud.models import build_model

        return build_model(args)

    def loss_fn(self, args: argparse.Namespace, data: TaskData):
        from point_cloud.train import fps_pool, make_loss_fn

        return make_loss_fn(args, fps_pool(args))

    def evaluate(self, model: nn.Module, eval_set: Any, args: argparse.Namespace) -> dict[str, float]:
        from point_cloud.train import fps_pool, make_evaluate_fn

        return make_evaluate_fn(args, fps_pool(args))(model, eval_set)

    def build_optimizer(self, args: argparse.Namespace, model: nn.Module) -> torch.optim.Optimizer:
        from point_cloud.optim import build_optimizer

        return build_optimizer(args, model)

    def initialize(self, model: nn.Module, args: argparse.Namespace, resume: Path | None) -> nn.Module:
        """``--ckpts`` (pretrained Point-BERT or a fine-tuned file) unless resuming; SyncBatchNorm on GPUs."""
        from point_cloud.checkpoints import load_point_bert_checkpoint

        if args.ckpts and resume is None:
            load_point_bert_checkpoint(model, args.ckpts, args.lm4ve_policy)
        elif args.ckpts:
            log.info("resuming from %s: --ckpts %s is not loaded", resume, args.ckpts)
        info = distributed.current()
        if args.sync_bn and info.distributed and info.device.type == "cuda":
            log.info("using SyncBatchNorm")
            return nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return model

    # ---- analysis (tools.analyze) -----------------------------------------------------------------------------
    def analysis_samples(self, args: argparse.Namespace, paths: Sequence[str]) -> list[AnalysisSample]:
        """Point clouds from ModelNet40 shape files (``x,y,z,nx,ny,nz`` rows, ``.txt``) or ``.npy`` arrays (N, >=3):
        xyz normalised to the unit sphere (``pc_normalize``) and reduced to ``--npoints`` by FPS as the test input
        is; the tokens are drawn at their group centres."""
        from point_cloud.data.modelnet import pc_normalize, read_shape_txt
        from point_cloud.data.sampling import eval_input

        samples = []
        for path in map(Path, paths):
            if path.suffix == ".npy":
                try:
                    array = np.load(path, allow_pickle=False)
                except (OSError, ValueError) as err:
                    raise DataPathError(f"{path}: cannot read a point array ({err})") from err
            else:
                array = read_shape_txt(path)
            if array.ndim != 2 or array.shape[1] < 3 or len(array) < args.npoints:
                raise DataPathError(f"{path}: expected (N >= {args.npoints}, 3+) points, got {array.shape}")
            points = torch.from_numpy(pc_normalize(np.asarray(array[:, :3], dtype=np.float32)))[None]
            points = eval_input(points, args.npoints)
            samples.append(AnalysisSample(name=path.name, inputs=points, display=points[0].numpy()))
        return samples

    def analysis_spec(self, model: nn.Module, inputs: Any) -> Any:
        from common.analysis import GroupCentres, spec_from_parts

        last = model.blocks.blocks[-1]
        return spec_from_parts(last, GroupCentres(model.group_divider), getattr(model, "llm", None),
                               num_prefix_tokens=1, cls_index=0, encoder_attention=last.attn)


TASK = PointCloudClassification()
