"""point_cloud/scripts (on tools/preset_lib.sh): every paper row is a preset (and every preset a row); the launch
lines they and tools/train_paper_rows.sh print."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "point_cloud" / "scripts"


def rows() -> list[str]:
    lines = (SCRIPTS / "paper_rows.txt").read_text().splitlines()
    return [line.split()[0] for line in lines if line.strip() and not line.startswith("#")]


def bash(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("SCANOBJECTNN_PATH", "MODELNET_PATH", "POINT_BERT",
                                                               "LLM_PATH", "SEED", "RUNS", "FILTER", "DRY_RUN",
                                                               "PRESET", "LAUNCHER", "VOTE_REPEATS")}
    return subprocess.run(["bash", *args], env={**clean, **env}, capture_output=True, text=True, timeout=60)


def test_paper_rows_are_exactly_the_presets():
    presets = {p.stem for p in (REPO / "point_cloud" / "configs").glob("*.yaml")}
    assert len(rows()) == len(set(rows())) == 24 and set(rows()) == presets


def test_train_paper_rows_prints_one_torchrun_line_per_row():
    proc = bash(str(REPO / "tools" / "train_paper_rows.sh"), "point_cloud", "torchrun", "--epochs", "1", DRY_RUN="1")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 24
    for preset, line in zip(rows(), lines):
        assert line.startswith(f"{REPO}/tools/dist_train.sh point_cloud.train --config {REPO}/point_cloud/configs/"
                               f"{preset}.yaml --data-path $")
        assert "--ckpts $POINT_BERT" in line and line.endswith("--epochs 1")
        assert ("--llm-path $LLM_PATH" in line) == (not preset.endswith("baseline"))
        assert ("$MODELNET_PATH" in line) == preset.startswith("modelnet40")


def test_train_sh_with_real_paths_and_a_seed():
    proc = bash(str(SCRIPTS / "train.sh"), "modelnet40_4k_llama", "slurm", DRY_RUN="1", MODELNET_PATH="/data/mn",
                POINT_BERT="/ckpt/pb.pth", LLM_PATH="/ckpt/llama", SEED="2")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == (
        f"env JOB_NAME=modelnet40_4k_llama {REPO}/tools/slurm_train.sh point_cloud.train --config "
        f"{REPO}/point_cloud/configs/modelnet40_4k_llama.yaml --data-path /data/mn --ckpts /ckpt/pb.pth "
        "--output-dir runs/point_cloud/modelnet40_4k_llama/seed2 --seed 2 --llm-path /ckpt/llama")


def test_evaluate_sh_run_dir_and_released_checkpoint(tmp_path):
    proc = bash(str(SCRIPTS / "evaluate.sh"), str(tmp_path), "--num-workers", "2", DRY_RUN="1", VOTE_REPEATS="3")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["python", "-m", "point_cloud.evaluate", "--vote", "--vote-repeats", "3", "--config",
                                   f"{tmp_path}/config.yaml", "--resume", f"{tmp_path}/best.pth", "--results",
                                   f"{tmp_path}/eval_vote.json", "--num-workers", "2"]
    proc = bash(str(SCRIPTS / "evaluate.sh"), "/c/ModelNet_1k.pth", DRY_RUN="1", PRESET="modelnet40_1k_llama",
                LAUNCHER="torchrun", MODELNET_PATH="/data/mn")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == (
        f"{REPO}/tools/dist_train.sh point_cloud.evaluate --vote --vote-repeats 9 --config "
        f"{REPO}/point_cloud/configs/modelnet40_1k_llama.yaml --data-path /data/mn --ckpts /c/ModelNet_1k.pth "
        "--results /c/ModelNet_1k_eval_vote.json --llm-path $LLM_PATH")
    proc = bash(str(SCRIPTS / "evaluate.sh"), "/c/ModelNet_1k.pth", DRY_RUN="1")
    assert proc.returncode == 2 and "needs PRESET=" in proc.stderr
    proc = bash(str(SCRIPTS / "evaluate.sh"), "/c/ModelNet_1k.pth", PRESET="modelnet40_1k_baseline")
    assert proc.returncode == 2 and "needs MODELNET_PATH=" in proc.stderr


def test_train_sh_refuses_missing_inputs():
    proc = bash(str(SCRIPTS / "train.sh"), "scanobjectnn_hardest_llama", "torchrun", SCANOBJECTNN_PATH="/d",
                POINT_BERT="/p")
    assert proc.returncode == 2 and "needs LLM_PATH=" in proc.stderr
    proc = bash(str(SCRIPTS / "train.sh"), "no_such_preset", "torchrun")
    assert proc.returncode == 2 and "no preset" in proc.stderr
