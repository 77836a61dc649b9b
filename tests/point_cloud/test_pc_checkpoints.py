"""Loading checkpoints written with Point-BERT's key layout: pretrained Point-BERT.pth (transformer_q/k, dVAE,
MoCo queue, ``module.`` prefixes), fine-tuned Point-BERT files, and LM4VE's with LLaMA tensors."""

from __future__ import annotations

import pytest
import torch
from lm_checkpoints import META_HIDDEN, META_PARAMS, VOCAB, meta_state_dict
from pc_fixtures import TINY, random_state, write_finetuned, write_point_bert_pretrained

from common.engine.errors import CheckpointError
from common.frozen_lm import LLMSpec
from point_cloud.checkpoints import PRETRAIN_ONLY_KEYS, load_point_bert_checkpoint, read_state_dict
from point_cloud.models import PointBertConfig, PointTransformer


def test_pretrained_point_bert_loads_the_encoder_and_leaves_the_head(tmp_path):
    path = tmp_path / "Point-BERT.pth"
    body = write_point_bert_pretrained(path, seed=1)
    model = PointTransformer(TINY)
    head_before = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("cls_head_finetune.")}
    assert load_point_bert_checkpoint(model, path) == "pretrained"
    state = model.state_dict()
    for key, tensor in body.items():  # the transformer_q tensors, not transformer_k's (those differ by +1)
        assert torch.equal(state[key], tensor), key
    for key, tensor in head_before.items():
        assert torch.equal(state[key], tensor), key
    raw = read_state_dict(path)
    assert all(not k.startswith("module.") for k in raw) and set(PRETRAIN_ONLY_KEYS) <= set(raw)


def test_pretrained_point_bert_into_the_llm_model(tmp_path, tiny_llama_dir):
    path = tmp_path / "Point-BERT.pth"
    body = write_point_bert_pretrained(path, seed=2)
    model = PointTransformer(TINY, LLMSpec(variant="frozen", path=str(tiny_llama_dir)))
    proj = model.llm.in_proj.weight.clone()
    load_point_bert_checkpoint(model, path)
    assert torch.equal(model.state_dict()["blocks.blocks.1.mlp.fc2.weight"], body["blocks.blocks.1.mlp.fc2.weight"])
    assert torch.equal(model.llm.in_proj.weight, proj)


@pytest.mark.parametrize(("extra", "message"), [
    ({"transformer_q.extra_head.weight": torch.zeros(3)}, "unexpected: extra_head.weight"),
    ({"transformer_q.norm.weight": torch.ones(7)}, r"shape differs: norm.weight \(7,\) vs model \(32,\)"),
])
def test_pretrained_mismatches_are_errors_naming_the_key(tmp_path, extra, message):
    path = tmp_path / "Point-BERT.pth"
    write_point_bert_pretrained(path, extra=extra)
    with pytest.raises(CheckpointError, match=message):
        load_point_bert_checkpoint(PointTransformer(TINY), path)


def test_pretrained_missing_encoder_tensor_is_an_error(tmp_path):
    path = tmp_path / "Point-BERT.pth"
    write_point_bert_pretrained(path)
    ckpt = torch.load(path, weights_only=True)
    del ckpt["base_model"]["module.transformer_q.reduce_dim.bias"]
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match="missing: reduce_dim.bias"):
        load_point_bert_checkpoint(PointTransformer(TINY), path)


def test_wrong_architecture_is_refused(tmp_path):
    path = tmp_path / "Point-BERT.pth"
    write_point_bert_pretrained(path)
    with pytest.raises(CheckpointError, match="shape differs"):
        load_point_bert_checkpoint(PointTransformer(PointBertConfig(trans_dim=48, depth=2, num_heads=2)), path)


