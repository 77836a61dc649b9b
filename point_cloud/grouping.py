"""Point-BERT's sampling and grouping on the shared point-set geometry of ``common.pointsets``.

Replaces Point-BERT's CUDA extensions (``pointnet2_ops.furthest_point_sample`` / ``gather_operation`` and the
``knn_point`` top-k of ``models/dvae.py``) with plain batched torch that gives the same indices on CPU and GPU:

- ``farthest_point_sample`` without a generator is ``pointnet2_ops``' kernel: it starts at point 0, never picks
  a point with x² + y² + z² <= 1e-3 (a radius of about 0.032) after it, and breaks exact distance ties as the
  kernel's block reduction does. With a ``torch.Generator`` it is the ModelNet preprocessing's numpy FPS: a
  seeded random start point, no point skipped, ties to the lowest index.
- ``knn`` returns the ``k`` nearest points of each query, nearest first, ties to the lowest index (a stable
  sort of exact squared distances). Upstream's ``topk(sorted=False)`` returns the same set in an unspecified
  order; the group encoder is order-invariant (max-pooling).
"""

from __future__ import annotations

import torch

from common.pointsets import farthest_point_sample as _kernel_fps
from common.pointsets import gather_points, knn, squared_distances

__all__ = ["farthest_point_sample", "fps", "gather_points", "group_points", "knn", "squared_distances"]


def farthest_point_sample(xyz: torch.Tensor, n_samples: int, generator: torch.Generator | None = None
                          ) -> torch.Tensor:
    """Indices (B, n_samples) of farthest point sampling over ``xyz`` (B, N, 3).

    Args:
        xyz: point coordinates; extra channels beyond 3 are ignored.
        n_samples: points to pick, at most N.
        generator: None follows ``pointnet2_ops`` (start at point 0, near-origin points skipped); a generator
            draws each cloud's start point from it (the numpy FPS of ModelNet's preprocessing), so a seed
            fixes the result.
    """
    if generator is None:
        return _kernel_fps(xyz, n_samples)
    batch, n_points = xyz.shape[:2]
    if not 0 < n_samples <= n_points:  # checked before drawing, so a bad request consumes no random numbers
        raise ValueError(f"farthest point sampling of {n_samples} points from clouds of {n_points}")
    start = torch.randint(n_points, (batch,), generator=generator)
    return _kernel_fps(xyz, n_samples, start, skip_near_origin=False, tie_break="index")


def fps(points: torch.Tensor, n_samples: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """The sampled points themselves: ``points`` (B, N, C) -> (B, n_samples, C) (Point-BERT ``misc.fps``)."""
    return gather_points(points, farthest_point_sample(points, n_samples, generator))


def group_points(xyz: torch.Tensor, num_group: int, group_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Point-BERT's ``Group``: FPS ``num_group`` centres, their ``group_size`` nearest points, re-centred.

    Returns ``neighborhood`` (B, G, S, 3) (points minus their centre) and ``center`` (B, G, 3), float32.
    """
    xyz = xyz[..., :3].float()
    center = fps(xyz, num_group)
    neighborhood = gather_points(xyz, knn(center, xyz, group_size))
    return neighborhood - center.unsqueeze(2), center
