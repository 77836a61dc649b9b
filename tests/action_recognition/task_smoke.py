"""``smoke_argv`` for the registry tests: SSv2-layout CSVs and videos (encoded with PyAV) and a tiny VideoMAE ViT
with the tiny frozen LLaMA block, CPU, a few seconds."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ar_fixtures import CODECS, TINY_ARGS, write_ssv2, write_video  # noqa: E402


def smoke_argv(tmp_path: Path, llm_dir: Path) -> list[str]:
    data = write_ssv2(tmp_path / "ssv2", num_train=4, num_val=2)
    return ["--data-path", str(data["lists"]), "--data-root", str(data["videos"]), *TINY_ARGS, "--nb-classes", "3",
            "--llm-variant", "frozen", "--llm-path", str(llm_dir), "--llm-layers", "-1", "--num-workers", "0",
            "--batch-size", "2", "--warmup-epochs", "0", "--device", "cpu", "--test-num-crop", "1"]


def analysis_paths(tmp_path: Path) -> list[Path]:
    """One 16-frame video (PyAV's encoder) for ``Task.analysis_samples``."""
    ext, codec = CODECS[0]
    return [write_video(tmp_path / f"clip.{ext}", codec, 16)]
