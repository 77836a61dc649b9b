"""Presets: one per paper row (rows file == preset set), METER's recipe values, launch lines of the scripts."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from common.engine import config
from vqa_2d.task import TASK

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "vqa_2d" / "configs"
SCRIPTS = REPO / "vqa_2d" / "scripts"


def rows() -> list[str]:
    lines = (SCRIPTS / "paper_rows.txt").read_text().splitlines()
    return [line.split()[0] for line in lines if line.strip() and not line.startswith("#")]


def parse(path: Path, *extra: str):
    return config.parse_args(TASK.build_parser(), ["--config", str(path), *extra])


def test_paper_rows_are_exactly_the_presets():
    assert sorted(rows()) == sorted(p.stem for p in TASK.presets) and len(rows()) == 6


@pytest.mark.parametrize("name", ["vqav2_baseline", "vqav2_llama", "f30k_baseline", "f30k_llama", "f30k_mlp",
                                  "f30k_random"])
def test_preset_values(name):
    a = parse(CONFIGS / f"{name}.yaml")
    vqa = name.startswith("vqav2")
    assert a.dataset == ("vqav2" if vqa else "f30k")
    assert a.image_size == (576 if vqa else 384) and a.max_text_len == (50 if vqa else 40)
    assert a.lr == 5e-6 and a.weight_decay == 0.01 and a.opt_betas == [0.9, 0.98] and a.epochs == 10
    assert a.lr_mult_head == (50 if vqa else 5) and a.lr_mult_cross_modal == 5 and a.adapter_lr_mult == 10
    assert a.sched == "poly" and a.decay_rate == 1.0 and a.warmup_epochs == 1 and a.min_lr == 0.0
    assert a.batch_size * a.accum_iter * 4 == 512  # METER's batch on the paper's 4 GPUs
    assert (a.hidden_size, a.num_heads, a.num_top_layer) == (768, 12, 6)
    variant = {"baseline": "none", "llama": "frozen", "mlp": "mlp", "random": "random_frozen"}[name.split("_")[1]]
    assert a.llm_variant == variant and a.llm_layers == [-1] and a.llm_mode == "replace"
    if not vqa:
        assert a.draw_false_text == 15 and a.itm_weight == 0.5 and a.train_splits == ["train", "val"]


def test_demo_preset_is_not_a_paper_row():
    a = parse(CONFIGS / "demo" / "easy_vqa.yaml")
    assert a.image_size == 64 and a.dataset == "vqav2"


def bash(*args: str, **env: str) -> subprocess.CompletedProcess:
    names = ("VQA_PATH", "F30K_PATH", "CLIP_PATH", "ROBERTA_PATH", "LLM_PATH", "SEED", "RUNS", "DRY_RUN",
             "VQA_ANNOTATIONS")
    clean = {k: v for k, v in os.environ.items() if k not in names}
    return subprocess.run(["bash", *args], env={**clean, **env}, capture_output=True, text=True, timeout=60)


def test_train_sh_lines():
    proc = bash(str(SCRIPTS / "train.sh"), "vqav2_llama", "slurm", DRY_RUN="1", VQA_PATH="/d", CLIP_PATH="/c.pt",
                ROBERTA_PATH="/r", LLM_PATH="/l", VQA_ANNOTATIONS="/a.json", SEED="1")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == (
        f"env JOB_NAME=vqav2_llama {REPO}/tools/slurm_train.sh vqa_2d.train --config {CONFIGS}/vqav2_llama.yaml "
        "--data-path /d --annotations /a.json --clip-path /c.pt --text-path /r --tokenizer /r "
        "--output-dir runs/vqa_2d/vqav2_llama/seed1 --seed 1 --llm-path /l")
    proc = bash(str(REPO / "tools" / "train_paper_rows.sh"), "vqa_2d", "torchrun", DRY_RUN="1")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 6
    for preset, line in zip(rows(), lines):
        assert ("$F30K_PATH" in line) == preset.startswith("f30k") and ("--llm-path" in line) != preset.endswith(
            "baseline")
    proc = bash(str(SCRIPTS / "train.sh"), "f30k_llama", "torchrun")
    assert proc.returncode == 2 and "F30K_PATH" in proc.stderr
