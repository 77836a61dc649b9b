"""Point-set geometry in plain batched torch: farthest point sampling, k nearest neighbours, ball query.

These replace the pointnet2 CUDA extensions (``pointnet2_ops`` of Point-BERT, ``lib/pointnet2`` of VoteNet /
ScanQA / SQA3D) with code that runs on any device, follows the kernels' selection rules and is exact against
brute force (distances are computed from coordinate differences, summed x, y, z in that order):

- ``farthest_point_sample`` follows ``furthest_point_sampling_kernel``: the first index is point 0, a
  point with ``x² + y² + z² <= 1e-3`` (a radius of about 0.032, not "1e-3 of the origin") is never picked
  after it, distances start at 1e10, and a tie between equally far points is broken as the kernel's block
  reduction breaks it (``tie_break="kernel"``: thread ``k % block`` in bit-reversed order, then the lowest
  ``k``) or by the lowest index (``"index"``). With a ``start`` (one index per cloud, the numpy FPS of
  ModelNet's preprocessing) and ``skip_near_origin=False`` it is the textbook algorithm.
- ``knn``: the ``k`` nearest points, nearest first, distance ties to the lowest index (``three_nn``'s rule).
- ``ball_query`` follows ``query_ball_point_kernel``: the first ``n_sample`` points in index order with
  ``d² < r²`` (``r²`` in float32), the remaining slots padded with the first hit, zeros when none is found.

What still may differ from the GPU kernels: nvcc may fuse the kernels' ``a*b + c`` into FMAs, so a distance
can differ in its last bit and two points that are nearly (not exactly) equally far may swap.
"""

from __future__ import annotations

import math

import torch

KERNEL_MIN_SQ_NORM = 1e-3  # pointnet2 FPS: ``if (mag <= 1e-3) continue;``
KERNEL_INITIAL_DIST = 1e10  # pointnet2 FPS: ``torch::full(..., 1e10)``
KERNEL_MAX_THREADS = 512  # cuda_utils.h TOTAL_THREADS


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


def kernel_block_size(n_points: int) -> int:
    """Threads per cloud of the FPS kernel: ``opt_n_threads(n)`` = the power of two <= n, at most 512."""
    return max(min(1 << int(math.log(n_points) / math.log(2.0)), KERNEL_MAX_THREADS), 1)


def _bit_reverse(values: torch.Tensor, bits: int) -> torch.Tensor:
    out = torch.zeros_like(values)
    for b in range(bits):
        out |= ((values >> b) & 1) << (bits - 1 - b)
    return out


