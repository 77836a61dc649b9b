"""Batch-level point sampling and augmentation, run on the device as Point-BERT's fine-tuning loop does
(``tools/runner_BERT_finetune.py``, ``datasets/data_transforms.py``).

- train: FPS a pool of ``fps_pool`` points (1200 for 1024 inputs), keep a random ``npoints`` of them (the same
  positions for the whole batch, as ``fps_idx[:, np.random.choice(...)]``), then ``scale_and_translate``;
- test: FPS ``npoints``;
- vote: the test pool once, then ``times`` random subsets, each scaled/translated, logits averaged.
"""

from __future__ import annotations

import torch
from torch import nn

from point_cloud.grouping import farthest_point_sample, fps, gather_points

# runner_BERT_finetune ``point_all``: the FPS pool each input size is drawn from.
FPS_POOL = {1024: 1200, 2048: 2400, 4096: 4800, 8192: 8192}
SCALE_RANGE = (2.0 / 3.0, 3.0 / 2.0)
TRANSLATE_RANGE = 0.2


def fps_pool_size(npoints: int, fps_pool: int | None = None) -> int:
    """The FPS pool for ``npoints`` inputs: ``fps_pool`` when given, else Point-BERT's table."""
    pool = fps_pool if fps_pool is not None else FPS_POOL.get(npoints)
    if pool is None:
        raise ValueError(f"no FPS pool size for {npoints} points (Point-BERT has {sorted(FPS_POOL)}); "
                         "set --fps-pool")
    if pool < npoints:
        raise ValueError(f"--fps-pool {pool} is smaller than --npoints {npoints}")
    return pool


def _check_enough(points: torch.Tensor, npoints: int) -> None:
    if points.shape[1] < npoints:
        raise ValueError(f"clouds of {points.shape[1]} points cannot give {npoints} (lower --npoints)")


def pool_indices(points: torch.Tensor, pool: int) -> torch.Tensor:
    """(B, min(pool, N)) FPS indices; when the pool is every point, FPS order is irrelevant (a random subset
    follows), so the identity order is returned instead of running FPS over all N points."""
    n = points.shape[1]
    if pool >= n:
        return torch.arange(n, device=points.device).expand(points.shape[0], n)
    return farthest_point_sample(points, pool)


def random_subset(points: torch.Tensor, pool_index: torch.Tensor, npoints: int,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """``npoints`` of the pooled points, at random positions shared by the whole batch -> (B, npoints, C)."""
    positions = torch.randperm(pool_index.shape[1], generator=generator)[:npoints].to(pool_index.device)
    return gather_points(points, pool_index[:, positions])


def scale_and_translate(points: torch.Tensor, scale: tuple[float, float] = SCALE_RANGE,
                        translate: float = TRANSLATE_RANGE, generator: torch.Generator | None = None) -> torch.Tensor:
    """``PointcloudScaleAndTranslate``: per cloud and axis, xyz * U(scale) + U(-translate, translate)."""
    batch = points.shape[0]
    factors = torch.empty(batch, 1, 3).uniform_(scale[0], scale[1], generator=generator).to(points)
    shifts = torch.empty(batch, 1, 3).uniform_(-translate, translate, generator=generator).to(points)
    xyz = points[..., :3] * factors + shifts
    return torch.cat([xyz, points[..., 3:]], dim=-1) if points.shape[-1] > 3 else xyz


@torch.no_grad()
def train_input(points: torch.Tensor, npoints: int, fps_pool: int, generator: torch.Generator | None = None
                 ) -> torch.Tensor:
    """Training input of Point-BERT: FPS pool -> random ``npoints`` -> scale/translate (B, npoints, C)."""
    _check_enough(points, npoints)
    subset = random_subset(points, pool_indices(points, fps_pool), npoints, generator)
    return scale_and_translate(subset, generator=generator)


@torch.no_grad()
def eval_input(points: torch.Tensor, npoints: int) -> torch.Tensor:
    """Test input of Point-BERT: FPS ``npoints`` (deterministic). Clouds of exactly ``npoints`` are returned as
    they are: FPS over all points only reorders them (point 0 stays first), and the model's own FPS of centres
    then picks the same points up to distance ties."""
    _check_enough(points, npoints)
    return points if points.shape[1] == npoints else fps(points, npoints)


@torch.no_grad()
def vote_logits(model: nn.Module, points: torch.Tensor, npoints: int, fps_pool: int, times: int = 10,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """``validate_vote``: mean logits over ``times`` random pooled subsets, each scaled and translated."""
    _check_enough(points, npoints)
    pool = pool_indices(points, fps_pool)
    total = None
    for _ in range(times):
        subset = scale_and_translate(random_subset(points, pool, npoints, generator), generator=generator)
        logits = model(subset).float()
        total = logits if total is None else total + logits
    return total / times
