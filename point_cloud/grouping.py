"""Farthest point sampling, k-nearest neighbours and Point-BERT's grouping, in plain batched torch.

Replaces Point-BERT's CUDA extensions (``pointnet2_ops.furthest_point_sample`` / ``gather_operation`` and the
``knn_point`` top-k of ``models/dvae.py``) with code that runs on any device and gives the same indices on CPU
and GPU:

- ``farthest_point_sample`` starts from point 0, as ``pointnet2_ops`` does (or from a point drawn from a
  ``torch.Generator``, as the ModelNet preprocessing's numpy FPS does), then repeatedly takes the point farthest
  from the chosen set; ties go to the lowest index. Unlike ``pointnet2_ops`` it does not skip points within
  1e-3 of the origin (a quirk of that kernel, not part of the algorithm).
- ``knn`` returns the ``k`` nearest points of each query, nearest first, ties to the lowest index (a stable
  sort of exact squared distances, so the result does not depend on the device). Upstream's ``topk(sorted=False)``
  returns the same set in an unspecified order; the group encoder is order-invariant (max-pooling).
"""

from __future__ import annotations

import torch


def gather_points(points: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``points`` (B, N, C) indexed by ``index`` (B, ...) of point ids -> (B, ..., C)."""
    batch = points.shape[0]
    flat = index.reshape(batch, -1)
    out = torch.gather(points, 1, flat.unsqueeze(-1).expand(-1, -1, points.shape[-1]))
    return out.reshape(*index.shape, points.shape[-1])


def squared_distances(queries: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Exact ``|q - p|^2`` for (B, M, 3) queries and (B, N, 3) points -> (B, M, N), summed x, y, z in order.

    Computed from differences (not the ``|q|^2 + |p|^2 - 2 q.p`` expansion) so that it is exact, non-negative
    and identical on every device; memory is (B, M, N) per coordinate.
    """
    out = None
    for c in range(queries.shape[-1]):
        diff = queries[..., c].unsqueeze(-1) - points[..., c].unsqueeze(-2)
        out = diff * diff if out is None else out + diff * diff
    return out


@torch.no_grad()
def farthest_point_sample(xyz: torch.Tensor, n_samples: int, generator: torch.Generator | None = None
                          ) -> torch.Tensor:
    """Indices (B, n_samples) of farthest point sampling over ``xyz`` (B, N, 3).

    Args:
        xyz: point coordinates; extra channels beyond 3 are ignored.
        n_samples: points to pick, at most N.
        generator: None starts every cloud at point 0 (``pointnet2_ops``); a generator draws each cloud's
            start point from it (the numpy FPS of ModelNet's preprocessing), so a seed fixes the result.
    """
    batch, n_points = xyz.shape[:2]
    if not 0 < n_samples <= n_points:
        raise ValueError(f"farthest point sampling of {n_samples} points from clouds of {n_points}")
    coords = xyz[..., :3].float()
    rows = torch.arange(batch, device=xyz.device)
    if generator is None:
        farthest = torch.zeros(batch, dtype=torch.long, device=xyz.device)
    else:
        farthest = torch.randint(n_points, (batch,), generator=generator).to(xyz.device)
    min_dist = torch.full((batch, n_points), float("inf"), device=xyz.device)
    chosen = torch.empty(batch, n_samples, dtype=torch.long, device=xyz.device)
    for i in range(n_samples):
        chosen[:, i] = farthest
        centre = coords[rows, farthest].unsqueeze(1)  # (B, 1, 3)
        sq = (coords - centre).square_()
        dist = sq[..., 0] + sq[..., 1]
        dist += sq[..., 2]  # (dx^2 + dy^2) + dz^2 in this order on every device
        torch.minimum(min_dist, dist, out=min_dist)
        farthest = min_dist.argmax(dim=1)  # first maximum on CPU and CUDA
    return chosen


def fps(points: torch.Tensor, n_samples: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """The sampled points themselves: ``points`` (B, N, C) -> (B, n_samples, C) (Point-BERT ``misc.fps``)."""
    return gather_points(points, farthest_point_sample(points, n_samples, generator))


@torch.no_grad()
def knn(queries: torch.Tensor, points: torch.Tensor, k: int) -> torch.Tensor:
    """Indices (B, M, k) of the ``k`` points of ``points`` (B, N, 3) nearest to each of ``queries`` (B, M, 3)."""
    n_points = points.shape[1]
    if not 0 < k <= n_points:
        raise ValueError(f"{k} nearest neighbours among {n_points} points")
    dist = squared_distances(queries[..., :3].float(), points[..., :3].float())
    return torch.sort(dist, dim=-1, stable=True).indices[..., :k]


def group_points(xyz: torch.Tensor, num_group: int, group_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Point-BERT's ``Group``: FPS ``num_group`` centres, their ``group_size`` nearest points, re-centred.

    Returns ``neighborhood`` (B, G, S, 3) (points minus their centre) and ``center`` (B, G, 3), float32.
    """
    xyz = xyz[..., :3].float()
    center = fps(xyz, num_group)
    neighborhood = gather_points(xyz, knn(center, xyz, group_size))
    return neighborhood - center.unsqueeze(2), center
