"""Run a trained model over a split: per scene its id, K trajectories and probabilities, in the target's frame and
in city coordinates (shared by evaluate --submission and visualize)."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from common.engine import loop

from .data.dataset import SkipCounts, collate
from .data.vectorize import to_world
from .task import forecasts, split_dataset


@dataclass
class Prediction:
    scene_id: str
    file: Path
    traj: np.ndarray  # (K, T, 2) target frame
    probs: np.ndarray  # (K,)
    world: np.ndarray  # (K, T, 2) city coordinates
    sample: dict  # the model input of this scene (numpy, target frame)


def add_run_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The flags of the commands that reload a trained run on one split (evaluate, visualize)."""
    parser.add_argument("--resume", required=True, help="a motion_forecasting.train checkpoint (best.pth)")
    parser.add_argument("--split-path", required=True, help="split folder (AV1 CSVs or AV2 scenario folders)")
    parser.add_argument("--map-dir", default=None, help="AV1 map_files/ (default: the run's)")
    parser.add_argument("--llm-path", default=None, help="the LLM checkpoint, if moved since training")
    return parser


def split_loader(args: argparse.Namespace, path: str, skips: SkipCounts):
    """The split at ``path`` under the run's data settings, batched for evaluation (cache under ``eval``)."""
    dataset = split_dataset(args, "eval", path, skips)
    return dataset, loop.make_loader(dataset, args, train=False, collate_fn=collate)


@torch.no_grad()
def predict(model: nn.Module, dataset, loader, limit: int | None = None) -> Iterator[Prediction]:
    device = next(model.parameters()).device
    done = 0
    for batch in loader:
        if batch is None:
            continue
        traj, probs = forecasts(model, loop.to_device(batch, device))
        traj, probs = traj.cpu().numpy(), probs.cpu().numpy()
        for i in range(len(traj)):
            idx = int(batch["index"][i])
            origin, theta = batch["origin"][i].numpy(), float(batch["theta"][i])
            sample = {k: v[i].numpy() for k, v in batch.items()}
            yield Prediction(dataset.ids[idx], Path(dataset.files[idx]), traj[i], probs[i],
                             to_world(traj[i].astype(np.float64), origin, theta), sample)
            done += 1
            if limit is not None and done >= limit:
                return
