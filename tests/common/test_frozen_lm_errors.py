"""Every bad checkpoint is an exception naming the file / key, never a silently random block."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from lm_checkpoints import META_PARAMS, write_meta
from safetensors.torch import save_file

from common.frozen_lm import CheckpointError, FrozenLM, LMConfig, read_lm_config, resolve_layers


def hf_dir_with_state(tmp_path: Path, src: Path, state: dict, config_update: dict | None = None) -> Path:
    path = tmp_path / "hf"
    path.mkdir()
    config = json.loads((src / "config.json").read_text())
    config.update(config_update or {})
    (path / "config.json").write_text(json.dumps(config))
    save_file({k: v.contiguous() for k, v in state.items()}, path / "model.safetensors")
    return path


def test_missing_path(tmp_path):
    with pytest.raises(CheckpointError, match="no such file or directory"):
        FrozenLM.from_checkpoint(tmp_path / "nope")


def test_directory_that_is_not_a_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="not a checkpoint directory"):
        read_lm_config(tmp_path)


def test_file_that_is_not_a_checkpoint(tmp_path):
    (tmp_path / "model.gguf").write_bytes(b"NOPE" + bytes(100))
    with pytest.raises(CheckpointError, match="model.gguf: not a checkpoint"):
        FrozenLM.from_checkpoint(tmp_path / "model.gguf")


def test_unknown_hf_family(tmp_path, hf_llama_mha):
    path = hf_dir_with_state(tmp_path, hf_llama_mha.path, hf_llama_mha.model.state_dict(), {"model_type": "bert"})
    with pytest.raises(CheckpointError, match=r"config\.json: model_type 'bert' is not supported"):
        FrozenLM.from_checkpoint(path)


def test_missing_tensor(tmp_path, hf_llama_mha):
    state = dict(hf_llama_mha.model.state_dict())
    del state["model.layers.1.mlp.up_proj.weight"]
    path = hf_dir_with_state(tmp_path, hf_llama_mha.path, state)
    FrozenLM.from_checkpoint(path, layers=[0])  # the other layer is complete
    with pytest.raises(CheckpointError, match=r"missing tensor 'model\.layers\.1\.mlp\.up_proj\.weight' of layer 1"):
        FrozenLM.from_checkpoint(path, layers=[1])


def test_misshaped_tensor(tmp_path, hf_llama_mha):
    state = dict(hf_llama_mha.model.state_dict())
    state["model.layers.1.self_attn.q_proj.weight"] = torch.zeros(60, 64)
    path = hf_dir_with_state(tmp_path, hf_llama_mha.path, state)
    with pytest.raises(CheckpointError, match=r"'model\.layers\.1\.self_attn\.q_proj\.weight'.*\(60, 64\).*\(64, 64\)"):
        FrozenLM.from_checkpoint(path, layers=[-1])


def test_unexpected_tensor_in_layer(tmp_path, meta_state):
    state = dict(meta_state)
    state["layers.2.attention.wq.bias"] = torch.zeros(64)
    path = write_meta(tmp_path / "meta", state, META_PARAMS)
    with pytest.raises(CheckpointError, match=r"00\.pth: unexpected tensor 'layers\.2\.attention\.wq\.bias'"):
        FrozenLM.from_checkpoint(path, layers=[-1])


def test_meta_params_missing_key(tmp_path, meta_dir):
    path = tmp_path / "meta"
    shutil.copytree(meta_dir, path)
    params = dict(META_PARAMS)
    del params["n_heads"]
    (path / "params.json").write_text(json.dumps(params))
    with pytest.raises(CheckpointError, match=r"params\.json: missing key 'n_heads'"):
        read_lm_config(path)


def test_meta_shards_with_different_keys(tmp_path, meta_sharded_dir):
    path = tmp_path / "meta"
    shutil.copytree(meta_sharded_dir, path)
    shard = torch.load(path / "consolidated.01.pth", weights_only=True)
    del shard["layers.0.ffn_norm.weight"]
    torch.save(shard, path / "consolidated.01.pth")
    with pytest.raises(CheckpointError, match=r"01\.pth: key 'layers\.0\.ffn_norm\.weight' is not in every"):
        FrozenLM.from_checkpoint(path)


@pytest.mark.parametrize("name", ["meta_dir", "hf_llama_mha", "gguf_from_meta", "hf_opt350m"])
def test_truncated_file(name, request, tmp_path):
    ckpt = request.getfixturevalue(name)
    src = getattr(ckpt, "path", ckpt)
    if src.is_dir():
        dst = tmp_path / src.name
        shutil.copytree(src, dst)
        weights = next(f for f in sorted(dst.iterdir()) if f.suffix in (".pth", ".safetensors", ".bin"))
    else:
        dst = weights = tmp_path / src.name
        shutil.copy2(src, dst)
    data = weights.read_bytes()
    weights.write_bytes(data[: int(len(data) * 0.7)])
    with pytest.raises(CheckpointError, match=weights.name):
        FrozenLM.from_checkpoint(dst, layers=[-1])


def test_index_naming_a_missing_shard(tmp_path, hf_from_meta):
    path = tmp_path / "hf"
    shutil.copytree(hf_from_meta.path, path)
    index = json.loads((path / "model.safetensors.index.json").read_text())
    shard = index["weight_map"]["model.layers.2.mlp.down_proj.weight"]
    (path / shard).unlink()
    FrozenLM.from_checkpoint(path, layers=[0])
    with pytest.raises(CheckpointError, match=f"{shard}: weight file named by the index does not exist"):
        FrozenLM.from_checkpoint(path, layers=[2])


def _bare_gguf(path, arch: str):
    """A GGUF with only a block count and one norm tensor: no dimensions in its metadata."""
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_block_count(2)
    writer.add_tensor("blk.0.attn_norm.weight", np.ones(8, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_gguf_unsupported_architecture(tmp_path):
    path = _bare_gguf(tmp_path / "gpt2.gguf", "gpt2")
    with pytest.raises(CheckpointError, match=r"gpt2\.gguf: GGUF architecture 'gpt2' is not supported"):
        FrozenLM.from_checkpoint(path)


def test_gguf_missing_metadata(tmp_path):
    path = _bare_gguf(tmp_path / "bare.gguf", "llama")
    with pytest.raises(CheckpointError, match=r"missing GGUF metadata key 'llama\.embedding_length'"):
        read_lm_config(path)


def test_pretrained_final_norm_of_post_ln_opt_is_refused(hf_opt350m):
    with pytest.raises(CheckpointError, match="has no final norm"):
        FrozenLM.from_checkpoint(hf_opt350m.path, final_norm="pretrained")


def test_bad_layer_requests(meta_dir):
    with pytest.raises(ValueError, match="out of range for a 3-layer model"):
        FrozenLM.from_checkpoint(meta_dir, layers=[3])
    with pytest.raises(ValueError, match="consecutive"):
        FrozenLM.from_checkpoint(meta_dir, layers=[0, 2])
    with pytest.raises(ValueError, match="consecutive"):
        resolve_layers([-1, -2], 3)
    with pytest.raises(ValueError, match="no LLM layer"):
        resolve_layers([], 3)
    assert resolve_layers(-1, 32) == [31] and resolve_layers((-2, -1), 32) == [30, 31]


def test_bad_options():
    cfg = LMConfig("llama", dim=32, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=8, ffn_hidden=64, norm_eps=1e-5)
    with pytest.raises(ValueError, match="final_norm"):
        FrozenLM.from_config(cfg, final_norm="weird")
    with pytest.raises(ValueError, match="needs a checkpoint"):
        FrozenLM.from_config(cfg, final_norm="pretrained")
    with pytest.raises(ValueError, match="dtype"):
        FrozenLM.from_config(cfg, dtype="int8")
    with pytest.raises(ValueError, match="multiple of n_kv_heads"):
        LMConfig("llama", dim=32, n_layers=2, n_heads=4, n_kv_heads=3, head_dim=8, ffn_hidden=64, norm_eps=1e-5)
    with pytest.raises(ValueError, match="unknown LM family"):
        LMConfig("gpt2", dim=32, n_layers=2, n_heads=4, n_kv_heads=4, head_dim=8, ffn_hidden=64, norm_eps=1e-5)
