"""Forecasting metrics, exactly as the leaderboards compute them.

Argoverse 1 (argoverse-api ``eval_forecasting.get_displacement_errors_and_miss_rate``): per sequence take the first
K trajectories — with probabilities, the K most likely by a stable sort, their probabilities renormalised to sum 1
— the min-FDE trajectory (first on ties), its ADE (``minADE``: *not* the smallest ADE), ``MR`` = min-FDE above the
miss threshold; with probabilities also p-minADE/p-minFDE (+ min(-log p, -log 0.05)), p-MR (1 if missed else 1 - p)
and brier-minADE/brier-minFDE (+ (1 - p)^2), p the min-FDE trajectory's renormalised probability. Means over
sequences.

Argoverse 2 (``av2.datasets.motion_forecasting.eval.metrics``): per trajectory ADE, FDE, missed = FDE > 2.0 m,
brier-FDE = FDE + (1 - p)^2; the challenge reports, over the K = 6 forecasts, minADE and minFDE of the min-FDE
forecast, MR and brier-minFDE of that forecast (probabilities normalised).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

LOW_PROB_THRESHOLD_FOR_METRICS = 0.05
MISS_THRESHOLD = 2.0


def get_ade(forecast: np.ndarray, gt: np.ndarray) -> float:
    """Mean L2 error over the steps of one (T, 2) trajectory."""
    return float(np.linalg.norm(forecast - gt, axis=-1).mean())


def get_fde(forecast: np.ndarray, gt: np.ndarray) -> float:
    """L2 error at the last step."""
    return float(np.linalg.norm(forecast[-1] - gt[-1]))


def get_displacement_errors_and_miss_rate(
    forecasted_trajectories: Mapping[object, Sequence[np.ndarray]],
    gt_trajectories: Mapping[object, np.ndarray],
    max_guesses: int,
    horizon: int,
    miss_threshold: float = MISS_THRESHOLD,
    forecasted_probabilities: Mapping[object, Sequence[float]] | None = None,
) -> dict[str, float]:
    """argoverse-api's function of the same name (same arguments, same keys, same values)."""
    min_ade, min_fde, misses = [], [], []
    p_ade, p_fde, p_miss, b_ade, b_fde = [], [], [], [], []
    for key, gt in gt_trajectories.items():
        trajs = forecasted_trajectories[key]
        n = min(max_guesses, len(trajs))
        if forecasted_probabilities is not None:
            order = np.argsort([-x for x in forecasted_probabilities[key]], kind="stable")[:n]
            probs = [forecasted_probabilities[key][t] for t in order]
            total = sum(probs)
            probs = [p / total for p in probs]
        else:
            order = np.arange(n)
        pruned = [np.asarray(trajs[t]) for t in order]
        best, best_fde = 0, float("inf")
        for j, traj in enumerate(pruned):
            fde = get_fde(traj[:horizon], gt[:horizon])
            if fde < best_fde:
                best, best_fde = j, fde
        ade = get_ade(pruned[best][:horizon], gt[:horizon])
        min_ade.append(ade)
        min_fde.append(best_fde)
        misses.append(best_fde > miss_threshold)
        if forecasted_probabilities is not None:
            p = probs[best]
            neg_log = min(-math.log(p) if p > 0 else math.inf, -math.log(LOW_PROB_THRESHOLD_FOR_METRICS))
            p_miss.append(1.0 if best_fde > miss_threshold else 1.0 - p)
            p_ade.append(neg_log + ade)
            p_fde.append(neg_log + best_fde)
            b_ade.append((1 - p) ** 2 + ade)
            b_fde.append((1 - p) ** 2 + best_fde)
    out = {"minADE": _mean(min_ade), "minFDE": _mean(min_fde), "MR": _mean(misses)}
    if forecasted_probabilities is not None:
        out.update({"p-minADE": _mean(p_ade), "p-minFDE": _mean(p_fde), "p-MR": _mean(p_miss),
                    "brier-minADE": _mean(b_ade), "brier-minFDE": _mean(b_fde)})
    return out


def _mean(values: list) -> float:
    return sum(values) / len(values) if values else float("nan")


# ---- Argoverse 2 (per-scenario functions of av2's eval.metrics) -----------------------------------------------------
def compute_ade(forecasts: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """(K, T, 2), (T, 2) -> (K,) average displacement errors."""
    return np.linalg.norm(forecasts - gt, axis=-1).mean(-1)


def compute_fde(forecasts: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """(K, T, 2), (T, 2) -> (K,) final displacement errors."""
    return np.linalg.norm(forecasts[:, -1] - gt[-1], axis=-1)


def compute_is_missed_prediction(forecasts: np.ndarray, gt: np.ndarray,
                                 miss_threshold_m: float = MISS_THRESHOLD) -> np.ndarray:
    return compute_fde(forecasts, gt) > miss_threshold_m


def compute_brier_fde(forecasts: np.ndarray, gt: np.ndarray, probabilities: np.ndarray,
                      normalize: bool = False) -> np.ndarray:
    """(K,) FDE + (1 - p)^2; ``normalize`` divides the probabilities by their sum first."""
    probs = np.asarray(probabilities, dtype=np.float64)
    if normalize:
        probs = probs / probs.sum()
    if (probs < 0).any() or (probs > 1).any():
        raise ValueError("forecast probabilities must lie in [0, 1]")
    return compute_fde(forecasts, gt) + (1.0 - probs) ** 2


def av2_scenario_metrics(forecasts: np.ndarray, gt: np.ndarray, probabilities: np.ndarray,
                         k: int = 6) -> dict[str, float]:
    """One scenario's challenge metrics over the first ``k`` forecasts (already ordered by the submitter)."""
    forecasts, probs = forecasts[:k], np.asarray(probabilities[:k], dtype=np.float64)
    fde = compute_fde(forecasts, gt)
    best = int(np.argmin(fde))
    return {"minADE": float(compute_ade(forecasts[best:best + 1], gt)[0]), "minFDE": float(fde[best]),
            "MR": float(fde[best] > MISS_THRESHOLD),
            "brier-minFDE": float(compute_brier_fde(forecasts, gt, probs, normalize=True)[best])}


def av2_metrics(forecasts: Sequence[np.ndarray], gts: Sequence[np.ndarray], probabilities: Sequence[np.ndarray],
                k: int = 6) -> dict[str, float]:
    """Means of ``av2_scenario_metrics`` over scenarios."""
    rows = [av2_scenario_metrics(f, g, p, k) for f, g, p in zip(forecasts, gts, probabilities)]
    return {key: _mean([r[key] for r in rows]) for key in ("minADE", "minFDE", "MR", "brier-minFDE")}
