"""Leaderboard submission files, in the formats the evaluation servers read.

- Argoverse 1 (EvalAI): argoverse-api ``generate_forecasting_h5``: one HDF5 dataset ``argoverse_forecasting`` of
  rows ``[seq_id, x, y, probability]``, K x 30 rows per sequence (mode-major), city coordinates, gzip level 9.
- Argoverse 2: av2 ``ChallengeSubmission.to_parquet``: one row per (scenario, track, mode) with columns
  ``scenario_id, track_id, probability, predicted_trajectory_x, predicted_trajectory_y`` (60 values each).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

AV2_COLUMNS = ["scenario_id", "track_id", "probability", "predicted_trajectory_x", "predicted_trajectory_y"]


def write_av1_h5(path: str | Path, trajectories: Mapping[int, np.ndarray], probabilities: Mapping[int, np.ndarray],
                 future_frames: int = 30) -> Path:
    """``trajectories[seq_id]`` (K, 30, 2) in city coordinates, ``probabilities[seq_id]`` (K,)."""
    import h5py

    rows = []
    for key, value in trajectories.items():
        value = np.asarray(value)
        if value.shape[1:] != (future_frames, 2):
            raise ValueError(f"sequence {key}: trajectories must be (K, {future_frames}, 2), got {value.shape}")
        probs = np.asarray(probabilities[key], dtype=np.float64)
        if len(probs) != len(value):
            raise ValueError(f"sequence {key}: {len(probs)} probabilities for {len(value)} trajectories")
        flat = value.reshape(-1, 2).astype(np.float32)
        rows.append(np.column_stack([np.full(len(flat), int(key), dtype=np.float64), flat,
                                     np.repeat(probs, future_frames)]))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f.create_dataset("argoverse_forecasting", data=np.concatenate(rows) if rows else np.zeros((0, 4)),
                         compression="gzip", compression_opts=9)
    return path


def read_av1_h5(path: str | Path, future_frames: int = 30) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
    """Inverse of ``write_av1_h5`` (for checks)."""
    import h5py

    with h5py.File(path, "r") as f:
        data = f["argoverse_forecasting"][()]
    trajs, probs = {}, {}
    for key in dict.fromkeys(data[:, 0].astype(np.int64).tolist()):
        rows = data[data[:, 0] == key]
        trajs[key] = rows[:, 1:3].reshape(-1, future_frames, 2)
        probs[key] = rows[::future_frames, 3]
    return trajs, probs


def write_av2_parquet(path: str | Path, predictions: Mapping[str, tuple[np.ndarray, Mapping[str, np.ndarray]]]) -> Path:
    """``predictions[scenario_id] = (probabilities (K,), {track_id: (K, 60, 2) city coordinates})``; probabilities
    must sum to 1 (av2 checks)."""
    rows = {c: [] for c in AV2_COLUMNS}
    for sid, (probs, tracks) in predictions.items():
        probs = np.asarray(probs, dtype=np.float64)
        if not np.isclose(probs.sum(), 1.0):
            raise ValueError(f"scenario {sid}: probabilities sum to {probs.sum()}, not 1")
        for tid, traj in tracks.items():
            traj = np.asarray(traj, dtype=np.float64)
            if traj.shape != (len(probs), 60, 2):
                raise ValueError(f"scenario {sid} track {tid}: expected ({len(probs)}, 60, 2), got {traj.shape}")
            for k in range(len(probs)):
                rows["scenario_id"].append(str(sid))
                rows["track_id"].append(str(tid))
                rows["probability"].append(float(probs[k]))
                rows["predicted_trajectory_x"].append(traj[k, :, 0].tolist())
                rows["predicted_trajectory_y"].append(traj[k, :, 1].tolist())
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(rows), path)
    return path
