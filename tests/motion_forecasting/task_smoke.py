"""The registry smoke run of motion_forecasting: a tiny AV1 split in the real formats, VectorNet + the tiny frozen
LLaMA block, CPU, a few seconds."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mf_fixtures import write_av1_csv, write_av1_map, write_av1_split  # noqa: E402


def smoke_argv(tmp_path: Path, llm_dir: Path) -> list[str]:
    root = tmp_path / "av1"
    write_av1_map(root / "map_files")
    write_av1_split(root / "train", 8)
    write_av1_split(root / "val", 4, first=100)
    return ["--dataset", "av1", "--train-path", str(root / "train"), "--val-path", str(root / "val"),
            "--map-dir", str(root / "map_files"), "--model", "vectornet", "--subgraph-hidden", "16",
            "--global-width", "32", "--decoder-hidden", "32", "--llm-variant", "frozen", "--llm-path", str(llm_dir),
            "--num-workers", "0", "--batch-size", "4", "--warmup-epochs", "0", "--device", "cpu"]


def analysis_paths(tmp_path: Path) -> list[Path]:
    """One AV1 forecasting CSV (the csv module's writer; the smoke run's --map-dir has its city) for
    ``Task.analysis_samples``."""
    return [write_av1_csv(tmp_path / "7.csv", seed=7)]
