"""``smoke_argv`` for the registry tests: a tiny VQAv2 arrow set and a tiny METER with the frozen block."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vqa_fixtures import TINY_MODEL, picture, save_tokenizer, write_vqa_arrow  # noqa: E402


def smoke_argv(tmp_path: Path, llm_dir: Path) -> list[str]:
    data = write_vqa_arrow(tmp_path / "vqa_arrow", n_train=4, n_val=2)
    tokenizer = save_tokenizer(tmp_path / "tokenizer")
    return ["--dataset", "vqav2", "--data-format", "arrow", "--data-path", str(data), "--tokenizer", str(tokenizer),
            *TINY_MODEL, "--llm-variant", "frozen", "--llm-path", str(llm_dir), "--num-workers", "0",
            "--batch-size", "4", "--warmup-epochs", "0", "--lr", "1e-4"]


def analysis_paths(tmp_path: Path) -> list[Path]:
    """One JPEG (PIL's writer) for ``Task.analysis_samples``."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "red.jpg"
    picture("red", size=40).save(path, format="JPEG")
    return [path]
