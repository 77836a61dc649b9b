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


def train_main(task, args: argparse.Namespace) -> dict[str, Any]:
    """Train (or ``--eval-only``) ``task`` with ``args``; returns ``loop.fit``'s summary."""
    task.check_args(args)
    info = loop.setup(args)
    data = task.build_data(args, info.rank, info.world_size)
    model = loop.create_model(task.build_model, args)
    optimizer = task.build_optimizer(args, model)
    if not data.evals and args.eval_only:
        raise ConfigError("--eval-only needs an evaluation set")
    return loop.fit(args, model, data.train, task.loss_fn(args, data), val_loader=data.evals or None,
                    evaluate_fn=evaluate_sets(task, args) if data.evals else None,
                    best_metric=task.best_metric, best_mode=task.best_mode, optimizer=optimizer, dist_info=info,
                    epoch_stats=skipped_stats(data, info.device))


def run_train(task, argv: Sequence[str] | None = None) -> None:
    """The command line of ``python -m <task>.train``."""
    loop.run_cli(lambda args: train_main(task, args), task.build_parser(), argv)


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
    saved.update({k: v for k, v in (overrides or {}).items() if v is not None})
    args = config.namespace_from_config(task.build_parser(), saved)
    key = "ema" if use_ema else "model"
    weights = state.get(key)
    if weights is None:
        raise CheckpointError(f"{path} has no '{key}' weights" + (" (the run had no EMA)" if use_ema else ""))
    model = loop.create_model(task.build_model, args)
    checkpoint.check_lm(state.get("lm_fingerprints") or {}, model, str(path))
    checkpoint.load_model_state(model, weights, f"{path} [{key}]")
    return LoadedRun(model.eval(), args, key)
