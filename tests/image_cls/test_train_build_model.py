"""``image_cls.models.build_model``: the one constructor of train, evaluate and tools.analysis, from a run config."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import timm

from common.engine import config
from common.frozen_lm import LLMSpec
from image_cls.models import build_model

llm_spec = LLMSpec.from_config  # moved from image_cls.models

CONFIGS = Path(__file__).resolve().parents[2] / "image_cls" / "configs"


def test_preset_builds_the_deit_model():
    cfg = config.read_preset(CONFIGS / "vit_tiny_baseline.yaml")
    model = build_model(cfg, 1000)
    reference = timm.create_model("vit_tiny_patch16_224", num_classes=1000)
    assert model.llm is None and model.patch_embed.proj.in_channels == 3
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in reference.parameters())
    assert model.blocks[-1].drop_path1.drop_prob == pytest.approx(0.1)  # drop_path 0.1, linearly to the last block


def test_namespace_and_mapping_agree(tiny_llama_dir):
    values = {"model": "vit_demo_llm", "input_size": 32, "dataset": "imagenet", "drop_path": 0.0,
              "llm_variant": "frozen", "llm_path": str(tiny_llama_dir), "llm_layers": [-2, -1],
              "llm_position": "middle"}
    from_dict = build_model(values, 5)
    from_namespace = build_model(argparse.Namespace(**values), 5)
    assert from_dict.state_dict().keys() == from_namespace.state_dict().keys()
    assert from_dict.llm_position == "middle" and len(from_dict.llm.lm.blocks) == 2
    assert from_dict.patch_embed.img_size == (32, 32) and from_dict.head.out_features == 5
    assert from_dict.patch_embed.proj.in_channels == 3  # RGB for imagenet, though vit_demo_llm defaults to grey


def test_channels_from_dataset_or_override():
    grey = build_model({"model": "vit_demo_llm", "dataset": "fashion_mnist"}, 10)
    assert grey.patch_embed.proj.in_channels == 1
    assert build_model({"model": "vit_demo_llm"}, 10).patch_embed.proj.in_channels == 1  # the model's default
    assert build_model({"model": "vit_demo_llm", "dataset": "digits"}, 10, in_chans=3).patch_embed.proj.in_channels == 3


def test_random_block_seed_follows_the_run_seed(tiny_llama_dir):
    base = {"model": "vit_demo_llm", "llm_variant": "random_frozen", "llm_path": str(tiny_llama_dir)}
    assert llm_spec({**base, "seed": 3}).seed == 3
    assert llm_spec({**base, "seed": 3, "llm_seed": 7}).seed == 7
    assert llm_spec(base).seed == 0
    a, b = (build_model({**base, "seed": s}, 10).llm.lm.fingerprint for s in (0, 1))
    assert a != b


@pytest.mark.parametrize("cfg,message", [
    ({"input_size": 28}, "no 'model' key"),
    ({"model": "vit_huge_llm"}, "unknown model 'vit_huge_llm'"),
    ({"model": "vit_demo_llm", "llm_variant": "frozen"}, "needs llm_path"),
])
def test_bad_configs(cfg, message):
    with pytest.raises(ValueError, match=message):
        build_model(cfg, 10)
