"""Fine-tune Point-BERT (± a frozen LLM block) on ScanObjectNN or ModelNet40.

    python -m point_cloud.train --config point_cloud/configs/scanobjectnn_hardest_llama.yaml \\
        --data-path data/ScanObjectNN --ckpts checkpoints/Point-BERT.pth --llm-path /ckpt/llama-7b \\
        --output-dir runs/point_cloud/scanobjectnn_hardest_llama
    tools/dist_train.sh point_cloud.train --config ...        # 4 GPUs x 8 = the paper's batch of 32

Writes ``OUTPUT_DIR/{config.yaml, log.txt, checkpoint.pth, best.pth}``; ``log.txt`` has one JSON line per epoch
with ``test_acc`` (overall accuracy, %, on the test split as upstream validates) and ``best_acc``.
"""

from __future__ import annotations

import argparse
import logging
import os

import torch
from torch import nn

from common.engine import distributed, loop, runner
from common.engine.errors import ConfigError
from common.frozen_lm import add_llm_args
from common.frozen_lm.lm4ve import add_lm4ve_args
from point_cloud.data import DATASETS, DataPathError, build_dataset, fps_pool_size, num_classes
from point_cloud.data.modelnet import CACHE_POINTS
from point_cloud.data.sampling import eval_input, train_input, vote_logits
from point_cloud.metrics import AccuracyCounter, batch_accuracy, point_bert_loss
from point_cloud.models import PointTransformer, build_model

log = logging.getLogger(__name__)


