"""Writers of tiny LLM checkpoints in the real on-disk formats, with the real writers and real conversions.

- Meta: ``torch.save`` of a Meta-keyed dict + ``params.json``; model-parallel shards split as Meta does.
- Hugging Face: ``save_pretrained`` (safetensors), or ``torch.save`` of the state dict as legacy
  ``pytorch_model.bin``; Meta -> HF uses the q/k permutation of transformers' convert_llama_weights_to_hf.py.
- GGUF: ``gguf.GGUFWriter`` with llama metadata; HF -> GGUF q/k permuted as llama.cpp's convert_hf_to_gguf.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

# The tiny Meta-style model of the fixtures (GQA: 4 heads, 2 kv heads).
META_PARAMS = {"dim": 64, "n_layers": 3, "n_heads": 4, "n_kv_heads": 2, "multiple_of": 32, "norm_eps": 1e-5,
               "vocab_size": -1}
META_HIDDEN = 192  # int(2 * 4 * 64 / 3) = 170, rounded up to a multiple of 32
VOCAB = 48

# Meta model-parallel split dims, as in Meta's llama/model.py (ColumnParallelLinear -> 0, RowParallel -> 1).
META_SPLIT_DIM = {"attention.wq": 0, "attention.wk": 0, "attention.wv": 0, "feed_forward.w1": 0,
                  "feed_forward.w3": 0, "output": 0, "attention.wo": 1, "feed_forward.w2": 1, "tok_embeddings": 1}


def meta_state_dict(params: dict, hidden: int, vocab: int, seed: int, std: float = 0.15) -> dict[str, torch.Tensor]:
    """Random LLaMA weights under Meta's key names (fp32), including the rope.freqs tables Meta files carry."""
    g = torch.Generator().manual_seed(seed)
    dim, n_heads = params["dim"], params["n_heads"]
    n_kv, head_dim = params.get("n_kv_heads") or n_heads, dim // n_heads

    def rnd(*shape):
        return torch.randn(*shape, generator=g) * std

    def norm():
        return 1.0 + 0.1 * torch.randn(dim, generator=g)

    freqs = 1.0 / (10000 ** (torch.arange(0, head_dim, 2).float() / head_dim))
    sd = {"tok_embeddings.weight": rnd(vocab, dim), "norm.weight": norm(), "output.weight": rnd(vocab, dim),
          "rope.freqs": freqs}
    for i in range(params["n_layers"]):
        p = f"layers.{i}."
        sd[p + "attention.wq.weight"] = rnd(n_heads * head_dim, dim)
        sd[p + "attention.wk.weight"] = rnd(n_kv * head_dim, dim)
        sd[p + "attention.wv.weight"] = rnd(n_kv * head_dim, dim)
        sd[p + "attention.wo.weight"] = rnd(dim, n_heads * head_dim)
        sd[p + "feed_forward.w1.weight"] = rnd(hidden, dim)
        sd[p + "feed_forward.w2.weight"] = rnd(dim, hidden)
        sd[p + "feed_forward.w3.weight"] = rnd(hidden, dim)
        sd[p + "attention_norm.weight"] = norm()
        sd[p + "ffn_norm.weight"] = norm()
        sd[p + "attention.inner_attention.rope.freqs"] = freqs.clone()
    return sd


