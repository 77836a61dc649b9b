"""The leaderboard metrics on hand-made cases with known answers (argoverse-api and av2 definitions)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from motion_forecasting.metrics import (
    av2_metrics,
    av2_scenario_metrics,
    compute_ade,
    compute_brier_fde,
    compute_fde,
    compute_is_missed_prediction,
    get_displacement_errors_and_miss_rate,
)

GT = np.array([[1.0, 0.0], [2.0, 0.0]])
A = np.array([[1.0, 3.0], [2.0, 0.5]])  # step errors 3, 0.5: ADE 1.75, FDE 0.5  <- min FDE
B = np.array([[1.0, 0.0], [2.0, 1.0]])  # step errors 0, 1:   ADE 0.5,  FDE 1.0  <- min ADE


def metrics(trajs, k, probs=None, gt=GT, threshold=2.0):
    return get_displacement_errors_and_miss_rate({7: trajs}, {7: gt}, k, 2, threshold,
                                                 None if probs is None else {7: probs})


def test_min_ade_is_the_ade_of_the_min_fde_trajectory():
    m = metrics([A, B], 6)
    assert m["minFDE"] == pytest.approx(0.5)
    assert m["minADE"] == pytest.approx(1.75)  # the smallest ADE would be 0.5 (trajectory B)
    assert m["MR"] == 0.0
    assert set(m) == {"minADE", "minFDE", "MR"}  # no probabilities: no p-/brier- keys


def test_probability_weighted_variants():
    m = metrics([A, B], 6, [0.2, 0.8])
    p = 0.2  # A (the min-FDE trajectory) after the stable sort by probability: order B, A
    assert m["p-minADE"] == pytest.approx(-math.log(p) + 1.75)
    assert m["p-minFDE"] == pytest.approx(-math.log(p) + 0.5)
    assert m["p-MR"] == pytest.approx(1 - p)
    assert m["brier-minADE"] == pytest.approx((1 - p) ** 2 + 1.75)
    assert m["brier-minFDE"] == pytest.approx((1 - p) ** 2 + 0.5)


def test_top_k_by_probability_then_renormalised():
    m = metrics([A, B], 1, [0.2, 0.8])  # K = 1 keeps the most likely: B, its probability renormalised to 1
    assert (m["minFDE"], m["minADE"]) == pytest.approx((1.0, 0.5))
    assert m["p-minFDE"] == pytest.approx(1.0) and m["brier-minFDE"] == pytest.approx(1.0)
    assert metrics([A, B], 1)["minFDE"] == pytest.approx(0.5)  # without probabilities: the first one
    assert metrics([A, B], 1, [0.5, 0.5])["minFDE"] == pytest.approx(0.5)  # stable sort: ties keep their order
    m = metrics([A, B, B], 2, [0.1, 0.6, 0.3])  # keeps B (0.6), B (0.3): renormalised 2/3, 1/3
    assert m["brier-minFDE"] == pytest.approx((1 - 2 / 3) ** 2 + 1.0)


def test_probability_floor_and_misses():
    m = metrics([A, B], 6, [0.01, 0.99])
    assert m["p-minFDE"] == pytest.approx(-math.log(0.05) + 0.5)  # -log p capped at -log 0.05
    far = [A + 10, B + 10]
    m = get_displacement_errors_and_miss_rate({1: [A, B], 2: far}, {1: GT, 2: GT}, 6, 2, 2.0,
                                              {1: [0.5, 0.5], 2: [0.3, 0.7]})
    assert m["MR"] == pytest.approx(0.5)
    assert m["p-MR"] == pytest.approx((0.5 + 1.0) / 2)  # a miss counts 1 whatever its probability
    assert metrics([B, B], 6)["minADE"] == pytest.approx(0.5)  # FDE ties: the first trajectory


def test_horizon_cuts_the_trajectories():
    long_gt = np.vstack([GT, [[50.0, 50.0]]])
    m = get_displacement_errors_and_miss_rate({0: [np.vstack([A, [[0, 0]]])]}, {0: long_gt}, 6, 2, 2.0)
    assert m["minFDE"] == pytest.approx(0.5)


def test_av2_per_trajectory_functions():
    f = np.stack([A, B])
    np.testing.assert_allclose(compute_ade(f, GT), [1.75, 0.5])
    np.testing.assert_allclose(compute_fde(f, GT), [0.5, 1.0])
    np.testing.assert_array_equal(compute_is_missed_prediction(f + [0, 1.2], GT), [False, True])
    np.testing.assert_allclose(compute_brier_fde(f, GT, np.array([0.2, 0.8])), [0.5 + 0.64, 1.0 + 0.04])
    np.testing.assert_allclose(compute_brier_fde(f, GT, np.array([1.0, 3.0]), normalize=True),
                               [0.5 + 0.75 ** 2, 1.0 + 0.25 ** 2])
    with pytest.raises(ValueError):
        compute_brier_fde(f, GT, np.array([1.0, 3.0]))


def test_av2_challenge_metrics():
    m = av2_scenario_metrics(np.stack([A, B]), GT, np.array([0.2, 0.8]))
    assert m == pytest.approx({"minADE": 1.75, "minFDE": 0.5, "MR": 0.0, "brier-minFDE": 0.5 + 0.64})
    both = av2_metrics([np.stack([A, B]), np.stack([A + 10, B + 10])], [GT, GT], [[0.2, 0.8], [0.5, 0.5]])
    assert both["MR"] == pytest.approx(0.5)
    assert both["minFDE"] == pytest.approx((0.5 + float(np.hypot(10, 10.5))) / 2)
