"""``python -m common.frozen_lm inspect|apply``: JSON / .npy outputs, one-line errors with exit code 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from common.frozen_lm import FrozenLM
from common.frozen_lm.__main__ import main

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "common.frozen_lm", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


def test_inspect_from_outside(meta_sharded_dir):
    proc = run_cli("inspect", str(meta_sharded_dir), "--layers", "-1")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    expected = {"family": "llama", "format": "meta", "dim": 64, "n_layers": 3, "n_heads": 4, "n_kv_heads": 2,
                "ffn_hidden": 192, "norm_eps": 1e-5, "layers": [2], "params_per_layer": 4 * 64 * 48 + 3 * 64 * 192
                + 2 * 64, "tensors_read": 9}
    assert {k: report[k] for k in expected} == expected
    assert report["bytes_read"] == report["params_per_layer"] * 4


def test_error_from_outside_is_one_line_and_exit_2(tmp_path):
    proc = run_cli("inspect", str(tmp_path / "missing"), "--layers", "-1")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "missing" in lines[0]


def test_apply_matches_the_module(tmp_path, hf_qwen2, capsys):
    x = np.random.default_rng(0).standard_normal((3, 7, 64)).astype(np.float32)
    mask = np.zeros((3, 7), dtype=bool)
    mask[1, 5:] = True
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "m.npy", mask)
    args = ["apply", str(hf_qwen2.path), "--layers", "0", "1", "--input", str(tmp_path / "x.npy"),
            "--output", str(tmp_path / "y.npy"), "--mask", str(tmp_path / "m.npy"), "--final-norm", "pretrained"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["layers"] == [0, 1] and summary["shape"] == [3, 7, 64]
    y = np.load(tmp_path / "y.npy")
    lm = FrozenLM.from_checkpoint(hf_qwen2.path, layers=(0, 1), final_norm="pretrained")
    with torch.no_grad():
        expected = lm(torch.from_numpy(x), torch.from_numpy(mask)).numpy()
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)

    # 2-D input, fp16, batching: same shape and dtype back
    np.save(tmp_path / "x2.npy", x[0].astype(np.float16))
    assert main(["apply", str(hf_qwen2.path), "--input", str(tmp_path / "x2.npy"), "--output",
                 str(tmp_path / "y2.npy"), "--batch-size", "1"]) == 0
    y2 = np.load(tmp_path / "y2.npy")
    assert y2.shape == (7, 64) and y2.dtype == np.float16 and np.isfinite(y2).all()


@pytest.mark.parametrize(
    "make_args, message",
    [
        (lambda d, ck: ["apply", ck, "--input", str(d / "narrow.npy"), "--output", str(d / "o.npy")],
         "token width 32 != model dim 64"),
        (lambda d, ck: ["apply", ck, "--input", str(d / "x.npy"), "--output", str(d / "o.npy"), "--mask",
                        str(d / "badmask.npy")], "does not match tokens"),
        (lambda d, ck: ["apply", ck, "--input", str(d / "ints.npy"), "--output", str(d / "o.npy")],
         "expected a float"),
        (lambda d, ck: ["apply", ck, "--input", str(d / "none.npy"), "--output", str(d / "o.npy")],
         "input file not found"),
        (lambda d, ck: ["inspect", ck, "--layers", "0", "2"], "consecutive"),
        (lambda d, ck: ["inspect", ck, "--layers", "x"], "--layers takes integers"),
        (lambda d, ck: ["inspect", str(d)], "not a checkpoint directory"),
    ],
)
def test_apply_and_inspect_errors(tmp_path, meta_dir, capsys, make_args, message):
    np.save(tmp_path / "narrow.npy", np.zeros((2, 3, 32), np.float32))
    np.save(tmp_path / "x.npy", np.zeros((2, 3, 64), np.float32))
    np.save(tmp_path / "badmask.npy", np.zeros((2, 4), bool))
    np.save(tmp_path / "ints.npy", np.zeros((2, 3, 64), np.int64))
    assert main(make_args(tmp_path, str(meta_dir))) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
