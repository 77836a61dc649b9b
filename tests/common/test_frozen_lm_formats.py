"""The same weights in Meta / HF / GGUF files give the same block; configs agree; shards merge correctly."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from lm_checkpoints import META_HIDDEN, write_gguf

from common.frozen_lm import FrozenLM, inspect_checkpoint, meta_ffn_hidden, read_lm_config


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def run(path, layers, x, **kwargs) -> torch.Tensor:
    with torch.no_grad():
        return FrozenLM.from_checkpoint(path, layers=layers, final_norm="pretrained", **kwargs)(x)


def test_configs_agree_across_formats(meta_dir, meta_sharded_dir, hf_from_meta, gguf_from_meta):
    cfgs = [read_lm_config(p) for p in (meta_dir, meta_sharded_dir, hf_from_meta.path, gguf_from_meta)]
    assert all(c == cfgs[0] for c in cfgs)
    cfg = cfgs[0]
    assert (cfg.family, cfg.dim, cfg.n_layers, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim) == ("llama", 64, 3, 4, 2, 16)
    assert cfg.ffn_hidden == META_HIDDEN == meta_ffn_hidden(64, 32)
    assert cfg.norm_eps == 1e-5


def test_meta_hf_gguf_give_identical_outputs(meta_dir, hf_from_meta, gguf_from_meta):
    x = torch.randn(2, 10, 64)
    meta, hf, gguf = (run(p, [-1], x) for p in (meta_dir, hf_from_meta.path, gguf_from_meta))
    # HF's and llama.cpp's q/k row permutations reorder each head's dot product only: fp32 rounding level
    assert rel_err(hf, meta) <= 1e-6
    assert rel_err(gguf, meta) <= 1e-6


def test_gguf_fp16_and_q8_layers_are_close(meta_dir, gguf_from_meta):
    x = torch.randn(2, 10, 64)
    assert rel_err(run(gguf_from_meta, [1], x), run(meta_dir, [1], x)) <= 2e-3  # F16 weights
    q8 = rel_err(run(gguf_from_meta, [0], x), run(meta_dir, [0], x))  # Q8_0 weights (8-bit, block scales)
    assert 1e-5 < q8 <= 3e-2


def test_gguf_q_k_rows_are_unpermuted_to_hf_layout(hf_from_meta, gguf_from_meta):
    a = FrozenLM.from_checkpoint(hf_from_meta.path, layers=[-1])
    b = FrozenLM.from_checkpoint(gguf_from_meta, layers=[-1])
    for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        assert torch.equal(pa, pb), name


def test_meta_shards_merge_to_the_unsharded_weights(meta_dir, meta_sharded_dir):
    a = FrozenLM.from_checkpoint(meta_dir, layers=(0, 1, 2), final_norm="pretrained")
    b = FrozenLM.from_checkpoint(meta_sharded_dir, layers=(0, 1, 2), final_norm="pretrained")
    for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        assert torch.equal(pa, pb), name
    assert a.fingerprint["sha256"] == b.fingerprint["sha256"]


def test_fused_weights_hold_the_meta_tensors(meta_dir, meta_state):
    lm = FrozenLM.from_checkpoint(meta_dir, layers=[-1])
    block, p = lm.blocks[0], "layers.2."
    q, k, v = block.attn.qkv.weight.split([64, 32, 32])
    assert torch.equal(q, meta_state[p + "attention.wq.weight"])
    assert torch.equal(k, meta_state[p + "attention.wk.weight"])
    assert torch.equal(v, meta_state[p + "attention.wv.weight"])
    gate, up = block.ffn.gate_up.weight.split(META_HIDDEN)
    assert torch.equal(gate, meta_state[p + "feed_forward.w1.weight"])
    assert torch.equal(up, meta_state[p + "feed_forward.w3.weight"])
    assert torch.equal(block.ffn.down.weight, meta_state[p + "feed_forward.w2.weight"])
    assert torch.equal(block.attn_norm.weight, meta_state[p + "attention_norm.weight"])


def test_hf_bf16_checkpoint_loads_into_any_storage_dtype(tmp_path, hf_llama_mha):
    bf16_model = copy.deepcopy(hf_llama_mha.model).to(torch.bfloat16)  # never mutate the session fixture
    bf16_model.save_pretrained(tmp_path)
    expected = bf16_model.model.layers[1].self_attn.o_proj.weight
    for dtype in (torch.float32, torch.bfloat16, "float16"):
        lm = FrozenLM.from_checkpoint(tmp_path, layers=[-1], dtype=dtype)
        assert torch.equal(lm.blocks[0].attn.out.weight.float(), expected.float().to(lm.compute_dtype).float())
    assert lm.compute_dtype == torch.float16
    assert lm.load_stats["bytes_read"] == lm.config.params_per_layer() * 2  # bf16 on disk


@pytest.mark.parametrize("name", ["meta_dir", "meta_sharded_dir", "hf_from_meta", "gguf_from_meta", "hf_opt350m"])
def test_inspect_reports_config_and_reads(name, request):
    ckpt = request.getfixturevalue(name)
    report = inspect_checkpoint(getattr(ckpt, "path", ckpt), layers=[-1])
    n_tensors = 16 if name == "hf_opt350m" else 9
    expected_format = {"meta_dir": "meta", "meta_sharded_dir": "meta", "hf_from_meta": "hf-safetensors",
                       "gguf_from_meta": "gguf", "hf_opt350m": "hf-bin"}[name]
    assert report["format"] == expected_format
    assert report["layers"] == [report["n_layers"] - 1]
    assert report["tensors_read"] == n_tensors
    assert report["bytes_read"] == report["params_per_layer"] * 4  # fp32 everywhere for the last layer
    assert report["bytes_read"] < 0.6 * report["checkpoint_bytes"]
    assert len(report["sha256"]) == 64
    if name == "hf_opt350m":
        assert (report["family"], report["pre_norm"], report["activation"]) == ("opt", False, "relu")


def test_qwen2_gguf_equals_the_hf_checkpoint(tmp_path, hf_qwen2):
    path = write_gguf(tmp_path / "qwen2.gguf", hf_qwen2.model, arch="qwen2")
    assert read_lm_config(path) == read_lm_config(hf_qwen2.path)
    a = FrozenLM.from_checkpoint(path, layers=[-1], final_norm="pretrained")
    b = FrozenLM.from_checkpoint(hf_qwen2.path, layers=[-1], final_norm="pretrained")
    for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        assert torch.equal(pa, pb), name
    assert a.load_stats["tensors_read"] == 13  # 9 weights + 3 q/k/v biases + output_norm


def test_sharded_legacy_bin_with_index(tmp_path, hf_opt):
    state = {k: v.clone() for k, v in hf_opt.model.state_dict().items()}
    hf_opt.model.config.save_pretrained(tmp_path)
    shards = {"pytorch_model-00001-of-00002.bin": {k: v for k, v in state.items() if ".layers.1." not in k},
              "pytorch_model-00002-of-00002.bin": {k: v for k, v in state.items() if ".layers.1." in k}}
    for name, part in shards.items():
        torch.save(part, tmp_path / name)
    weight_map = {k: name for name, part in shards.items() for k in part}
    (tmp_path / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    x = torch.randn(2, 5, 64)
    assert torch.equal(run(tmp_path, [-1], x), run(hf_opt.path, [-1], x))
    assert FrozenLM.from_checkpoint(tmp_path).fingerprint["format"] == "hf-bin"
