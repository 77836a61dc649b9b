"""End to end through the command lines: train and evaluate on h5 / ModelNet fixtures, +LLM, and clear errors."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import h5py
import pytest
import torch
import yaml
from pc_fixtures import TINY_ARGS, write_modelnet_cache, write_point_bert_pretrained

from common.engine import checkpoint, loop
from common.engine import logging as runlog
from point_cloud import evaluate, train

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "point_cloud" / "configs"
QUICK = [*TINY_ARGS, "--total-batch-size", "4", "--num-workers", "0", "--warmup-epochs", "1", "--device", "cpu",
         "--vote-times", "2"]


def run(module, argv: list[str]) -> None:
    loop.run_cli(module.main, module.build_parser(), [str(a) for a in argv])


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("pointbert") / "Point-BERT.pth"
    write_point_bert_pretrained(path, seed=5)
    return path


def test_train_then_evaluate_scanobjectnn(tmp_path, scanobjectnn_root, pretrained):
    out = tmp_path / "run"
    run(train, ["--config", CONFIGS / "scanobjectnn_hardest_baseline.yaml", "--data-path", scanobjectnn_root,
                "--ckpts", pretrained, "--output-dir", out, "--epochs", "2", "--vote", *QUICK])
    rows = runlog.read_log(out)
    assert [r["epoch"] for r in rows] == [0, 1]
    for r in rows:  # 6 test clouds: the overall accuracy is a multiple of 100/6
        assert 0 <= r["test_acc"] <= 100 and round(r["test_acc"] * 6 / 100, 6).is_integer()
        assert "test_acc_vote" in r and math.isfinite(r["train_loss"])
    assert rows[-1]["best_acc"] == max(r["test_acc"] for r in rows)
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["batch_size"] == 4 and saved["dataset"] == "hardest" and saved["no_decay_lr_mult"] == 0.1

    results = tmp_path / "eval.json"
    run(evaluate, ["--config", out / "config.yaml", "--resume", out / "best.pth", "--results", results])
    assert json.loads(results.read_text())["test_acc"] == rows[-1]["best_acc"]
    alone = tmp_path / "alone.json"  # without --config: the config saved in the checkpoint, flags given here on top
    run(evaluate, ["--resume", out / "best.pth", "--results", alone, "--num-workers", "0", "--device", "cpu"])
    assert json.loads(alone.read_text())["test_acc"] == rows[-1]["best_acc"]


def test_llm_variant_trains_and_saves_only_trainable_weights(tmp_path, scanobjectnn_root, pretrained, tiny_llama_dir):
    out = tmp_path / "llm"
    run(train, ["--config", CONFIGS / "scanobjectnn_objectbg_llama.yaml", "--data-path", scanobjectnn_root,
                "--ckpts", pretrained, "--llm-path", tiny_llama_dir, "--output-dir", out, "--epochs", "1", *QUICK])
    ckpt = checkpoint.load(out / "checkpoint.pth")
    assert "llm.in_proj.weight" in ckpt["model"] and not any(k.startswith("llm.lm.") for k in ckpt["model"])
    assert ckpt["lm_fingerprints"]["llm.lm"]["layers"] == [2] and ckpt["lm_fingerprints"]["llm.lm"]["sha256"]
    adapter = [g for g in ckpt["optimizer"]["param_groups"] if "llm.in_proj.weight" in g["param_names"]]
    assert len(adapter) == 1 and adapter[0]["lr_mult"] == pytest.approx(0.5) and adapter[0]["weight_decay"] == 0
    assert adapter[0]["initial_lr"] == pytest.approx(2.5e-4)  # lr_bounds absolute: its own base LR, 0.5 x 5e-4
    results = tmp_path / "eval.json"
    run(evaluate, ["--config", out / "config.yaml", "--resume", out / "checkpoint.pth", "--results", results])
    assert json.loads(results.read_text())["test_acc"] == runlog.read_log(out)[-1]["test_acc"]


def test_modelnet_end_to_end_builds_the_missing_cache(tmp_path, modelnet_root):
    test_cache = write_modelnet_cache(modelnet_root, "test", 128)  # as distributed; the train cache is built
    out = tmp_path / "mn"
    run(train, ["--config", CONFIGS / "modelnet40_1k_baseline.yaml", "--data-path", modelnet_root,
                "--cache-points", "128", "--output-dir", out, "--epochs", "1", *QUICK])
    assert (modelnet_root / "modelnet40_train_128pts_fps.dat").is_file() and test_cache.is_file()
    (row,) = runlog.read_log(out)
    assert round(row["test_acc"] * 6 / 100, 6).is_integer()


def test_it_learns_the_fixture_classes(tmp_path, scanobjectnn_root):
    out = tmp_path / "learn"  # sphere / disc / line clouds: separable, so a working pipeline learns them
    run(train, ["--config", CONFIGS / "scanobjectnn_objectonly_baseline.yaml", "--data-path", scanobjectnn_root,
                "--output-dir", out, "--epochs", "10", "--lr", "2e-3", "--min-lr", "1e-4", *QUICK])
    rows = runlog.read_log(out)
    assert rows[-1]["best_acc"] >= 83.3 and rows[-1]["train_loss"] < rows[0]["train_loss"] / 2  # chance: 33.3


def _error(capsys, module, argv) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exc:
        run(module, argv)
    lines = capsys.readouterr().err.strip().splitlines()
    return exc.value.code, lines[-1]


def test_bad_inputs_are_one_line_errors(tmp_path, capsys, scanobjectnn_root, pretrained):
    base = ["--config", CONFIGS / "scanobjectnn_objectonly_baseline.yaml", "--output-dir", tmp_path / "x", *QUICK]
    bad = tmp_path / "bad_sonn"
    (bad / "main_split_nobg").mkdir(parents=True)
    with h5py.File(bad / "main_split_nobg" / "training_objectdataset.h5", "w") as f:
        f.create_dataset("data", data=torch.zeros(2, 96, 3).numpy())
    code, line = _error(capsys, train, [*base, "--data-path", bad])
    file = bad / "main_split_nobg" / "training_objectdataset.h5"
    assert code == 4 and line == f"error: {file}: no 'label' dataset (found: data)"

    code, line = _error(capsys, train, [*base, "--data-path", scanobjectnn_root, "--llm-variant", "frozen"])
    assert code == 2 and "needs llm_path" in line
    code, line = _error(capsys, train, [*base, "--data-path", scanobjectnn_root, "--llm-variant", "frozen",
                                        "--llm-path", tmp_path / "no_llama"])
    assert code == 5 and line.startswith("error: --llm-path:")
    code, line = _error(capsys, evaluate, [*base, "--data-path", scanobjectnn_root])
    assert code == 2 and "nothing to evaluate" in line
    code, line = _error(capsys, evaluate, [*base, "--data-path", scanobjectnn_root, "--ckpts", pretrained])
    assert code == 2 and "is the pretrained Point-BERT" in line


def test_missing_data_path_exits_4_before_writing_anything(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "point_cloud.train", "--config", str(CONFIGS / "modelnet40_8k_llama.yaml"),
         "--data-path", str(tmp_path / "nowhere"), "--output-dir", str(tmp_path / "out")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 4, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == f"error: data path not found: {tmp_path / 'nowhere'}"
    assert "Traceback" not in proc.stderr and not (tmp_path / "out").exists()


@pytest.mark.slow
def test_two_process_evaluation_counts_every_test_cloud_once(tmp_path, scanobjectnn_root):
    out = tmp_path / "learn"
    run(train, ["--config", CONFIGS / "scanobjectnn_objectbg_baseline.yaml", "--data-path", scanobjectnn_root,
                "--output-dir", out, "--epochs", "4", "--lr", "2e-3", "--min-lr", "1e-4", *QUICK])
    single = tmp_path / "single.json"
    run(evaluate, ["--config", out / "config.yaml", "--resume", out / "best.pth", "--results", single])
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "GPUS": "2", "PYTHON": sys.executable}
    double = tmp_path / "double.json"
    proc = subprocess.run(
        [str(REPO / "tools" / "dist_train.sh"), "point_cloud.evaluate", "--config", str(out / "config.yaml"),
         "--resume", str(out / "best.pth"), "--results", str(double), "--device", "cpu"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "rank 0/2 on cpu" in proc.stderr
    one, two = json.loads(single.read_text()), json.loads(double.read_text())
    assert one["test_samples"] == two["test_samples"] == 6 and two["test_acc"] == one["test_acc"]
