"""image_cls/scripts (on tools/preset_lib.sh): every paper row has a preset and a torchrun / SLURM command line
(tools/train_paper_rows.sh); the robustness evaluation command lists the sets whose paths are given."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from common.engine import config

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = REPO_ROOT / "image_cls" / "scripts"
CONFIGS = REPO_ROOT / "image_cls" / "configs"


def paper_rows() -> list[str]:
    lines = (SCRIPTS / "paper_rows.txt").read_text().splitlines()
    return [line.split()[0] for line in lines if line.strip() and not line.startswith("#")]


ENV_INPUTS = ("DATA_PATH", "LLM_PATH", "RUNS", "SEED", "FILTER", "DRY_RUN", "LAUNCHER", "IMAGENET_C", "IMAGENET_A",
              "IMAGENET_R", "IMAGENET_SKETCH")


def run_script(script: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ENV_INPUTS}
    return subprocess.run(["bash", str(script), *args], env={**clean, **env}, capture_output=True, text=True,
                          timeout=60)


def train_paper_rows(*args: str, **env: str) -> subprocess.CompletedProcess:
    return run_script(REPO_ROOT / "tools" / "train_paper_rows.sh", "image_cls", *args, **env)


def test_every_preset_is_a_paper_row_once():
    rows = paper_rows()
    assert len(rows) == len(set(rows))
    assert set(rows) == {p.stem for p in CONFIGS.glob("*.yaml")}


@pytest.mark.parametrize("launcher,launch_script", [("torchrun", "tools/dist_train.sh"),
                                                    ("slurm", "tools/slurm_train.sh")])
def test_train_paper_rows_command_lines(launcher, launch_script):
    done = train_paper_rows(launcher, "--num-workers", "8", DRY_RUN="1", DATA_PATH="/data/in1k",
                      LLM_PATH="/ckpt/llama-7b", RUNS="/runs")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == len(paper_rows())
    for preset, line in zip(paper_rows(), lines):
        variant = config.read_preset(CONFIGS / f"{preset}.yaml")["llm_variant"]
        assert f"{launch_script} image_cls.train --config {CONFIGS / preset}.yaml" in line
        assert f"--data-path /data/in1k --output-dir /runs/{preset}" in line and line.endswith("--num-workers 8")
        assert ("--llm-path /ckpt/llama-7b" in line) == (variant != "none")
        if launcher == "slurm":
            assert line.startswith(f"env JOB_NAME={preset} ")


def test_train_sh_with_a_seed():
    done = run_script(SCRIPTS / "train.sh", "vit_base_mlp", "torchrun", "--epochs", "1", DRY_RUN="1", SEED="3",
                      LLM_PATH="/ckpt/llama")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        f"{REPO_ROOT}/tools/dist_train.sh image_cls.train --config {CONFIGS}/vit_base_mlp.yaml --output-dir "
        "runs/image_cls/vit_base_mlp/seed3 --seed 3 --llm-path /ckpt/llama --epochs 1")


def test_train_paper_rows_filter_runs_the_matching_rows_only():
    done = train_paper_rows("torchrun", DRY_RUN="1", FILTER="100ep_llama")
    assert done.returncode == 0, done.stderr
    assert [line.split()[3] for line in done.stdout.splitlines()] == [
        f"{CONFIGS}/vit_small_100ep_llama.yaml", f"{CONFIGS}/vit_small_100ep_llama2.yaml"]


def test_train_refuses_llm_preset_without_llm_path_and_unknown_presets():
    done = run_script(SCRIPTS / "train.sh", "vit_small_llama", "torchrun")
    assert done.returncode == 2 and "needs LLM_PATH" in done.stderr
    done = run_script(SCRIPTS / "train.sh", "vit_small_nope", "torchrun")
    assert done.returncode == 2 and "no preset" in done.stderr
    done = run_script(SCRIPTS / "train.sh", "vit_small_baseline", "mpirun")
    assert done.returncode == 2 and "torchrun or slurm" in done.stderr
    done = train_paper_rows("torchrun", DRY_RUN="1", FILTER="no_such_row")
    assert done.returncode == 2 and "no preset of image_cls/scripts/paper_rows.txt matches" in done.stderr
    done = train_paper_rows("mpirun", DRY_RUN="1")
    assert done.returncode == 2 and "torchrun or slurm" in done.stderr
    done = run_script(REPO_ROOT / "tools" / "train_paper_rows.sh", "no_such_task", "torchrun", DRY_RUN="1")
    assert done.returncode == 2 and "paper_rows.txt" in done.stderr


def test_evaluate_robustness_command_line(tmp_path):
    run = tmp_path / "vit_small_llama"
    run.mkdir()
    done = run_script(SCRIPTS / "evaluate_robustness.sh", str(run), "--ema", DRY_RUN="1", DATA_PATH="/in1k",
                      IMAGENET_C="/c", IMAGENET_A="/a", IMAGENET_R="/r", IMAGENET_SKETCH="/s")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [
        "python", "-m", "image_cls.evaluate", "--resume", f"{run}/checkpoint.pth", "--data-path", "/in1k",
        "--imagenet-c-path", "/c", "--imagenet-a-path", "/a", "--imagenet-r-path", "/r", "--imagenet-sketch-path",
        "/s", "--eval-sets", r"imagenet\,imagenet-c\,imagenet-a\,imagenet-r\,imagenet-sketch", "--ema"]
    done = run_script(SCRIPTS / "evaluate_robustness.sh", str(run), DRY_RUN="1")
    assert done.returncode == 2 and "set at least one" in done.stderr
    done = run_script(SCRIPTS / "evaluate_robustness.sh", str(run), DRY_RUN="1", LAUNCHER="slurm", IMAGENET_A="/a")
    assert done.stdout.split() == ["env", "JOB_NAME=evaluate", f"{REPO_ROOT}/tools/slurm_train.sh",
                                   "image_cls.evaluate", "--resume", f"{run}/checkpoint.pth", "--imagenet-a-path", "/a",
                                   "--eval-sets", "imagenet-a"]
    done = run_script(SCRIPTS / "evaluate_robustness.sh", str(run), DRY_RUN="1", LAUNCHER="mpirun", IMAGENET_A="/a")
    assert done.returncode == 2 and "python, torchrun or slurm" in done.stderr