def write_meta(directory: Path, state: dict[str, torch.Tensor], params: dict, n_shards: int = 1) -> Path:
    """``params.json`` + ``consolidated.NN.pth``; with n_shards > 1, tensors are split like Meta's MP shards."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "params.json").write_text(json.dumps(params))
    for shard in range(n_shards):
        part = {}
        for key, tensor in state.items():
            module = key.removesuffix(".weight")
            if module.startswith("layers."):
                module = module.split(".", 2)[2]
            dim = META_SPLIT_DIM.get(module) if n_shards > 1 else None
            part[key] = tensor.clone() if dim is None else tensor.chunk(n_shards, dim=dim)[shard].clone()
        torch.save(part, directory / f"consolidated.{shard:02d}.pth")
    return directory


def hf_permute(w: torch.Tensor, n_heads: int, dim1: int, dim2: int) -> torch.Tensor:
    """transformers' convert_llama_weights_to_hf.py ``permute`` (Meta -> HF rotate-half row order)."""
    return w.view(n_heads, dim1 // n_heads // 2, 2, dim2).transpose(1, 2).reshape(dim1, dim2)


def meta_to_hf_llama(state: dict[str, torch.Tensor], params: dict, hidden: int, vocab: int):
    """A LlamaForCausalLM holding the Meta weights, converted exactly as the official script does."""
    from transformers import LlamaConfig, LlamaForCausalLM

    dim, n_heads = params["dim"], params["n_heads"]
    n_kv = params.get("n_kv_heads") or n_heads
    kv_dim = dim // n_heads * n_kv
    hf = {"model.embed_tokens.weight": state["tok_embeddings.weight"], "model.norm.weight": state["norm.weight"],
          "lm_head.weight": state["output.weight"]}
    for i in range(params["n_layers"]):
        m, p = f"model.layers.{i}.", f"layers.{i}."
        hf[m + "self_attn.q_proj.weight"] = hf_permute(state[p + "attention.wq.weight"], n_heads, dim, dim)
        hf[m + "self_attn.k_proj.weight"] = hf_permute(state[p + "attention.wk.weight"], n_kv, kv_dim, dim)
        hf[m + "self_attn.v_proj.weight"] = state[p + "attention.wv.weight"]
        hf[m + "self_attn.o_proj.weight"] = state[p + "attention.wo.weight"]
        hf[m + "mlp.gate_proj.weight"] = state[p + "feed_forward.w1.weight"]
        hf[m + "mlp.down_proj.weight"] = state[p + "feed_forward.w2.weight"]
        hf[m + "mlp.up_proj.weight"] = state[p + "feed_forward.w3.weight"]
        hf[m + "input_layernorm.weight"] = state[p + "attention_norm.weight"]
        hf[m + "post_attention_layernorm.weight"] = state[p + "ffn_norm.weight"]
    config = LlamaConfig(hidden_size=dim, intermediate_size=hidden, num_attention_heads=n_heads,
                         num_key_value_heads=n_kv, num_hidden_layers=params["n_layers"],
                         rms_norm_eps=params["norm_eps"], vocab_size=vocab, tie_word_embeddings=False)
    model = LlamaForCausalLM(config)
    model.load_state_dict(hf, strict=True)
    return model.eval()


def perturb_(model: torch.nn.Module, seed: int, std: float = 0.15) -> torch.nn.Module:
    """Give every weight a non-trivial random value (HF init leaves norms at 1 and biases at 0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * noise)
            elif name.endswith("bias"):
                p.copy_(0.1 * noise)
            else:
                p.copy_(std * noise)
    return model.eval()


def write_hf_legacy_bin(directory: Path, model, strip_prefix: str = "") -> Path:
    """Old-style HF directory: config.json + ``torch.save``'d ``pytorch_model.bin`` (optionally without the
    ``model.`` prefix, as the original facebook/opt-* uploads)."""
    directory.mkdir(parents=True, exist_ok=True)
    model.config.save_pretrained(directory)
    state = {k.removeprefix(strip_prefix): v.clone() for k, v in model.state_dict().items()}
    torch.save(state, directory / "pytorch_model.bin")
    return directory


def llamacpp_permute(w: np.ndarray, n_head: int, n_head_kv: int | None = None) -> np.ndarray:
    """llama.cpp convert_hf_to_gguf.py ``LlamaModel.permute`` (HF -> GGUF row order of q/k)."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_gguf(path: Path, hf_model, layer_types: dict[int, str] | None = None, default_type: str = "F32",
               arch: str = "llama") -> Path:
    """A GGUF from an HF llama (arch "llama") or qwen2 (arch "qwen2") model as llama.cpp's converter writes it
    (q/k rows permuted for llama only; qwen2's q/k/v biases in F32). Tensor types per layer: "F32", "F16",
    "Q8_0", or "garbage" (small int32 tensors of the wrong shape under the right names)."""
    layer_types = layer_types or {}
    import gguf

    cfg = hf_model.config
    sd = {k: v.detach().numpy() for k, v in hf_model.state_dict().items()}
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_name(f"tiny-test-{arch}")
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_context_length(2048)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)

    def add(name: str, array: np.ndarray, qtype: str) -> None:
        array = np.ascontiguousarray(array, dtype=np.float32)
        if qtype == "garbage":
            writer.add_tensor(name, np.arange(5, dtype=np.int32))
        elif qtype == "F32" or array.ndim == 1:  # llama.cpp keeps norms in F32
            writer.add_tensor(name, array)
        elif qtype == "F16":
            writer.add_tensor(name, array.astype(np.float16))
        else:
            q = gguf.GGMLQuantizationType[qtype]
            writer.add_tensor(name, gguf.quants.quantize(array, q), raw_dtype=q)

    add("token_embd.weight", sd["model.embed_tokens.weight"], "F16")
    add("output_norm.weight", sd["model.norm.weight"], "F32")
    add("output.weight", sd["lm_head.weight"], "F16")
    n_head, n_kv = cfg.num_attention_heads, cfg.num_key_value_heads
    for i in range(cfg.num_hidden_layers):
        m, qtype = f"model.layers.{i}.", layer_types.get(i, default_type)
        add(f"blk.{i}.attn_norm.weight", sd[m + "input_layernorm.weight"], qtype)
        q, k = sd[m + "self_attn.q_proj.weight"], sd[m + "self_attn.k_proj.weight"]
        if arch == "llama":
            q, k = llamacpp_permute(q, n_head, n_head), llamacpp_permute(k, n_head, n_kv)
        add(f"blk.{i}.attn_q.weight", q, qtype)
        add(f"blk.{i}.attn_k.weight", k, qtype)
        add(f"blk.{i}.attn_v.weight", sd[m + "self_attn.v_proj.weight"], qtype)
        for name in ("q", "k", "v"):
            if m + f"self_attn.{name}_proj.bias" in sd:
                add(f"blk.{i}.attn_{name}.bias", sd[m + f"self_attn.{name}_proj.bias"], "F32")
        add(f"blk.{i}.attn_output.weight", sd[m + "self_attn.o_proj.weight"], qtype)
        add(f"blk.{i}.ffn_norm.weight", sd[m + "post_attention_layernorm.weight"], qtype)
        add(f"blk.{i}.ffn_gate.weight", sd[m + "mlp.gate_proj.weight"], qtype)
        add(f"blk.{i}.ffn_up.weight", sd[m + "mlp.up_proj.weight"], qtype)
        add(f"blk.{i}.ffn_down.weight", sd[m + "mlp.down_proj.weight"], qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def nan_fill_tensor_bytes(files: list[Path], arrays: list[np.ndarray]) -> None:
    """Overwrite, in place, every stored copy of each array's bytes (found by content in ``files``) with 0xFF,
    a NaN bit pattern for fp32/fp16 and for GGUF block scales. Each array must be found at least once."""
    contents = {file: bytearray(file.read_bytes()) for file in files}
    needles = {np.ascontiguousarray(array).tobytes(): array for array in arrays}  # equal tensors: one needle
    for needle, array in needles.items():
        found = 0
        for data in contents.values():
            start = data.find(needle)
            while start >= 0:
                data[start:start + len(needle)] = b"\xff" * len(needle)
                found += 1
                start = data.find(needle, start + len(needle))
        assert found, f"bytes of a {array.dtype} {array.shape} tensor not found in {[f.name for f in files]}"
    for file, data in contents.items():
        file.write_bytes(bytes(data))
