"""``vqa_2d.evaluate`` under torchrun with 2 CPU processes (gloo): retrieval scoring is sharded by image (3 images
split 2 + 1, one score file per rank) and gives one process's recall."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from vqa_fixtures import TINY_MODEL, write_f30k_karpathy

from vqa_2d import train

REPO_ROOT = Path(__file__).resolve().parents[2]
QUICK = [*TINY_MODEL, "--num-workers", "0", "--batch-size", "4", "--warmup-epochs", "0", "--device", "cpu",
         "--epochs", "1"]


def evaluate(tmp_path: Path, name: str, procs: int, *argv: str) -> dict:
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(procs)] if procs > 1 else []
    results = tmp_path / f"{name}.json"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, *launcher, "-m", "vqa_2d.evaluate", *argv, "--device", "cpu",
                           "--results", str(results)], env=env, cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(results.read_text())


@pytest.mark.slow
def test_two_processes_shard_retrieval_scoring(tmp_path, tokenizer_dir):
    f30k = write_f30k_karpathy(tmp_path / "f30k", n_train=2, n_test=3)
    train.run(["--dataset", "f30k", "--data-format", "json", "--data-path", str(f30k), "--tokenizer",
               str(tokenizer_dir), "--draw-false-text", "1", "--output-dir", str(tmp_path / "f30k_run"), *QUICK])
    ckpt = str(tmp_path / "f30k_run" / "best.pth")
    one = evaluate(tmp_path, "f30k_one", 1, "--resume", ckpt)
    two = evaluate(tmp_path, "f30k_two", 2, "--resume", ckpt, "--score-cache", str(tmp_path / "scores"))
    assert two == pytest.approx(one)
    rows = [sorted(torch.load(tmp_path / "scores" / f"scores_rank{r}of2.pt", weights_only=True)["rows"])
            for r in range(2)]
    assert rows == [[0, 1], [2]]

