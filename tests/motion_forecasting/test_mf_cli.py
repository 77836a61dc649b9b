"""End to end on CPU: train -> evaluate (+ submission) -> visualise, AV1 fixtures and the real AV2 scenario; the
error family on bad inputs."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from motion_forecasting import evaluate, train, visualize
from motion_forecasting.submission import read_av1_h5

ROOT = Path(__file__).resolve().parents[2]


def _smoke_module():
    """This folder's task_smoke.py, loaded by path (every task has a module of that name)."""
    spec = importlib.util.spec_from_file_location("mf_task_smoke", Path(__file__).with_name("task_smoke.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.txt").read_text().splitlines()]


def test_smoke_argv_trains(tmp_path, tiny_llama_dir):
    run = tmp_path / "run"
    train.run(_smoke_module().smoke_argv(tmp_path, tiny_llama_dir) + ["--output-dir", str(run), "--epochs", "1"])
    entry = _log(run)[-1]
    assert np.isfinite(entry["train_loss"]) and entry["test_samples"] == 4
    assert entry["test_minFDE"] > 0 and entry["test_minFDE"] <= entry["test_minFDE_k1"]


def test_av1_train_evaluate_submit_visualise(tmp_path, av1_root, tiny_llama_dir, capsys):
    run = tmp_path / "run"
    argv = ["--dataset", "av1", "--train-path", str(av1_root / "train"), "--val-path", str(av1_root / "val"),
            "--map-dir", str(av1_root / "map_files"), "--cache-dir", str(tmp_path / "cache"),
            "--preprocess-workers", "1", "--model", "vectornet", "--subgraph-hidden", "16", "--global-width", "32",
            "--decoder-hidden", "32", "--node-completion", "0.5", "--llm-variant", "frozen",
            "--llm-path", str(tiny_llama_dir), "--num-workers", "0", "--batch-size", "4", "--epochs", "2",
            "--warmup-epochs", "0", "--device", "cpu", "--output-dir", str(run)]
    train.run(argv)
    log = _log(run)
    assert len(log) == 2
    # the five bad training scenes are skipped and counted by reason, every epoch
    for entry in log:
        for reason in ("no_agent", "wrong_length", "nan", "unknown_city", "missing_map"):
            assert entry[f"skipped_train_{reason}"] == 1, (reason, entry)
    assert {"train_completion", "train_cls", "train_reg"} <= set(log[0])
    capsys.readouterr()
    evaluate.run(["--resume", str(run / "best.pth"), "--split-path", str(av1_root / "val"),
                  "--submission", str(tmp_path / "sub.h5")])
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert metrics["test_samples"] == 6
    assert metrics["test_minFDE"] == pytest.approx(log[-1]["test_minFDE"], rel=1e-5)
    assert metrics["test_minFDE"] <= metrics["test_minFDE_k1"] + 1e-9
    trajs, probs = read_av1_h5(tmp_path / "sub.h5")
    assert sorted(trajs) == list(range(100, 106)) and trajs[100].shape == (6, 30, 2)
    assert all(np.isclose(p.sum(), 1, atol=1e-5) for p in probs.values())
    with h5py.File(tmp_path / "sub.h5") as f:
        assert f["argoverse_forecasting"].shape == (6 * 6 * 30, 4)
    # the test split has no future: no metrics, but a submission
    capsys.readouterr()
    evaluate.run(["--resume", str(run / "best.pth"), "--split-path", str(av1_root / "test_obs"),
                  "--submission", str(tmp_path / "test.h5")])
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["test_samples"] == 0
    assert sorted(read_av1_h5(tmp_path / "test.h5")[0]) == [200, 201, 202]
    pngs = visualize.main(visualize.build_parser().parse_args(
        ["--resume", str(run / "best.pth"), "--split-path", str(av1_root / "val"), "--out", str(tmp_path / "vis"),
         "--num", "2"]))
    assert len(pngs) == 2 and all(p.stat().st_size > 10_000 for p in pngs)


