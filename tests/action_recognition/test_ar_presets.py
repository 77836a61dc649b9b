"""Every preset holds the paper's / upstream's recipe, parses with the training parser, and every paper row has a
preset (and a launch line)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from action_recognition.options import build_parser
from common.engine import config

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "action_recognition" / "configs"
SCRIPTS = REPO / "action_recognition" / "scripts"
PRESETS = sorted(p.stem for p in CONFIGS.glob("*.yaml"))

COMMON = {"tubelet_size": 2, "num_frames": 16, "input_size": 224, "short_side_size": 224, "test_num_segment": 2,
          "test_num_crop": 3, "nb_classes": 174, "drop_path": 0.1, "init_scale": 0.001, "num_sample": 2,
          "min_lr": 1e-6, "warmup_lr": 0.0, "warmup_epochs": 5, "weight_decay": 0.05, "opt_betas": [0.9, 0.999],
          "sched": "cosine", "aa": "rand-m7-n4-mstd0.5-inc1", "reprob": 0.25, "mixup": 0.8, "cutmix": 1.0,
          "smoothing": 0.1, "amp": "fp16", "model_ema": False, "clip_grad": None, "llm_mode": "replace",
          "llm_final_norm": "unit"}
SIZE = {"s": {"model": "vit_small_patch16_224", "epochs": 40, "lr": 1e-3, "layer_decay": 0.7, "batch": 24},
        "b": {"model": "vit_base_patch16_224", "epochs": 30, "lr": 5e-4, "layer_decay": 0.75, "batch": 12}}
VARIANT = {"baseline": ("none", None), "llama": ("frozen", [15]), "llama_last": ("frozen", [-1]),
           "mlp": ("mlp", None), "random": ("random_trainable", None)}


def rows() -> list[str]:
    lines = (SCRIPTS / "paper_rows.txt").read_text().splitlines()
    return [line.split()[0] for line in lines if line.strip() and not line.startswith("#")]


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_recipe(preset):
    values = config.read_preset(CONFIGS / f"{preset}.yaml")  # base: overlays resolved
    size = SIZE[preset.split("_")[2]]
    name = preset.split("_", 3)[3].removesuffix("_bs384")
    variant, layers = VARIANT[name]
    assert {k: values[k] for k in COMMON} == COMMON
    assert values["model"] == size["model"] and values["epochs"] == size["epochs"]
    assert values["lr"] == size["lr"] and values["layer_decay"] == size["layer_decay"]
    assert values["total_batch_size"] == (384 if preset.endswith("_bs384") else size["batch"])
    assert values["llm_variant"] == variant and values["llm_path"] is None
    if layers is not None:
        assert values["llm_layers"] == layers
    args = config.parse_args(build_parser(), ["--config", str(CONFIGS / f"{preset}.yaml")])
    assert args.mixup_mode == "batch" and args.test_num_crop == 3


def test_paper_rows_are_exactly_the_presets():
    assert len(rows()) == len(set(rows())) == len(PRESETS) == 12 and set(rows()) == set(PRESETS)


def bash(*args: str, **env: str) -> subprocess.CompletedProcess:
    names = ("SSV2_LISTS", "SSV2_VIDEOS", "VIDEOMAE_VITS", "VIDEOMAE_VITB", "LLM_PATH", "SEED", "RUNS", "FILTER",
             "DRY_RUN", "PRESET", "LAUNCHER")
    clean = {k: v for k, v in os.environ.items() if k not in names}
    return subprocess.run(["bash", *args], env={**clean, **env}, capture_output=True, text=True, timeout=60)


def test_train_paper_rows_prints_one_torchrun_line_per_row():
    proc = bash(str(REPO / "tools" / "train_paper_rows.sh"), "action_recognition", "torchrun", "--epochs", "1",
                DRY_RUN="1")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 12
    for preset, line in zip(rows(), lines):
        assert line.startswith(f"{REPO}/tools/dist_train.sh action_recognition.train --config {CONFIGS}/{preset}.yaml "
                               "--data-path $SSV2_LISTS --finetune $VIDEOMAE_VIT")
        assert ("$VIDEOMAE_VITS" in line) == ("_vit_s_" in preset) and line.endswith("--epochs 1")
        assert ("--llm-path $LLM_PATH" in line) == ("baseline" not in preset)


def test_train_sh_with_real_paths_and_missing_inputs():
    proc = bash(str(SCRIPTS / "train.sh"), "ssv2_vit_b_llama", "slurm", DRY_RUN="1", SSV2_LISTS="/d/lists",
                SSV2_VIDEOS="/d/videos", VIDEOMAE_VITB="/c/b.pth", LLM_PATH="/c/llama", SEED="2")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == (
        f"env JOB_NAME=ssv2_vit_b_llama {REPO}/tools/slurm_train.sh action_recognition.train --config "
        f"{CONFIGS}/ssv2_vit_b_llama.yaml --data-path /d/lists --finetune /c/b.pth --data-root /d/videos "
        "--output-dir runs/action_recognition/ssv2_vit_b_llama/seed2 --seed 2 --llm-path /c/llama")
    proc = bash(str(SCRIPTS / "train.sh"), "ssv2_vit_s_llama", "torchrun", SSV2_LISTS="/d", VIDEOMAE_VITS="/c")
    assert proc.returncode == 2 and "needs LLM_PATH=" in proc.stderr
    assert bash(str(SCRIPTS / "train.sh"), "nope", "torchrun").returncode == 2
    proc = bash(str(SCRIPTS / "evaluate.sh"), "/c/ft.pth", PRESET="ssv2_vit_s_llama", DRY_RUN="1", SSV2_LISTS="/d")
    assert proc.stdout.strip() == (
        f"python -m action_recognition.evaluate --config {CONFIGS}/ssv2_vit_s_llama.yaml --data-path /d --finetune "
        "/c/ft.pth --results /c/ft_eval.json --llm-path $LLM_PATH")
    proc = bash(str(SCRIPTS / "evaluate.sh"), "/c/ft.pth", PRESET="ssv2_vit_s_baseline")
    assert proc.returncode == 2 and "needs SSV2_LISTS=" in proc.stderr
