"""common.pointsets against brute force and against line-by-line Python copies of the pointnet2 CUDA kernels."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from common.pointsets import (
    ball_query,
    farthest_point_sample,
    gather_points,
    kernel_block_size,
    knn,
    squared_distances,
)


def fps_kernel_copy(xyz: np.ndarray, m: int) -> list[int]:
    """``furthest_point_sampling_kernel`` for one cloud, thread by thread, float32 arithmetic, no FMA."""
    xyz = xyz.astype(np.float32)
    n = len(xyz)
    block = max(min(1 << int(math.log(n) / math.log(2.0)), 512), 1)
    temp = np.full(n, 1e10, dtype=np.float32)
    old, idxs = 0, [0]
    for _ in range(1, m):
        x1, y1, z1 = xyz[old]
        dists, dists_i = [], []
        for tid in range(block):
            best, besti = np.float32(-1), 0
            for k in range(tid, n, block):
                x2, y2, z2 = xyz[k]
                if (x2 * x2) + (y2 * y2) + (z2 * z2) <= np.float32(1e-3):
                    continue
                d = (x2 - x1) * (x2 - x1) + (y2 - y1) * (y2 - y1) + (z2 - z1) * (z2 - z1)
                d2 = min(d, temp[k])
                temp[k] = d2
                besti = k if d2 > best else besti
                best = d2 if d2 > best else best
            dists.append(best)
            dists_i.append(besti)
        half = block // 2
        while half >= 1:  # __update(tid, tid + half): keep tid's entry unless tid + half is strictly larger
            for tid in range(half):
                if dists[tid + half] > dists[tid]:
                    dists[tid], dists_i[tid] = dists[tid + half], dists_i[tid + half]
            half //= 2
        old = dists_i[0]
        idxs.append(old)
    return idxs


def fps_textbook(xyz: np.ndarray, n: int, start: int = 0) -> list[int]:
    """FPS from the full float64 distance matrix: next = first argmax of the min distance to the chosen set."""
    dist = ((xyz[:, None, :] - xyz[None, :, :]) ** 2).sum(-1)
    chosen = [start]
    for _ in range(n - 1):
        chosen.append(int(np.argmax(dist[chosen].min(axis=0))))
    return chosen


def ball_query_kernel_copy(new_xyz: np.ndarray, xyz: np.ndarray, radius: float, nsample: int) -> np.ndarray:
    """``query_ball_point_kernel`` for one cloud."""
    radius2 = np.float32(radius) * np.float32(radius)
    idx = np.zeros((len(new_xyz), nsample), dtype=np.int64)
    for j, (nx, ny, nz) in enumerate(new_xyz.astype(np.float32)):
        cnt = 0
        for k, (x, y, z) in enumerate(xyz.astype(np.float32)):
            if cnt >= nsample:
                break
            if (nx - x) * (nx - x) + (ny - y) * (ny - y) + (nz - z) * (nz - z) < radius2:
                if cnt == 0:
                    idx[j, :] = k
                idx[j, cnt] = k
                cnt += 1
    return idx


@pytest.fixture
def clouds() -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(0).normal(size=(3, 70, 3)).astype(np.float32))


def test_block_size_is_the_kernels_opt_n_threads():
    assert [kernel_block_size(n) for n in (1, 2, 3, 60, 64, 70, 511, 512, 40000)] == [1, 2, 2, 32, 64, 64, 256,
                                                                                     512, 512]


def test_fps_matches_the_kernel_copy_and_brute_force(clouds):
    index = farthest_point_sample(clouds, 25)
    assert index.shape == (3, 25) and index.dtype == torch.long
    for b in range(3):
        assert index[b].tolist() == fps_kernel_copy(clouds[b].numpy(), 25)
        assert index[b].tolist() == fps_textbook(clouds[b].double().numpy(), 25)  # no point near the origin


def test_fps_never_picks_a_point_within_sqrt_1e3_of_the_origin():
    rng = np.random.default_rng(3)
    xyz = rng.normal(size=(2, 40, 3)).astype(np.float32)
    xyz[:, 5] = [0.03, 0.0, 0.0]  # 9e-4 <= 1e-3: skipped although far from the others' centre of mass
    xyz[:, 6] = [0.0, 0.0, 0.0316]  # 9.98e-4: skipped
    xyz[:, 7] = [0.0, 0.0, 0.0317]  # 1.0049e-3: eligible
    xyz[:, 8:] *= 40.0  # push the rest far away so the near-origin points would be picked late but surely
    torch_xyz = torch.from_numpy(xyz)
    index = farthest_point_sample(torch_xyz, 40)
    for b in range(2):
        assert index[b].tolist() == fps_kernel_copy(xyz[b], 40)
        assert 5 not in index[b].tolist() and 6 not in index[b].tolist() and 7 in index[b].tolist()
    textbook = farthest_point_sample(torch_xyz, 40, skip_near_origin=False, tie_break="index")
    assert 5 in textbook[0].tolist() and textbook[0].tolist() == fps_textbook(xyz[0].astype(np.float64), 40)


def test_fps_starts_at_point_0_even_at_the_origin_and_falls_back_to_0_when_all_are_skipped():
    xyz = torch.zeros(1, 6, 3)
    xyz[0, 1:, 0] = 0.01
    assert farthest_point_sample(xyz, 3).tolist() == [[0, 0, 0]] == [fps_kernel_copy(xyz[0].numpy(), 3)]


def test_fps_ties_follow_the_kernels_block_reduction_or_the_lowest_index():
    square = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0], [1, 1, 0]]])
    # 5 points -> 4 threads; from point 0: points 3 and 4 tie at 2, thread 0 (point 4) beats thread 3 (point 3);
    # then 1 (thread 1, bit-reversed 2) and 2 (thread 2, bit-reversed 1) tie at 1 and point 2 wins
    assert farthest_point_sample(square, 4).tolist() == [[0, 4, 2, 1]] == [fps_kernel_copy(square[0].numpy(), 4)]
    assert farthest_point_sample(square, 4, tie_break="index").tolist() == [[0, 3, 1, 2]]


def test_fps_ties_on_a_grid_match_the_kernel_copy():
    grid = np.stack(np.meshgrid(*[np.arange(1.0, 5.0)] * 3, indexing="ij"), -1).reshape(-1, 3)  # 64 points
    grid = np.concatenate([grid, grid[:9]]).astype(np.float32)  # 73 points: duplicates, 64 threads
    index = farthest_point_sample(torch.from_numpy(grid)[None], 30)
    assert index[0].tolist() == fps_kernel_copy(grid, 30)


def test_fps_ties_with_512_threads_and_several_points_per_thread():
    rng = np.random.default_rng(5)
    grid = rng.integers(-3, 4, size=(1030, 3)).astype(np.float32)  # 343 cells: many duplicates and equal distances
    index = farthest_point_sample(torch.from_numpy(grid)[None], 24)
    assert index[0].tolist() == fps_kernel_copy(grid, 24)
    assert index[0].tolist() != farthest_point_sample(torch.from_numpy(grid)[None], 24, tie_break="index")[0].tolist()


def test_fps_with_a_start_and_no_skip_is_the_textbook_algorithm(clouds):
    start = torch.tensor([4, 0, 61])
    index = farthest_point_sample(clouds, 10, start, skip_near_origin=False, tie_break="index")
    for b in range(3):
        assert index[b].tolist() == fps_textbook(clouds[b].double().numpy(), 10, start=int(start[b]))


def test_knn_matches_brute_force_nearest_first_with_distances(clouds):
    queries = clouds[:, :7] + 0.01
    index, dist = knn(queries, clouds, 9, return_distances=True)
    for b in range(3):
        ref = ((queries[b].double().numpy()[:, None] - clouds[b].double().numpy()[None]) ** 2).sum(-1)
        np.testing.assert_array_equal(index[b].numpy(), np.argsort(ref, axis=1, kind="stable")[:, :9])
        np.testing.assert_allclose(dist[b].numpy(), np.sort(ref, axis=1)[:, :9], rtol=1e-5)


def test_knn_breaks_distance_ties_by_index():
    points = torch.tensor([[[1.0, 0, 0], [0, 1, 0], [-1, 0, 0], [0, 0, 5], [0, -1, 0]]])
    assert knn(torch.zeros(1, 1, 3), points, 4)[0, 0].tolist() == [0, 1, 2, 4]


@pytest.mark.parametrize("max_elements", [1 << 24, 70])  # one block, and one query per block
def test_ball_query_matches_the_kernel_copy(clouds, max_elements):
    queries = torch.cat([clouds[:, :6], torch.full((3, 1, 3), 50.0)], dim=1)  # the last query finds nothing
    index = ball_query(queries, clouds, 0.9, 5, max_elements=max_elements)
    assert index.shape == (3, 7, 5) and index.dtype == torch.long
    for b in range(3):
        np.testing.assert_array_equal(index[b].numpy(), ball_query_kernel_copy(queries[b].numpy(),
                                                                               clouds[b].numpy(), 0.9, 5))
    assert torch.all(index[:, -1] == 0)
    counts = [len(set(row.tolist())) for row in index[0, :6]]
    assert min(counts) < 5 <= max(counts)  # some balls are padded, some are full


def test_ball_query_radius_is_strict():
    points = torch.tensor([[[0.0, 0, 0], [0.5, 0, 0], [0.25, 0, 0], [1.0, 0, 0]]])
    assert ball_query(points[:, :1], points, 0.5, 3).tolist() == [[[0, 2, 0]]]


def test_squared_distances_and_gather(clouds):
    d = squared_distances(clouds[:, :4], clouds)
    torch.testing.assert_close(d, torch.cdist(clouds[:, :4].double(), clouds.double()).square().float())
    assert torch.equal(gather_points(clouds, torch.tensor([[[0, 1], [2, 3]]] * 3))[1, 1, 0], clouds[1, 2])


def test_impossible_requests_raise(clouds):
    with pytest.raises(ValueError, match="71 points from clouds of 70"):
        farthest_point_sample(clouds, 71)
    with pytest.raises(ValueError, match="nearest neighbours among 70"):
        knn(clouds[:, :2], clouds, 71)
    with pytest.raises(ValueError, match="tie_break"):
        farthest_point_sample(clouds, 3, tie_break="random")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_gives_the_cpu_indices():
    x = torch.from_numpy(np.random.default_rng(1).normal(size=(4, 2048, 3)).astype(np.float32))
    assert torch.equal(farthest_point_sample(x.cuda(), 512).cpu(), farthest_point_sample(x, 512))
    centres = gather_points(x, farthest_point_sample(x, 64))
    assert torch.equal(knn(centres.cuda(), x.cuda(), 32).cpu(), knn(centres, x, 32))
    assert torch.equal(ball_query(centres.cuda(), x.cuda(), 0.3, 16).cpu(), ball_query(centres, x, 0.3, 16))
