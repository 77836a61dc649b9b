"""``image_cls.evaluate`` under torchrun with 2 CPU processes (gloo): the saved logits are in dataset order, none
duplicated or dropped, although 5 images do not split evenly (3 + 2), and the metrics equal one process's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from image_fixtures import write_jpeg

from common.engine import checkpoint
from image_cls.data.robustness import imagenet_1k_wnids
from image_cls.models import build_model

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_two_processes_save_logits_in_dataset_order(tmp_path):
    wnids = imagenet_1k_wnids()
    for i in range(5):
        write_jpeg(tmp_path / "sketch" / wnids[i] / f"{i}.JPEG", 40 * i, (52, 52), seed=i)
    config = {"model": "vit_demo_llm", "input_size": 48, "dataset": "imagenet", "llm_variant": "none"}
    ckpt = checkpoint.save(tmp_path / "checkpoint.pth",
                           checkpoint.build_state(model=build_model(config, 1000), epoch=0, config=config))
    common = ["-m", "image_cls.evaluate", "--resume", str(ckpt), "--eval-sets", "imagenet-sketch",
              "--imagenet-sketch-path", str(tmp_path / "sketch"), "--num-workers", "0", "--batch-size", "2",
              "--device", "cpu"]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    for name, launcher in (("one", []), ("two", ["-m", "torch.distributed.run", "--standalone",
                                                 "--nproc_per_node", "2"])):
        argv = [sys.executable, *launcher, *common, "--save-logits", str(tmp_path / f"{name}.npy"),
                "--output-json", str(tmp_path / f"{name}.json")]
        done = subprocess.run(argv, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=240)
        assert done.returncode == 0, done.stderr[-3000:]
    one, two = np.load(tmp_path / "one.npy"), np.load(tmp_path / "two.npy")
    assert one.shape == two.shape == (5, 1000)
    np.testing.assert_allclose(two, one, rtol=1e-5, atol=1e-6)
    results = [json.loads((tmp_path / f"{n}.json").read_text())["results"]["imagenet-sketch"] for n in ("one", "two")]
    assert results[0]["n"] == results[1]["n"] == 5
    assert results[0]["acc1"] == results[1]["acc1"]
