"""Every preset in point_cloud/configs holds the paper/code recipe (paper C.2, Point-BERT and LM4VE configs and
tools/builder.py) and the data / LLM setting its name promises; each parses with the training parser."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.engine import config
from point_cloud import train
from point_cloud.data import DataPathError

CONFIGS = Path(__file__).resolve().parents[2] / "point_cloud" / "configs"
PRESETS = sorted(CONFIGS.glob("*.yaml"))

RECIPE = {
    "epochs": 300, "total_batch_size": 32, "lr": 5e-4, "weight_decay": 0.05, "opt_betas": [0.9, 0.999],
    "opt_eps": 1e-8, "no_decay_lr_mult": 0.1, "adapter_weight_decay": 0.0, "clip_grad": 10.0, "sched": "cosine",
    "warmup_epochs": 10, "warmup_lr": 1e-6, "min_lr": 1e-6, "label_smoothing": 0.0, "amp": "none",
    "model_ema": False, "vote_times": 10, "sync_bn": True,
    "trans_dim": 384, "depth": 12, "num_heads": 6, "drop_path": 0.1, "cls_dim": 40, "group_size": 32,
    "encoder_dims": 256, "cache_points": 8192, "fps_pool": None, "data_path": None, "ckpts": None,
    "llm_path": None, "llm_layers": [-1], "llm_mode": "replace", "llm_final_norm": "unit", "llm_dtype": "float32",
    "llm_grad_checkpointing": False, "llm_seed": 0,
}
DATA = {  # preset prefix -> (dataset, npoints, num_group): Point-BERT cfgs/{ScanObjectNN,ModelNet}_models
    "scanobjectnn_objectbg": ("objectbg", 1024, 64), "scanobjectnn_objectonly": ("objectonly", 1024, 64),
    "scanobjectnn_hardest": ("hardest", 1024, 64), "modelnet40_1k": ("modelnet40", 1024, 64),
    "modelnet40_4k": ("modelnet40", 4096, 256), "modelnet40_8k": ("modelnet40", 8192, 512),
}
LLM = {  # suffix -> (llm_variant, adapter_lr): 2.5e-4 = LM4VE builder's 0.5 x lr, 5e-5 = paper C.2
    "baseline": ("none", None), "llama": ("frozen", 2.5e-4), "llama_paperlr": ("frozen", 5e-5),
    "mlp": ("mlp", 2.5e-4), "random": ("random_trainable", 2.5e-4),
}
EXPECTED = ({f"{d}_{s}" for d in DATA for s in ("baseline", "llama", "llama_paperlr")}
            | {f"scanobjectnn_{d}_{s}" for d in ("objectbg", "objectonly", "hardest") for s in ("mlp", "random")})


def test_the_preset_set():
    assert {p.stem for p in PRESETS} == EXPECTED


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_preset_values(path):
    cfg = config.read_preset(path)  # base: overlays resolved
    assert set(cfg) == set(RECIPE) | {"dataset", "npoints", "num_group", "llm_variant", "adapter_lr"}
    assert {k: cfg[k] for k in RECIPE} == RECIPE
    prefix = next(p for p in DATA if path.stem.startswith(p + "_"))
    assert (cfg["dataset"], cfg["npoints"], cfg["num_group"]) == DATA[prefix]
    assert (cfg["llm_variant"], cfg["adapter_lr"]) == LLM[path.stem.removeprefix(prefix + "_")]
    assert "# Paper: Table" in path.read_text()  # each preset names the table row it reproduces
    args = config.parse_args(train.build_parser(), ["--config", str(path)])
    assert args.lr == 5e-4 and args.npoints == cfg["npoints"] and args.llm_layers == [-1]
    with pytest.raises(DataPathError, match="--data-path is not set"):  # everything else validates
        train.check_args(args)