def test_av2_mmtransformer_train_evaluate_visualise(tmp_path, av2_split, tiny_llama_dir, capsys):
    run = tmp_path / "run"
    train.run(["--dataset", "av2", "--train-path", str(av2_split), "--val-path", str(av2_split),
               "--model", "mmtransformer", "--d-model", "32", "--d-ff", "64", "--mm-layers", "1",
               "--llm-variant", "frozen", "--llm-path", str(tiny_llama_dir), "--num-workers", "0",
               "--batch-size", "1", "--epochs", "1", "--warmup-epochs", "0", "--device", "cpu",
               "--output-dir", str(run)])
    entry = _log(run)[-1]
    assert entry["test_samples"] == 1 and np.isfinite(entry["test_brier-minFDE"])
    capsys.readouterr()
    evaluate.run(["--resume", str(run / "best.pth"), "--split-path", str(av2_split),
                  "--submission", str(tmp_path / "sub.parquet")])
    table = pq.read_table(tmp_path / "sub.parquet")
    assert table.column_names == ["scenario_id", "track_id", "probability", "predicted_trajectory_x",
                                  "predicted_trajectory_y"]
    assert table.num_rows == 6 and set(table.column("track_id").to_pylist()) == {"138951"}
    assert len(table.column("predicted_trajectory_x")[0].as_py()) == 60
    png = visualize.main(visualize.build_parser().parse_args(
        ["--resume", str(run / "best.pth"), "--split-path", str(av2_split), "--out", str(tmp_path / "vis")]))
    assert [p.name for p in png] == ["0a1e6f0a-1817-4a98-b02e-db8c9327d151.png"]


def test_mmtransformer_region_based_training_from_the_cache(tmp_path, av1_root):
    """Also starts from weights in the released mmTransformer checkpoint format (--mm-checkpoint)."""
    from test_mf_checkpoints import upstream_checkpoint

    from motion_forecasting.models import MMTransformer

    released = upstream_checkpoint(MMTransformer(7, 30, 4, d_model=32, d_ff=64, layers=1), tmp_path / "demo.pt")
    run = tmp_path / "run"
    train.run(["--dataset", "av1", "--train-path", str(av1_root / "val"), "--val-path", str(av1_root / "val"),
               "--map-dir", str(av1_root / "map_files"), "--cache-dir", str(tmp_path / "cache"),
               "--preprocess-workers", "1", "--model", "mmtransformer", "--d-model", "32", "--d-ff", "64",
               "--mm-layers", "1", "--modes", "4", "--rts-regions", "2", "--eval-k", "2", "--num-workers", "0",
               "--batch-size", "3", "--epochs", "1", "--warmup-epochs", "0", "--device", "cpu",
               "--mm-checkpoint", str(tmp_path / "demo.pt"), "--lr", "1e-9", "--output-dir", str(run)])
    trained = torch.load(run / "checkpoint.pth", map_location="cpu", weights_only=True)["model"]
    torch.testing.assert_close(trained["query_embed.weight"], released["stacked_transformer.query_embed.weight"],
                               atol=1e-5, rtol=0)
    saved = (run / "config.yaml").read_text()
    assert "rts_centres:" in saved and np.isfinite(_log(run)[-1]["train_loss"])


def _cli(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "motion_forecasting.train", *argv], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def test_empty_split_is_a_data_error(tmp_path):
    (tmp_path / "empty").mkdir()
    res = _cli("--dataset", "av2", "--train-path", str(tmp_path / "empty"), "--output-dir", str(tmp_path / "o"),
               "--device", "cpu")
    assert res.returncode == 4 and "no" in res.stderr and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines()[-1].startswith("error: --train-path")


def test_bad_llm_path_exits_5(tmp_path, av1_root):
    bad = tmp_path / "llm"
    bad.mkdir()
    (bad / "params.json").write_text("{}")
    res = _cli("--dataset", "av1", "--train-path", str(av1_root / "val"), "--map-dir", str(av1_root / "map_files"),
               "--llm-variant", "frozen", "--llm-path", str(bad), "--output-dir", str(tmp_path / "o"),
               "--device", "cpu", "--num-workers", "0")
    assert res.returncode == 5, res.stderr
    assert "Traceback" not in res.stderr and res.stderr.strip().splitlines()[-1].startswith("error: --llm-path")
