"""Shared by the train / evaluate tests: the command line of a tiny, fast ``image_cls.train`` run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

# vit_demo_llm (width 96, depth 4, patch 4) on 48 px RGB crops: every code path of the real recipe, in seconds.
TINY_RUN = [
    "--model", "vit_demo_llm", "--input-size", "48", "--drop-path", "0.1", "--batch-size", "4",
    "--epochs", "1", "--warmup-epochs", "0", "--num-workers", "0", "--device", "cpu", "--amp", "none",
    "--no-model-ema", "--print-freq", "0",
]


def train_argv(data_path: Path, output_dir: Path, *extra: str) -> list[str]:
    """Arguments of a tiny ImageNet-layout training run (``extra`` flags override the defaults above)."""
    return ["--data-path", str(data_path), "--output-dir", str(output_dir), *TINY_RUN, *extra]


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models: one intra-op thread avoids OpenMP spin-waiting on a busy 2-core CI box (10x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
