"""Plain-torch FPS / kNN / grouping against brute-force numpy references (float64 distance matrices)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from point_cloud.grouping import farthest_point_sample, fps, gather_points, group_points, knn


def fps_reference(xyz: np.ndarray, n: int, start: int = 0) -> list[int]:
    """Textbook FPS from the full pairwise distance matrix: next = argmax over points of min distance to chosen."""
    dist = ((xyz[:, None, :] - xyz[None, :, :]) ** 2).sum(-1)
    chosen = [start]
    for _ in range(n - 1):
        chosen.append(int(np.argmax(dist[chosen].min(axis=0))))
    return chosen


def knn_reference(queries: np.ndarray, points: np.ndarray, k: int) -> np.ndarray:
    dist = ((queries[:, None, :] - points[None, :, :]) ** 2).sum(-1)
    return np.argsort(dist, axis=1, kind="stable")[:, :k]


@pytest.fixture
def clouds() -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(0).normal(size=(3, 60, 3)).astype(np.float32))


def test_fps_matches_the_brute_force_reference(clouds):
    index = farthest_point_sample(clouds, 20)
    assert index.shape == (3, 20) and index.dtype == torch.long
    for b in range(3):
        assert index[b].tolist() == fps_reference(clouds[b].double().numpy(), 20)
    torch.testing.assert_close(fps(clouds, 20), torch.stack([clouds[b, index[b]] for b in range(3)]))


def test_fps_ties_follow_the_kernel_and_the_seeded_variant_takes_the_lowest_index():
    square = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0], [1, 1, 0]]])
    # pointnet2_ops: 4 threads; (1,1) twice at distance 2: thread 0 (point 4) beats thread 3 (point 3);
    # then (1,0) (thread 1, bit-reversed 2) and (0,1) (thread 2, bit-reversed 1) tie and point 2 wins
    assert farthest_point_sample(square, 4)[0].tolist() == [0, 4, 2, 1]
    # the numpy FPS (np.argmax): the first maximum; starting at 0 here too
    gen = _generator_starting_at(0, 5)
    assert farthest_point_sample(square, 4, gen)[0].tolist() == [0, 3, 1, 2]


def _generator_starting_at(index: int, n_points: int) -> torch.Generator:
    for seed in range(1000):
        if torch.randint(n_points, (1,), generator=torch.Generator().manual_seed(seed)).item() == index:
            return torch.Generator().manual_seed(seed)
    raise AssertionError("no seed found")


def test_fps_follows_pointnet2_ops_near_the_origin_but_the_seeded_variant_does_not():
    xyz = torch.from_numpy(np.random.default_rng(2).normal(size=(1, 30, 3)).astype(np.float32)) * 10
    xyz[0, 9] = torch.tensor([0.0, 0.03, 0.0])  # x²+y²+z² = 9e-4 <= 1e-3: pointnet2_ops never picks it
    kernel = farthest_point_sample(xyz, 30)[0].tolist()
    assert 9 not in kernel and len(set(kernel)) == 29 and kernel.count(kernel[-1]) == 2  # nothing else left
    seeded = farthest_point_sample(xyz, 30, _generator_starting_at(0, 30))[0].tolist()
    assert sorted(seeded) == list(range(30)) and seeded == fps_reference(xyz[0].double().numpy(), 30)


def test_fps_with_a_generator_starts_at_a_seeded_random_point(clouds):
    start = torch.randint(60, (3,), generator=torch.Generator().manual_seed(7))
    index = farthest_point_sample(clouds, 10, torch.Generator().manual_seed(7))
    assert index[:, 0].tolist() == start.tolist() and len(set(start.tolist())) > 1
    for b in range(3):
        assert index[b].tolist() == fps_reference(clouds[b].double().numpy(), 10, start=int(start[b]))
    assert torch.equal(index, farthest_point_sample(clouds, 10, torch.Generator().manual_seed(7)))


def test_knn_matches_the_reference_nearest_first(clouds):
    queries = clouds[:, :7] + 0.01
    index = knn(queries, clouds, 9)
    for b in range(3):
        np.testing.assert_array_equal(index[b].numpy(), knn_reference(queries[b].double().numpy(),
                                                                      clouds[b].double().numpy(), 9))


def test_knn_breaks_distance_ties_by_index():
    points = torch.tensor([[[1.0, 0, 0], [0, 1, 0], [-1, 0, 0], [0, 0, 5], [0, -1, 0]]])
    assert knn(torch.zeros(1, 1, 3), points, 4)[0, 0].tolist() == [0, 1, 2, 4]


def test_group_points_recentres_the_knn_groups_of_the_fps_centres(clouds):
    neighborhood, center = group_points(clouds, 8, 5)
    assert neighborhood.shape == (3, 8, 5, 3) and center.shape == (3, 8, 3)
    for b in range(3):
        xyz = clouds[b].double().numpy()
        centres = fps_reference(xyz, 8)
        np.testing.assert_array_equal(center[b].numpy(), clouds[b, centres].numpy())
        groups = knn_reference(xyz[centres], xyz, 5)
        np.testing.assert_allclose(neighborhood[b].numpy(), (xyz[groups] - xyz[centres][:, None]), atol=1e-6)
    assert torch.all(neighborhood[:, :, 0] == 0)  # each centre is its own nearest point


def test_gather_points_takes_any_index_shape(clouds):
    index = torch.tensor([[[0, 1], [2, 3]]] * 3)
    assert torch.equal(gather_points(clouds, index)[1, 1, 0], clouds[1, 2])


def test_impossible_requests_raise(clouds):
    with pytest.raises(ValueError, match="61 points from clouds of 60"):
        farthest_point_sample(clouds, 61)
    with pytest.raises(ValueError, match="nearest neighbours among 60"):
        knn(clouds[:, :2], clouds, 61)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_gives_the_cpu_indices():
    x = torch.from_numpy(np.random.default_rng(1).normal(size=(4, 2048, 3)).astype(np.float32))
    assert torch.equal(farthest_point_sample(x.cuda(), 512).cpu(), farthest_point_sample(x, 512))
    centres = fps(x, 64)
    assert torch.equal(knn(centres.cuda(), x.cuda(), 32).cpu(), knn(centres, x, 32))
