"""``image_cls.train --finetune`` (DeiT's start from pretrained ViT weights) and ``--freeze-encoder``."""

from __future__ import annotations

import pytest
import torch
from train_helpers import train_argv

from common.engine import checkpoint
from common.engine.errors import CheckpointError
from image_cls.checkpoints import load_finetune_weights
from image_cls.models import build_model
from image_cls.task import TASK

VIT = {"model": "vit_demo_llm", "input_size": 32, "dataset": "imagenet", "llm_variant": "none"}


def pretrained_file(tmp_path, **extra):
    torch.manual_seed(11)
    state = build_model(VIT, 7, in_chans=3).state_dict()  # 7 classes, an 8 x 8 grid: both differ from the run's
    path = tmp_path / "deit.pth"
    torch.save({"model": {f"module.{k}": v for k, v in state.items()}, "epoch": 299, **extra}, path)
    return path, state


def test_finetune_with_a_frozen_encoder_trains_only_the_adapter_and_the_head(tmp_path, imagenet_folder,
                                                                              tiny_llama_dir):
    path, source = pretrained_file(tmp_path)
    out = tmp_path / "run"
    TASK.train(train_argv(imagenet_folder, out, "--finetune", str(path), "--freeze-encoder", "--llm-variant",
                          "frozen", "--llm-path", str(tiny_llama_dir), "--mixup", "0", "--cutmix", "0"))
    saved = checkpoint.load(out / "checkpoint.pth")["model"]
    for key in ("blocks.0.attn.qkv.weight", "patch_embed.proj.weight", "cls_token"):
        assert torch.equal(saved[key], source[key]), key  # loaded and then frozen
    assert saved["pos_embed"].shape == (1, 1 + 12 * 12, 96)  # 8 x 8 grid resampled to 48 px / patch 4
    assert saved["head.weight"].shape == (3, 96)  # 7 classes dropped by name: a fresh 3-class head
    groups = checkpoint.load(out / "checkpoint.pth")["optimizer"]["param_groups"]
    names = [n for g in groups for n in g["param_names"]]
    assert names and all(n.startswith(("llm.", "head.", "norm.", "fc_norm.")) for n in names)


def test_finetune_refuses_what_it_cannot_map(tmp_path):
    path, _ = pretrained_file(tmp_path)
    state = torch.load(path, weights_only=True)
    state["model"]["module.blocks.0.extra"] = torch.ones(1)
    torch.save(state, path)
    model = build_model({**VIT, "input_size": 48}, 3, in_chans=3)
    with pytest.raises(CheckpointError, match="blocks.0.extra"):
        load_finetune_weights(model, path)
    official = tmp_path / "vit_llama.pth"
    torch.save({"model": {"llama_dim_mapper1.weight": torch.ones(2, 2)}}, official)
    with pytest.raises(CheckpointError, match="ViT-LLaMA checkpoint"):
        load_finetune_weights(model, official)


def test_freeze_encoder_needs_an_adapter(tmp_path, imagenet_folder, capsys):
    with pytest.raises(SystemExit) as info:
        TASK.train(train_argv(imagenet_folder, tmp_path / "x", "--freeze-encoder"))
    assert info.value.code == 2 and "has no adapter" in capsys.readouterr().err.strip().splitlines()[-1]
