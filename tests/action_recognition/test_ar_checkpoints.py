"""VideoMAE-layout checkpoints written with torch.save (weights under 'model' / 'module', the run's Namespace beside
them): pretraining files (encoder. prefix, decoder dropped by name), fine-tuned files, LM4VE's ViTLLaMA files."""

from __future__ import annotations

import pytest
import torch
from ar_fixtures import TINY_MODEL, pretraining_state, write_videomae_checkpoint

from action_recognition.checkpoints import load_finetuned, load_videomae_checkpoint, read_state_dict
from action_recognition.models import build_model
from common.engine.errors import CheckpointError
from common.frozen_lm.formats.meta import MetaReader


def tiny(seed: int, **overrides):
    torch.manual_seed(seed)
    return build_model({**TINY_MODEL, "nb_classes": 5, **overrides})


def test_pretrained_file_loads_the_encoder_and_leaves_the_head(tmp_path):
    source, target = tiny(1), tiny(2)
    head_before = target.head.weight.clone()
    state = pretraining_state(source.state_dict())
    state["encoder.pos_embed"] = torch.zeros(1, 64, 48)  # a saved table is dropped, the fixed one is re-created
    path = write_videomae_checkpoint(tmp_path / "videomae_ssv2_vits.pth", state)
    assert load_videomae_checkpoint(target, path) == "pretrained"
    for key, value in source.state_dict().items():
        if key.startswith(("head.", "fc_norm.")):
            continue
        assert torch.equal(target.state_dict()[key], value), key
    assert torch.equal(target.head.weight, head_before)
    assert torch.equal(target.pos_embed, source.pos_embed)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda s: s.pop("encoder.blocks.1.mlp.fc2.weight"), "missing: blocks.1.mlp.fc2.weight"),
    (lambda s: s.__setitem__("encoder.blocks.0.extra", torch.zeros(1)), "unexpected: blocks.0.extra"),
    (lambda s: s.__setitem__("encoder.blocks.0.attn.q_bias", torch.zeros(7)), "shape differs: blocks.0.attn.q_bias"),
])
def test_pretrained_file_is_strict_about_the_rest(tmp_path, edit, message):
    state = pretraining_state(tiny(1).state_dict())
    edit(state)
    path = write_videomae_checkpoint(tmp_path / "bad.pth", state)
    with pytest.raises(CheckpointError, match=message):
        load_videomae_checkpoint(tiny(2), path)


def test_finetuned_file_under_module_loads_exactly_and_a_new_head_only_when_allowed(tmp_path):
    source = tiny(1)
    path = write_videomae_checkpoint(tmp_path / "finetuned.pth", {f"module.{k}": v for k, v in
                                                                   source.state_dict().items()}, key="module")
    target = tiny(2).eval()
    assert load_videomae_checkpoint(target, path) == "finetuned"
    x = torch.randn(1, 3, 8, 32, 32)
    assert torch.equal(target(x), source.eval()(x))
    three_way = tiny(3, nb_classes=3)
    state, pretrained = read_state_dict(path)
    assert not pretrained
    load_finetuned(three_way, state, "ft")  # upstream's rule: a head of another class count is re-initialised
    assert torch.equal(three_way.blocks[1].mlp.fc1.weight, source.blocks[1].mlp.fc1.weight)
    with pytest.raises(CheckpointError, match="shape differs: head.bias"):
        load_finetuned(tiny(3, nb_classes=3), state, "ft", new_head=False)


def test_unreadable_and_foreign_files(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        read_state_dict(tmp_path / "nope.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        read_state_dict(tmp_path / "junk.pth")
    torch.save({"optimizer": {"lr": 1.0}}, tmp_path / "opt.pth")
    with pytest.raises(CheckpointError, match="no 'model|module' state dict"):
        read_state_dict(tmp_path / "opt.pth")


def lm4ve_state(model, meta_dir, layer: int) -> dict[str, torch.Tensor]:
    """A ViTLLaMA state dict: mappers as llama_dim_mapper1/2, the LLaMA layer copied as llama.layers.0 (Meta
    names), llama.norm.weight ones."""
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("llm.")}
    state["llama_dim_mapper1.weight"] = model.llm.in_proj.weight.detach().clone()
    state["llama_dim_mapper2.weight"] = model.llm.out_proj.weight.detach().clone()
    meta = torch.load(meta_dir / "consolidated.00.pth", weights_only=True)
    for name in MetaReader.module_names.values():
        state[f"llama.layers.0.{name}.weight"] = meta[f"layers.{layer}.{name}.weight"]
    state["llama.norm.weight"] = torch.ones(64)
    return state


def test_lm4ve_file_maps_the_mappers_and_checks_its_llama_copy(tmp_path, tiny_llama_dir):
    llm = {"llm_variant": "frozen", "llm_path": str(tiny_llama_dir), "llm_layers": [2]}
    source = tiny(1, **llm)
    path = write_videomae_checkpoint(tmp_path / "vit_llama.pth", lm4ve_state(source, tiny_llama_dir, 2))
    target = tiny(2, **llm)
    assert load_videomae_checkpoint(target, path) == "finetuned"
    assert torch.equal(target.llm.in_proj.weight, source.llm.in_proj.weight)
    other_layer = write_videomae_checkpoint(tmp_path / "layer1.pth", lm4ve_state(source, tiny_llama_dir, 1))
    with pytest.raises(CheckpointError, match=r"block 0 differs from layer 2 of --llm-path \(first at 'llama"):
        load_videomae_checkpoint(tiny(2, **llm), other_layer)
    with pytest.raises(CheckpointError, match="build the model with --llm-variant frozen"):
        load_videomae_checkpoint(tiny(2), path)


def test_lm4ve_policy_and_the_true_cause_of_a_refusal(tmp_path, tiny_llama_dir):
    """One import (common.frozen_lm.lm4ve.import_lm4ve): 'file' takes the block, 'verify' names what differs;
    llm_mode residual is refused (LM4VE replaces the tokens: a residual adapter's logits would differ)."""
    llm = {"llm_variant": "frozen", "llm_path": str(tiny_llama_dir), "llm_layers": [2]}
    source = tiny(1, **llm)
    layer1 = write_videomae_checkpoint(tmp_path / "layer1.pth", lm4ve_state(source, tiny_llama_dir, 1))
    target = tiny(2, **llm)
    load_videomae_checkpoint(target, layer1, lm4ve_policy="file")
    reference = tiny(3, **{**llm, "llm_layers": [1]})
    assert torch.equal(target.llm.lm.blocks[0].attn.qkv.weight, reference.llm.lm.blocks[0].attn.qkv.weight)
    assert target.llm.lm.fingerprint["format"] == "lm4ve"  # no longer the --llm-path block: the file is named

    same = write_videomae_checkpoint(tmp_path / "layer2.pth", lm4ve_state(source, tiny_llama_dir, 2))
    with pytest.raises(CheckpointError, match="llm_final_norm 'pretrained' loaded from --llm-path.*"
                                              "--llm-final-norm unit"):
        load_videomae_checkpoint(tiny(2, **llm, llm_final_norm="pretrained"), same)
    with pytest.raises(CheckpointError, match="llm_mode 'residual' would compute something else.*--llm-mode replace"):
        load_videomae_checkpoint(tiny(2, **llm, llm_mode="residual"), same)