def kernel_tie_priority(n_points: int, device: torch.device | None = None) -> torch.Tensor:
    """(N,) int64, larger wins: the order in which the FPS kernel's block reduction resolves equal distances.

    Each thread keeps its first (lowest ``k``) maximum; ``__update(tid, tid + s)`` keeps the left slot on a
    tie, so between threads the one whose id has a 0 at the lowest differing bit wins: bit-reversed id order.
    """
    block = kernel_block_size(n_points)
    k = torch.arange(n_points, dtype=torch.long, device=device)
    per_thread = -(-n_points // block)
    rank = _bit_reverse(k % block, block.bit_length() - 1) * per_thread + k // block  # smaller wins
    return block * per_thread - 1 - rank


@torch.no_grad()
def farthest_point_sample(xyz: torch.Tensor, n_samples: int, start: torch.Tensor | None = None, *,
                          skip_near_origin: bool = True, tie_break: str = "kernel") -> torch.Tensor:
    """Indices (B, n_samples), int64, of farthest point sampling over ``xyz`` (B, N, >=3).

    Args:
        xyz: point coordinates; channels beyond 3 are ignored; computed in float32 as the kernel.
        n_samples: points to pick, at most N.
        start: (B,) first index per cloud; None = point 0 (the kernel).
        skip_near_origin: never pick (after the start) a point with x²+y²+z² <= 1e-3 (the kernel's rule).
        tie_break: "kernel" (the CUDA block reduction's order) or "index" (the lowest index).
    """
    batch, n_points = xyz.shape[:2]
    if not 0 < n_samples <= n_points:
        raise ValueError(f"farthest point sampling of {n_samples} points from clouds of {n_points}")
    if tie_break not in ("kernel", "index"):
        raise ValueError(f"tie_break must be 'kernel' or 'index', not {tie_break!r}")
    device = xyz.device
    coords = xyz[..., :3].float()
    rows = torch.arange(batch, device=device)
    farthest = torch.zeros(batch, dtype=torch.long, device=device) if start is None else start.to(device).long()
    # A skipped point sits at -1 for good: min(d, -1) stays -1, below every real distance.
    min_dist = torch.full((batch, n_points), KERNEL_INITIAL_DIST, device=device)
    any_valid = torch.ones(batch, dtype=torch.bool, device=device)
    if skip_near_origin:
        sq = coords.square()
        skipped = (sq[..., 0] + sq[..., 1] + sq[..., 2]) <= KERNEL_MIN_SQ_NORM
        min_dist[skipped] = -1.0
        any_valid = ~skipped.all(dim=1)  # the kernel's besti stays 0 when every point is skipped
    priority = kernel_tie_priority(n_points, device) if tie_break == "kernel" else None
    chosen = torch.empty(batch, n_samples, dtype=torch.long, device=device)
    for i in range(n_samples):
        chosen[:, i] = farthest
        if i + 1 == n_samples:
            break
        centre = coords[rows, farthest].unsqueeze(1)  # (B, 1, 3)
        sq = (coords - centre).square_()
        dist = sq[..., 0] + sq[..., 1]
        dist += sq[..., 2]  # (dx^2 + dy^2) + dz^2, the kernel's order
        torch.minimum(min_dist, dist, out=min_dist)
        if priority is None:
            farthest = min_dist.argmax(dim=1)  # first maximum on CPU and CUDA
        else:
            # float32 >= 0 orders as its int32 bits; pack (distance, tie priority) into one int64 key
            key = (min_dist.view(torch.int32).long() << 32) | priority
            farthest = key.argmax(dim=1)
        farthest = torch.where(any_valid, farthest, 0)
    return chosen


@torch.no_grad()
def knn(queries: torch.Tensor, points: torch.Tensor, k: int, return_distances: bool = False):
    """Indices (B, M, k) of the ``k`` points of ``points`` (B, N, 3) nearest to each of ``queries`` (B, M, 3).

    Nearest first, equal distances to the lowest index; with ``return_distances`` also their squared
    distances (B, M, k).
    """
    n_points = points.shape[1]
    if not 0 < k <= n_points:
        raise ValueError(f"{k} nearest neighbours among {n_points} points")
    dist = squared_distances(queries[..., :3].float(), points[..., :3].float())
    ordered = torch.sort(dist, dim=-1, stable=True)
    index = ordered.indices[..., :k]
    return (index, ordered.values[..., :k]) if return_distances else index


@torch.no_grad()
def ball_query(queries: torch.Tensor, points: torch.Tensor, radius: float, n_sample: int,
               max_elements: int = 1 << 24) -> torch.Tensor:
    """Indices (B, M, n_sample) of points of ``points`` (B, N, 3) within ``radius`` of each query (B, M, 3).

    The kernel's rule: the first ``n_sample`` points in index order with ``d² < radius²``, the other slots
    filled with the first of them, all zeros when none is within. ``max_elements`` caps the (B, m, N)
    distance block computed at once (queries are taken in chunks).
    """
    batch, n_queries = queries.shape[:2]
    n_points = points.shape[1]
    if n_sample <= 0:
        raise ValueError(f"ball query of {n_sample} points")
    r2 = torch.tensor(radius, dtype=torch.float32)
    r2 = (r2 * r2).item()  # float radius2 = radius * radius in float32
    q, p = queries[..., :3].float(), points[..., :3].float()
    out = torch.zeros(batch, n_queries, n_sample, dtype=torch.long, device=queries.device)
    slots = torch.arange(n_sample, device=queries.device)
    chunk = max(1, max_elements // max(1, batch * n_points))
    for lo in range(0, n_queries, chunk):
        qc = q[:, lo:lo + chunk]
        m_rows = qc.shape[1]
        # d² >= dx² in float arithmetic (adding non-negative terms never rounds below), so only pairs with
        # dx² < r² can be in the ball: compute y and z for those only, in squared_distances' order.
        dx2 = (qc[..., 0].unsqueeze(-1) - p[..., 0].unsqueeze(-2)).square_()  # (B, m, N)
        b, m, k = torch.nonzero(dx2 < r2, as_tuple=True)  # ordered by (b, query, point index)
        dy = qc[b, m, 1] - p[b, k, 1]
        dz = qc[b, m, 2] - p[b, k, 2]
        hit = (dx2[b, m, k] + dy * dy) + dz * dz < r2
        b, m, k = b[hit], m[hit], k[hit]
        counts = torch.bincount(b * m_rows + m, minlength=batch * m_rows)  # hits per (b, query)
        starts = torch.cumsum(counts, 0) - counts
        rank = torch.arange(len(k), device=k.device) - torch.repeat_interleave(starts, counts)
        keep = rank < n_sample  # the first n_sample hits of each ball, in index order
        part = torch.zeros(batch, m_rows, n_sample, dtype=torch.long, device=queries.device)
        part[b[keep], m[keep], rank[keep]] = k[keep]
        found = counts.clamp(max=n_sample).reshape(batch, m_rows, 1)
        out[:, lo:lo + chunk] = torch.where(slots < found, part, part[..., :1])
    return out
