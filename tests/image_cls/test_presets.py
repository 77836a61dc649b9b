"""Every preset in image_cls/configs holds the paper's recipe (appendix C.1 + LM4VisualEncoding main.py defaults)
and the LLM setting its name promises."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm

import image_cls.models  # noqa: F401
from common.engine import config

CONFIGS = Path(__file__).resolve().parents[2] / "image_cls" / "configs"
PRESETS = sorted(CONFIGS.glob("*.yaml"))

RECIPE = {  # the "Recipe" list, from the paper (C.1) and the official code's defaults
    "input_size": 224, "drop": 0.0, "drop_path": 0.1, "batch_size": 256, "lr": 5e-4, "weight_decay": 0.05,
    "opt_eps": 1e-8, "opt_betas": [0.9, 0.999], "clip_grad": None, "sched": "cosine", "warmup_epochs": 20,
    "warmup_lr": 1e-6, "min_lr": 1e-5, "color_jitter": 0.4, "aa": "rand-m9-mstd0.5-inc1",
    "train_interpolation": "bicubic", "reprob": 0.25, "remode": "pixel", "recount": 1, "repeated_aug": True,
    "mixup": 0.8, "cutmix": 1.0, "cutmix_minmax": None, "mixup_prob": 1.0, "mixup_switch_prob": 0.5,
    "mixup_mode": "batch", "smoothing": 0.1, "model_ema": True, "model_ema_decay": 0.99996, "amp": "fp16",
    "llm_path": None, "llm_mode": "replace", "llm_final_norm": "unit", "llm_dtype": "float32",
    "llm_grad_checkpointing": False,
}
LLM_BY_SUFFIX = {  # preset name suffix -> (llm_variant, llm_layers, llm_position)
    "baseline": ("none", [-1], "tail"), "llama": ("frozen", [-1], "tail"), "mlp": ("mlp", [-1], "tail"),
    "llama2": ("frozen", [-2, -1], "tail"), "finetune": ("finetune", [-1], "tail"),
    "random": ("random_trainable", [-1], "tail"), "random_frozen": ("random_frozen", [-1], "tail"),
    "head": ("frozen", [-1], "head"), "middle": ("frozen", [-1], "middle"),
}
EXPECTED = {f"vit_{s}_{v}" for s in ("tiny", "small", "base") for v in ("baseline", "llama", "mlp", "llama2")} | {
    "vit_small_finetune", "vit_small_random"} | {f"vit_small_100ep_{v}" for v in LLM_BY_SUFFIX}


def test_the_preset_set():
    assert {p.stem for p in PRESETS} == EXPECTED


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_preset_values(path):
    cfg = config.read_preset(path)  # the preset with its base: overlays resolved
    assert set(cfg) == set(RECIPE) | {"model", "epochs", "llm_variant", "llm_layers", "llm_position"}
    assert {k: cfg[k] for k in RECIPE} == RECIPE
    size, rest = path.stem.removeprefix("vit_").split("_", 1)
    assert cfg["model"] == f"vit_{size}_patch16_224_llm" and cfg["model"] in timm.list_models("*_llm")
    assert cfg["epochs"] == (100 if rest.startswith("100ep_") else 300)
    suffix = rest.removeprefix("100ep_")
    assert (cfg["llm_variant"], cfg["llm_layers"], cfg["llm_position"]) == LLM_BY_SUFFIX[suffix]
    assert "# Paper:" in path.read_text()  # each preset names the table row it reproduces