@pytest.mark.parametrize("prefix", ["module.", ""])
def test_finetuned_point_bert_round_trip_is_strict(tmp_path, prefix):
    state = random_state(PointTransformer(TINY), seed=3)
    path = write_finetuned(tmp_path / "ScanObjectNN_hardest.pth", state, prefix)
    model = PointTransformer(TINY)
    assert load_point_bert_checkpoint(model, path) == "finetuned"
    for key, tensor in model.state_dict().items():
        assert torch.equal(tensor, state[key]), key
    del state["cls_head_finetune.3.bias"]
    write_finetuned(path, state, prefix)
    with pytest.raises(CheckpointError, match="missing: cls_head_finetune.3.bias"):
        load_point_bert_checkpoint(PointTransformer(TINY), path)


def lm4ve_state(model: PointTransformer, final_norm: float = 1.0, llama_seed: int = 9) -> tuple[dict, dict]:
    """An LM4VE fine-tuned state dict: PointTransformer keys + llama_dim_mapper1/2 + llama.layers.0 (Meta names)."""
    state = {k: v for k, v in random_state(model, seed=4).items() if not k.startswith("llm.")}
    state["llama_dim_mapper1.weight"] = torch.randn(64, 32)
    state["llama_dim_mapper2.weight"] = torch.randn(32, 64)
    llama = meta_state_dict(META_PARAMS, META_HIDDEN, VOCAB, seed=llama_seed)
    layer = {k.removeprefix("layers.2."): v for k, v in llama.items() if k.startswith("layers.2.") and "rope" not in k}
    state.update({f"llama.layers.0.{k}": v for k, v in layer.items()})
    state["llama.norm.weight"] = torch.full((64,), final_norm)
    return state, layer


def test_lm4ve_finetuned_checkpoint_maps_the_mappers_and_the_llama_block(tmp_path, tiny_llama_dir):
    model = PointTransformer(TINY, LLMSpec(variant="frozen", path=str(tiny_llama_dir)))
    state, layer = lm4ve_state(model)
    load_point_bert_checkpoint(model, write_finetuned(tmp_path / "ckpt-best.pth", state))
    assert torch.equal(model.llm.in_proj.weight, state["llama_dim_mapper1.weight"])
    assert torch.equal(model.llm.out_proj.weight, state["llama_dim_mapper2.weight"])
    block = model.llm.lm.blocks[0]
    q_rows = layer["attention.wq.weight"].shape[0]
    assert torch.equal(block.attn.qkv.weight[:q_rows], layer["attention.wq.weight"])
    assert torch.equal(block.ffn.down.weight, layer["feed_forward.w2.weight"])
    assert model.llm.lm.fingerprint["source"] == "lm4ve_checkpoint"
    assert torch.equal(model.norm.weight, state["norm.weight"])


def test_lm4ve_checkpoint_of_the_same_llama_layer_keeps_the_llm_fingerprint(tmp_path, tiny_llama_dir):
    model = PointTransformer(TINY, LLMSpec(variant="frozen", path=str(tiny_llama_dir)))
    before = dict(model.llm.lm.fingerprint)
    state, _ = lm4ve_state(model, llama_seed=3)  # the tiny LLaMA's own last layer (conftest writes seed 3)
    load_point_bert_checkpoint(model, write_finetuned(tmp_path / "ckpt-best.pth", state))
    assert model.llm.lm.fingerprint == before and before["source"] == "checkpoint"


def test_lm4ve_trained_final_norm_needs_final_norm_pretrained(tmp_path, tiny_llama_dir):
    model = PointTransformer(TINY, LLMSpec(variant="frozen", path=str(tiny_llama_dir)))
    path = write_finetuned(tmp_path / "ckpt-best.pth", lm4ve_state(model, final_norm=2.0)[0])
    with pytest.raises(CheckpointError, match="llama.norm.weight' is not all ones"):
        load_point_bert_checkpoint(model, path)
    with pytest.raises(CheckpointError, match="holds LM4VisualEncoding LLaMA tensors"):
        load_point_bert_checkpoint(PointTransformer(TINY), path)


def test_unreadable_files_are_one_line_errors(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        read_state_dict(tmp_path / "nope.pth")
    torch.save({"state_dict": {}}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="no 'base_model'"):
        read_state_dict(tmp_path / "other.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        read_state_dict(tmp_path / "junk.pth")
