"""``smoke_argv`` for the registry tests: a tiny ImageNet-layout folder (JPEGs written by PIL, two unreadable
files) and ``vit_demo_llm`` with the tiny frozen LLaMA block, CPU, a few seconds."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from image_fixtures import write_imagenet_folder, write_jpeg  # noqa: E402


def smoke_argv(tmp_path: Path, llm_dir: Path) -> list[str]:
    root = write_imagenet_folder(tmp_path / "imagenet")
    return ["--data-path", str(root), "--model", "vit_demo_llm", "--input-size", "48", "--batch-size", "4",
            "--llm-variant", "frozen", "--llm-path", str(llm_dir), "--num-workers", "0", "--warmup-epochs", "0",
            "--no-model-ema", "--device", "cpu", "--print-freq", "0"]


def analysis_paths(tmp_path: Path) -> list[Path]:
    """One JPEG for ``Task.analysis_samples``."""
    return [write_jpeg(tmp_path / "cat.JPEG", (200, 120, 40), size=(40, 36), seed=1)]