def add_task_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Data, model, LLM, loss and evaluation flags of this task (on top of ``config.add_common_args``)."""
    b = argparse.BooleanOptionalAction
    data = parser.add_argument_group("data")
    data.add_argument("--dataset", default="hardest", choices=sorted(DATASETS),
                      help="ScanObjectNN objectbg (OBJ_BG) / objectonly (OBJ_ONLY) / hardest (PB_T50_RS), modelnet40")
    data.add_argument("--data-path", default=None,
                      help="ScanObjectNN folder (with main_split/, main_split_nobg/) or modelnet40_normal_resampled/")
    data.add_argument("--npoints", type=int, default=1024, help="input points per cloud (1024 / 4096 / 8192)")
    data.add_argument("--fps-pool", type=int, default=None,
                      help="training FPS pool before the random subset (default: Point-BERT's 1200/2400/4800/8192)")
    data.add_argument("--cache-points", type=int, default=CACHE_POINTS, help="ModelNet40 FPS cache points per shape")

    model = parser.add_argument_group("model (Point-BERT PointTransformer)")
    model.add_argument("--trans-dim", type=int, default=384)
    model.add_argument("--depth", type=int, default=12)
    model.add_argument("--num-heads", type=int, default=6)
    model.add_argument("--drop-path", type=float, default=0.1, help="stochastic depth, linear 0 .. this")
    model.add_argument("--cls-dim", type=int, default=40, help="logits (40 for every upstream config)")
    model.add_argument("--num-group", type=int, default=64, help="FPS centres (64 / 256 / 512 for 1k / 4k / 8k)")
    model.add_argument("--group-size", type=int, default=32, help="kNN points per group")
    model.add_argument("--encoder-dims", type=int, default=256, help="group token width of the mini-PointNet")
    model.add_argument("--ckpts", default=None, metavar="PTH",
                       help="Point-BERT.pth (pretrained) or a fine-tuned Point-BERT/LM4VE checkpoint to start from")
    model.add_argument("--sync-bn", action=b, default=False, help="SyncBatchNorm across GPUs (LM4VE SLURM script)")
    add_lm4ve_args(model, default="file")  # an LM4VE ckpt-best.pth in --ckpts: its LLaMA block replaces --llm-path's

    llm = add_llm_args(parser)
    llm.add_argument("--adapter-lr", type=float, default=None,
                     help="absolute LR of the adapter (llm.*): 2.5e-4 official code, 5e-5 paper; unset: base rules")
    llm.add_argument("--adapter-weight-decay", type=float, default=0.0, help="weight decay of the adapter group")

    loss = parser.add_argument_group("loss and evaluation")
    loss.add_argument("--label-smoothing", type=float, default=0.0, help="Point-BERT's smoothing eps (0.2 if on)")
    loss.add_argument("--vote", action=b, default=False, help="also report test-time voting accuracy (acc_vote)")
    loss.add_argument("--vote-times", type=int, default=10, help="random subsets averaged per vote")
    loss.add_argument("--vote-repeats", type=int, default=1,
                      help="independent vote runs; acc_vote is the best (upstream test: 9), acc_vote_mean the mean")
    # LM4VE's timm CosineLRScheduler runs over groups with their own LR: warm-up start and floor are absolute
    # (1e-6 for every group); --lr-bounds scaled multiplies them by each group's LR multiplier (this task before).
    parser.set_defaults(lr_bounds="absolute")
    return parser


def build_parser(description: str = __doc__.splitlines()[0]) -> argparse.ArgumentParser:
    """The common engine flags plus this task's (``point_cloud.task``; upstream total_bs is the engine's
    ``--total-batch-size``)."""
    from point_cloud.task import TASK

    return TASK.build_parser(description)


def fps_pool(args: argparse.Namespace) -> int:
    """The training FPS pool of ``--npoints`` / ``--fps-pool`` (Point-BERT's 1200/2400/4800/8192 by default)."""
    try:
        return fps_pool_size(args.npoints, args.fps_pool)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def check_args(args: argparse.Namespace) -> int:
    """Validate the task options before any data is read; returns the training FPS pool size."""
    for name in ("npoints", "num_group", "group_size", "vote_times", "vote_repeats", "cls_dim"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.group_size > args.npoints or args.num_group > args.npoints:
        raise ConfigError(f"--num-group {args.num_group} / --group-size {args.group_size} exceed --npoints "
                          f"{args.npoints}")
    if args.cls_dim < num_classes(args.dataset):
        raise ConfigError(f"--cls-dim {args.cls_dim} is below the {num_classes(args.dataset)} classes of "
                          f"{args.dataset}")
    if not args.data_path or not os.path.isdir(args.data_path):
        raise DataPathError(f"data path not found: {args.data_path}" if args.data_path else
                            f"--data-path is not set (the {args.dataset} data folder)")
    if args.layer_decay not in (None, 1.0):
        raise ConfigError("--layer-decay is not part of the Point-BERT recipe (no layer ids in this task)")
    return fps_pool(args)


def build_split(args: argparse.Namespace, split: str):
    """``split`` of ``args.dataset``; the main process builds a missing ModelNet40 cache, the others wait for it."""
    kwargs = dict(cache_points=args.cache_points, seed=0)
    if distributed.is_main_process():
        try:
            dataset = build_dataset(args.dataset, args.data_path, split, build_missing=True, **kwargs)
        finally:
            distributed.barrier()  # release the other ranks even when this one fails (they then fail too)
    else:
        distributed.barrier()
        dataset = build_dataset(args.dataset, args.data_path, split, build_missing=False, **kwargs)
    available = dataset[0][0].shape[0]
    if available < args.npoints:
        raise DataPathError(f"{args.dataset} {split} clouds have {available} points, fewer than --npoints "
                            f"{args.npoints}")
    return dataset


def create_model(args: argparse.Namespace) -> PointTransformer:
    """``build_model`` with LLM-spec and LLM-checkpoint problems turned into one-line CLI errors."""
    return loop.create_model(build_model, args)


def make_loss_fn(args: argparse.Namespace, fps_pool: int):
    """``loss_fn(model, batch)``: Point-BERT's training sampling and augmentation on the device, then the loss."""

    def loss_fn(model: nn.Module, batch) -> dict[str, torch.Tensor]:
        points, labels = batch
        logits = model(train_input(points, args.npoints, fps_pool))
        loss = point_bert_loss(logits.float(), labels, args.label_smoothing)
        return {"loss": loss, "acc": batch_accuracy(logits.detach(), labels)}

    return loss_fn


def make_evaluate_fn(args: argparse.Namespace, fps_pool: int, count: bool = False):
    """``evaluate_fn(model, loader) -> {"acc": OA %[, "acc_vote": ..., "acc_vote_mean": ...]}`` over all ranks
    (``count``: also ``"samples"``, the number of test clouds scored over all ranks).

    Votes draw from their own generator (``--seed`` + rank), so they neither depend on nor disturb training.
    """

    def evaluate_fn(model: nn.Module, loader) -> dict[str, float]:
        device = next(model.parameters()).device
        plain = AccuracyCounter(device)
        votes = [AccuracyCounter(device) for _ in range(args.vote_repeats if args.vote else 0)]
        generator = torch.Generator().manual_seed(args.seed + distributed.get_rank())
        for points, labels in loader:
            points, labels = points.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            plain.update(model(eval_input(points, args.npoints)), labels)
            for counter in votes:
                counter.update(vote_logits(model, points, args.npoints, fps_pool, args.vote_times, generator), labels)
        out = {"acc": plain.result()}
        if count:
            out["samples"] = plain.totals()[1]
        if votes:
            accs = [c.result() for c in votes]
            out["acc_vote"] = max(accs)
            if len(accs) > 1:
                out["acc_vote_mean"] = sum(accs) / len(accs)
        return out

    return evaluate_fn


def main(args: argparse.Namespace) -> dict:
    """Train (or ``--eval-only``) as the config says (``common.engine.runner`` over ``point_cloud.task``)."""
    from point_cloud.task import TASK

    return runner.train_main(TASK, args)


def run(argv=None) -> None:
    """The command line: parse (``--config`` preset + flags) and train; errors exit with one line."""
    from point_cloud.task import TASK

    TASK.train(argv)


if __name__ == "__main__":
    run()
