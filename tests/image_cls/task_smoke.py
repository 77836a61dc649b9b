"""``smoke_argv`` for the registry tests: a tiny ImageNet-layout folder (JPEGs written by PIL, two unreadable
files) and ``vit_demo_llm`` with the tiny frozen LLaMA block, CPU, a few seconds."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from image_fixtures import WNIDS, write_corrupt_files, write_jpeg  # noqa: E402


def smoke_argv(tmp_path: Path, llm_dir: Path) -> list[str]:
    root = tmp_path / "imagenet"
    for c, wnid in enumerate(WNIDS):
        for i in range(4):
            write_jpeg(root / "train" / wnid / f"{wnid}_{i}.JPEG", 40 + 80 * c, seed=10 * c + i)
        for i in range(2):
            write_jpeg(root / "val" / wnid / f"ILSVRC2012_val_{c}{i}.JPEG", 40 + 80 * c, seed=100 + 10 * c + i)
    write_corrupt_files([root / "train" / w for w in WNIDS])
    return ["--data-path", str(root), "--model", "vit_demo_llm", "--input-size", "48", "--batch-size", "4",
            "--llm-variant", "frozen", "--llm-path", str(llm_dir), "--num-workers", "0", "--warmup-epochs", "0",
            "--no-model-ema", "--device", "cpu", "--print-freq", "0"]


def analysis_paths(tmp_path: Path) -> list[Path]:
    """One JPEG for ``Task.analysis_samples``."""
    return [write_jpeg(tmp_path / "cat.JPEG", (200, 120, 40), size=(40, 36), seed=1)]
