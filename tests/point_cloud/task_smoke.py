"""``smoke_argv`` for the registry tests: ScanObjectNN h5 files (written with h5py) and a tiny Point-BERT with the
tiny frozen LLaMA block, CPU, a few seconds."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pc_fixtures import TINY_ARGS, write_scanobjectnn  # noqa: E402


def smoke_argv(tmp_path: Path, llm_dir: Path) -> list[str]:
    root = write_scanobjectnn(tmp_path / "ScanObjectNN")
    return ["--dataset", "objectonly", "--data-path", str(root), *TINY_ARGS, "--llm-variant", "frozen",
            "--llm-path", str(llm_dir), "--num-workers", "0", "--batch-size", "4", "--warmup-epochs", "0",
            "--device", "cpu"]


def analysis_paths(tmp_path: Path) -> list[Path]:
    """One (96, 3) cloud as ``.npy`` (numpy's writer) for ``Task.analysis_samples``."""
    import numpy as np

    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "cloud.npy"
    np.save(path, np.random.default_rng(0).normal(size=(96, 3)).astype(np.float32))
    return [path]
