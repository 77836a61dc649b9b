"""Generic entry points over the task interface (``common.task.Task``): train a task, reload a trained run.

    python -m <task>.train --config <task>/configs/x.yaml ...   # each task's train.py: TASK.train()
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import checkpoint, config, distributed, loop
from .errors import CheckpointError, ConfigError

log = logging.getLogger(__name__)


def evaluate_sets(task, args: argparse.Namespace):
    """``loop.fit``'s ``evaluate_fn`` over every evaluation set of ``TaskData.evals`` (first set unprefixed)."""

    def evaluate(model: nn.Module, evals: Mapping[str, Any]) -> dict[str, float]:
        out: dict[str, float] = {}
        for i, (set_name, eval_set) in enumerate(evals.items()):
            metrics = task.evaluate(model, eval_set, args)
            out.update(metrics if i == 0 else {f"{set_name}_{k}": v for k, v in metrics.items()})
        return out

    return evaluate


def skipped_stats(task_data, device: torch.device):
    """``epoch_stats`` hook: samples skipped during the epoch by reason, summed over ranks."""
    previous: dict[str, int] = {}

    def stats(epoch: int) -> dict[str, int]:
        now = dict(task_data.skipped() if task_data.skipped else {})
        keys = sorted(set(now) | set(previous))
        if not keys:
            return {}
        totals = distributed.all_reduce_sum(torch.tensor([float(now.get(k, 0)) for k in keys], dtype=torch.float64,
                                                         device=device)).cpu().tolist()
        out = {f"skipped_{k}": int(total) - previous.get(k, 0) for k, total in zip(keys, totals)}
        previous.update({k: int(total) for k, total in zip(keys, totals)})
        if any(out.values()):
            log.warning("epoch %d: skipped samples %s", epoch, {k: v for k, v in out.items() if v})
        return out

    return stats


def freeze_encoder(model: nn.Module, head_prefixes: Sequence[str]) -> list[str]:
    """``--freeze-encoder``: every trainable parameter outside the LLM adapters and ``head_prefixes`` stops
    training (it stays in the checkpoints: it is the pretrained encoder), and the encoder's batch-norm layers keep
    their running statistics (eval mode while training, ``loop.set_train_mode``); returns the frozen names."""
    from common.frozen_lm import LLMAdapter

    adapters = tuple(f"{name}." for name, module in model.named_modules() if isinstance(module, LLMAdapter))
    if not adapters:
        raise ConfigError("--freeze-encoder trains the LLM adapter and the head only, and this model has no adapter "
                          "(--llm-variant none)")
    kept = adapters + tuple(head_prefixes)
    frozen = [name for name, p in model.named_parameters() if p.requires_grad and not name.startswith(kept)]
    for name, param in model.named_parameters():
        if name in frozen:
            param.requires_grad_(False)
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not f"{name}.".startswith(kept):
            setattr(module, loop.HOLD_STATISTICS, True)
    log.info("--freeze-encoder: %d parameter tensors frozen; training %s", len(frozen), ", ".join(
        sorted({n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad})))
    return frozen


def run_args(task, args: argparse.Namespace, world_size: int) -> argparse.Namespace:
    """What the optimizer and the schedule see: ``args`` with the task's LRs scaled by the global batch
    (``Task.lr_reference_batch``; ``--unscale-lr`` keeps them); ``args`` itself is unchanged."""
    if task.lr_reference_batch is None:
        return args
    from common import recipe

    lrs = recipe.scaled_lrs(args, world_size, task.lr_reference_batch, task.lr_scaled_keys)
    log.info("LR %s (%s)", ", ".join(f"{k} {v:.3g}" for k, v in lrs.items()),
             "as given" if args.unscale_lr else
             f"x global batch {recipe.global_batch(args, world_size)} / {task.lr_reference_batch}")
    return argparse.Namespace(**{**vars(args), **lrs})


