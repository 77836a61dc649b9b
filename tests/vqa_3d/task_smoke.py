"""The registry tests' entry for vqa_3d: a tiny SQA3D dataset in the real formats and train flags for it."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vqa3d_fixtures import write_dataset, write_scene  # noqa: E402

TINY_MODEL = ["--num-points", "256", "--sa-npoints", "64", "32", "16", "8", "--num-proposals", "8",
              "--hidden-size", "32", "--proposal-size", "16", "--mcan-flat-mlp-size", "16",
              "--mcan-flat-out-size", "32", "--mcan-num-layers", "1"]


def smoke_argv(tmp_path: Path, llm_dir: Path) -> list[str]:
    paths = write_dataset(tmp_path / "sqa3d", n_points=400)
    return ["--sqa-path", str(paths["sqa"]), "--scannet-data", str(paths["scannet_data"]), "--glove",
            str(paths["glove"]), "--eval-splits", "test", *TINY_MODEL, "--batch-size", "4", "--num-workers", "0",
            "--llm-variant", "frozen", "--llm-path", str(llm_dir)]


def analysis_paths(tmp_path: Path) -> list[Path]:
    """One ScanQA scene (numpy's writer, all five files) for ``Task.analysis_samples``."""
    write_scene(tmp_path, "scene0007_00", seed=7, n_points=400)
    return [tmp_path / "scene0007_00_aligned_vert.npy"]
