"""Shared by the train / evaluate tests: the command line of a tiny, fast ``image_cls.train`` run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
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


def evaluate_with_pipeline(run_dir: Path, out_dir: Path, pipeline: str) -> tuple[np.ndarray, dict]:
    """``image_cls.evaluate`` of ``run_dir``'s checkpoint on its ImageNet val split through ``--data-pipeline
    pipeline``: (saved logits, the ``imagenet`` results)."""
    from image_cls import evaluate

    logits, results = out_dir / f"{pipeline}.npy", out_dir / f"{pipeline}.json"
    argv = ["--resume", str(run_dir / "checkpoint.pth"), "--num-workers", "0", "--batch-size", "4", "--device", "cpu",
            "--data-pipeline", pipeline, "--save-logits", str(logits), "--output-json", str(results)]
    assert evaluate.main(argv) == 0
    return np.load(logits), json.loads(results.read_text())["results"]["imagenet"]