def train_main(task, args: argparse.Namespace) -> dict[str, Any]:
    """Train (or ``--eval-only``) ``task`` with ``args``; returns ``loop.fit``'s summary."""
    task.check_args(args)
    info = loop.setup(args, save=False)
    data = task.build_data(args, info.rank, info.world_size)
    config.save_config(args, args.output_dir)  # once, with what the data decided (sizes, the per-process batch)
    model = loop.create_model(task.build_model, args)
    model = task.initialize(model, args, checkpoint.resolve_resume(args.resume, args.output_dir))
    if args.freeze_encoder:
        freeze_encoder(model, task.head_prefixes)
    scaled = run_args(task, args, info.world_size)
    optimizer = task.build_optimizer(scaled, model)
    if not data.evals and args.eval_only:
        raise ConfigError("--eval-only needs an evaluation set")
    best_metric, best_mode = task.best_for(args)
    return loop.fit(scaled, model, data.train, task.loss_fn(args, data), val_loader=data.evals or None,
                    evaluate_fn=evaluate_sets(task, args) if data.evals else None,
                    best_metric=best_metric, best_mode=best_mode, optimizer=optimizer, dist_info=info,
                    epoch_stats=skipped_stats(data, info.device), saved_config=config.config_to_dict(args))


def run_train(task, argv: Sequence[str] | None = None) -> None:
    """The command line of ``python -m <task>.train``."""
    loop.run_cli(lambda args: train_main(task, args), task.build_parser(), argv)


def setup_evaluation(args: argparse.Namespace) -> distributed.DistInfo:
    """Start of every ``<task>.evaluate``: join the process group (one shard per rank), console logging, seeds
    (``--seed`` + rank, when the parser has it); nothing is written to the run directory."""
    from . import logging as runlog
    from . import rng

    info = distributed.init_distributed(args.device)
    runlog.setup_logging(info.rank)
    if getattr(args, "seed", None) is not None:
        rng.seed_everything(args.seed, info.rank)
    if info.world_size > 1:
        log.info("rank %d/%d on %s", info.rank, info.world_size, info.device)
    return info


def evaluation_args(task, args: argparse.Namespace, parser: argparse.ArgumentParser) -> argparse.Namespace:
    """``<task>.evaluate --resume CKPT`` without ``--config``: the run's config saved in the checkpoint, with every
    flag this command line set (a value other than the parser's default: ``--data-path``, ``--llm-path`` of a
    moved checkpoint, evaluation settings) on top."""
    path = checkpoint.resolve_resume(args.resume, args.output_dir)
    if path is None:
        raise ConfigError(f"--resume {args.resume}: no checkpoint to evaluate")
    state = checkpoint.load(path)
    saved = dict(state.get("config") or {})
    if saved.get("task", task.name) != task.name:
        raise CheckpointError(f"{path} is a checkpoint of task '{saved['task']}', not {task.name}")
    task.complete_config(saved, state.get("model") or {})
    merged = config.namespace_from_config(parser, saved)
    for key, value in vars(args).items():
        if key != "config" and value != parser.get_default(key):
            setattr(merged, key, value)
    log.info("evaluating %s with the run config it holds (+ this command line's flags)", path)
    return merged


@dataclass
class LoadedRun:
    """A trained run rebuilt for evaluation or analysis (eval mode, CPU)."""

    model: nn.Module
    args: argparse.Namespace
    weights: str  # "model" | "ema"


def load_run(task, path: str | os.PathLike, use_ema: bool = False,
             overrides: Mapping[str, Any] | None = None) -> LoadedRun:
    """Rebuild the model of an engine checkpoint of ``task`` from its saved config (``overrides`` win, e.g. a
    moved ``llm_path``); the frozen block must match the saved fingerprint; weights load strictly."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    state = checkpoint.load(path)
    saved = dict(state.get("config") or {})
    if saved.get("task", task.name) != task.name:
        raise CheckpointError(f"{path} is a checkpoint of task '{saved['task']}', not {task.name}")
    key = "ema" if use_ema else "model"
    weights = state.get(key)
    if weights is None:
        raise CheckpointError(f"{path} has no '{key}' weights" + (" (the run had no EMA)" if use_ema else ""))
    task.complete_config(saved, weights)
    saved.update({k: v for k, v in (overrides or {}).items() if v is not None})
    args = config.namespace_from_config(task.build_parser(), saved)
    model = loop.create_model(task.build_model, args)
    checkpoint.check_lm(state.get("lm_fingerprints") or {}, model, str(path))
    checkpoint.load_model_state(model, weights, f"{path} [{key}]")
    return LoadedRun(model.eval(), args, key)
