"""Presets and scripts: every paper row is a preset (and every preset a row), each preset parses into the
task's flags with the paper's recipe, and scripts/train.sh prints the launch line."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from common.engine import config
from motion_forecasting.task import TASK

REPO = Path(__file__).resolve().parents[2]
FOLDER = REPO / "motion_forecasting"


def rows() -> list[str]:
    lines = (FOLDER / "scripts" / "paper_rows.txt").read_text().splitlines()
    return [line.split()[0] for line in lines if line.strip() and not line.startswith("#")]


def test_paper_rows_are_exactly_the_presets():
    assert len(rows()) == len(set(rows())) == 11 and set(rows()) == {p.stem for p in TASK.presets}


@pytest.mark.parametrize("preset", sorted(p.stem for p in (FOLDER / "configs").glob("*.yaml")))
def test_preset_recipe(preset):
    args = config.parse_args(TASK.build_parser(), ["--config", str(FOLDER / "configs" / f"{preset}.yaml")])
    assert (args.lr, args.batch_size, args.opt_betas) == (5e-4, 32, [0.9, 0.999])
    if args.model == "vectornet":
        assert (args.epochs, args.sched, args.subgraph_layers, args.global_width) == (60, "cosine", 3, 64)
    else:
        assert (args.epochs, args.sched, args.decay_milestones, args.decay_rate) == (32, "multistep", [20, 24, 28],
                                                                                      0.25)
        assert (args.d_model, args.d_ff, args.mm_heads, args.mm_layers, args.modes) == (128, 256, 2, 2, 6)
    assert args.modes == (1 if "_k1_" in preset else 6)
    variant = {"baseline": "none", "llama": "frozen", "mlp": "mlp", "random": "random_frozen"}[preset.split("_")[-1]]
    assert args.llm_variant == variant and args.llm_layers == [-1]
    assert args.dataset == preset.split("_")[1]


def test_train_sh_prints_the_launch_line():
    env = {k: v for k, v in os.environ.items() if k not in ("AV1_PATH", "AV2_PATH", "CACHE", "LLM_PATH", "SEED",
                                                            "RUNS")}
    env.update(DRY_RUN="1", AV1_PATH="/data/av1", LLM_PATH="/ckpt/llama")
    proc = subprocess.run(["bash", str(FOLDER / "scripts" / "train.sh"), "mmtransformer_av1_llama", "torchrun",
                           "--epochs", "2"], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == (
        f"{REPO}/tools/dist_train.sh motion_forecasting.train --config {FOLDER}/configs/mmtransformer_av1_llama.yaml "
        "--train-path /data/av1/train --val-path /data/av1/val --map-dir /data/av1/map_files --cache-dir "
        "runs/motion_forecasting/cache/av1 --output-dir runs/motion_forecasting/mmtransformer_av1_llama "
        "--llm-path /ckpt/llama --epochs 2")


def test_train_paper_rows_dry_run_and_a_missing_path():
    env = {k: v for k, v in os.environ.items() if k not in ("AV1_PATH", "AV2_PATH", "CACHE", "LLM_PATH", "SEED",
                                                            "RUNS", "DRY_RUN")}
    proc = subprocess.run(["bash", str(REPO / "tools" / "train_paper_rows.sh"), "motion_forecasting", "slurm"],
                          env={**env, "DRY_RUN": "1"}, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == len(rows())
    for preset, line in zip(rows(), lines):
        var = "$AV2_PATH" if "_av2_" in preset else "$AV1_PATH"
        assert f"--train-path {var}/train --val-path {var}/val" in line
        assert ("--map-dir" in line) == ("_av1_" in preset)
        assert ("--llm-path $LLM_PATH" in line) == (not preset.endswith("baseline"))
    proc = subprocess.run(["bash", str(FOLDER / "scripts" / "train.sh"), "vectornet_av2_llama", "torchrun"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: vectornet_av2_llama needs AV2_PATH=<Argoverse folder with train/ and val/>"
