"""Hugging Face checkpoint directories: ``config.json`` + safetensors (single or sharded with
``model.safetensors.index.json``) or legacy ``pytorch_model*.bin`` (read with ``torch.load(mmap=True)``).

Families by ``model_type``: ``llama`` / ``mistral`` (LLaMA-1/2/3, Mistral, SmolLM2), ``qwen2`` (q/k/v biases)
and ``opt`` (pre-LN, and OPT-350m's post-LN). HF's q/k row permutation (for rotate-half RoPE) is kept as is:
it permutes rows inside each head identically for q and k, so without RoPE the block output is unchanged.
OPT's ``project_in``/``project_out`` (``word_embed_proj_dim``) sit between the embeddings and the first/last
block at model level, not inside a block, so they play no part here. Sliding-window settings (Mistral, Qwen2)
are not applied: the frozen block always attends over all (non-padded) tokens.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..config import LMConfig
from ..errors import CheckpointError
from .base import (
    CheckpointReader,
    TensorInfo,
    load_json_object,
    short_error,
    torch_dtype_is_float,
    torch_load_mmap,
    torch_raw_bytes,
)

CONFIG_FILE = "config.json"
FAMILY_OF_MODEL_TYPE = {"llama": "llama", "mistral": "llama", "qwen2": "qwen2", "opt": "opt"}
# config.json activation names -> the block's activation names.
ACTIVATION_OF = {"silu": "silu", "swish": "silu", "relu": "relu", "gelu": "gelu", "gelu_new": "gelu_tanh",
                 "gelu_pytorch_tanh": "gelu_tanh"}
WEIGHT_FILES = ("model.safetensors.index.json", "model.safetensors", "pytorch_model.bin.index.json",
                "pytorch_model.bin")
SAFETENSORS_FLOAT_DTYPES = ("F16", "BF16", "F32", "F64")
# (layer prefix template, final norm prefix) in the order they are tried; the second form is a bare base model.
KEY_LAYOUTS = {
    "llama": (("model.layers.{}.", "model.norm."), ("layers.{}.", "norm.")),
    "opt": (("model.decoder.layers.{}.", "model.decoder.final_layer_norm."),
            ("decoder.layers.{}.", "decoder.final_layer_norm.")),
}
KEY_LAYOUTS["qwen2"] = KEY_LAYOUTS["llama"]
LLAMA_MODULES = {
    "attn_norm": "input_layernorm", "attn.q": "self_attn.q_proj", "attn.k": "self_attn.k_proj",
    "attn.v": "self_attn.v_proj", "attn.out": "self_attn.o_proj", "ffn_norm": "post_attention_layernorm",
    "ffn.gate": "mlp.gate_proj", "ffn.up": "mlp.up_proj", "ffn.down": "mlp.down_proj",
}
OPT_MODULES = {
    "attn_norm": "self_attn_layer_norm", "attn.q": "self_attn.q_proj", "attn.k": "self_attn.k_proj",
    "attn.v": "self_attn.v_proj", "attn.out": "self_attn.out_proj", "ffn_norm": "final_layer_norm",
    "ffn.fc1": "fc1", "ffn.fc2": "fc2",
}


def is_hf_dir(path: Path) -> bool:
    """A directory with a Hugging Face ``config.json``."""
    return path.is_dir() and (path / CONFIG_FILE).is_file()


def read_hf_config(path: Path) -> LMConfig:
    """LMConfig from ``config.json``; an unknown ``model_type`` is a CheckpointError."""
    file = path / CONFIG_FILE
    cfg = load_json_object(file)
    model_type = cfg.get("model_type")
    family = FAMILY_OF_MODEL_TYPE.get(model_type)
    if family is None:
        raise CheckpointError(f"{file}: model_type {model_type!r} is not supported "
                              f"(supported: {', '.join(sorted(FAMILY_OF_MODEL_TYPE))})")

    def get(key: str, default=None):
        if key in cfg and cfg[key] is not None:
            return cfg[key]
        if default is None:
            raise CheckpointError(f"{file}: missing key '{key}' for model_type {model_type!r}")
        return default

    act_key = "activation_function" if family == "opt" else "hidden_act"
    activation = ACTIVATION_OF.get(get(act_key, "relu" if family == "opt" else "silu"))
    if activation is None:
        raise CheckpointError(f"{file}: {act_key}={cfg[act_key]!r} is not supported "
                              f"(supported: {', '.join(ACTIVATION_OF)})")
    try:
        dim, n_heads = int(get("hidden_size")), int(get("num_attention_heads"))
        common = dict(family=family, dim=dim, n_layers=int(get("num_hidden_layers")), n_heads=n_heads,
                      activation=activation)
        if family == "opt":
            bias, pre_norm = bool(get("enable_bias", True)), bool(get("do_layer_norm_before", True))
            return LMConfig(
                **common, n_kv_heads=n_heads, head_dim=dim // n_heads, ffn_hidden=int(get("ffn_dim")),
                norm_eps=1e-5,  # HF OPT uses nn.LayerNorm's default eps
                pre_norm=pre_norm, qkv_bias=bias, out_bias=bias, ffn_bias=bias,
                norm_affine=bool(get("layer_norm_elementwise_affine", True)),
                has_final_norm=pre_norm and not cfg.get("_remove_final_layer_norm", False),
            )
        is_qwen2 = family == "qwen2"
        return LMConfig(
            **common, n_kv_heads=int(get("num_key_value_heads", n_heads)),
            head_dim=int(get("head_dim", dim // n_heads)), ffn_hidden=int(get("intermediate_size")),
            norm_eps=float(get("rms_norm_eps")),
            qkv_bias=is_qwen2 or bool(cfg.get("attention_bias", False)),
            out_bias=not is_qwen2 and bool(cfg.get("attention_bias", False)),
            ffn_bias=bool(cfg.get("mlp_bias", False)),
        )
    except (TypeError, ValueError, ZeroDivisionError) as exc:
        raise CheckpointError(f"{file}: invalid model configuration ({exc})") from exc


class HFReader(CheckpointReader):
    """Lazy reader of a Hugging Face directory: headers/indices first, tensors on demand."""

    format = "hf"
    skipped_layer_suffixes = ("self_attn.rotary_emb.inv_freq",)  # old LLaMA conversions stored this buffer

    def __init__(self, path: Path):
        config = read_hf_config(path)
        self.module_names = OPT_MODULES if config.family == "opt" else LLAMA_MODULES
        self._handles: dict[Path, object] = {}
        self._weight_map = self._find_weights(path)  # key -> file
        super().__init__(path, config, list(self._weight_map))
        for layer_template, norm_prefix in KEY_LAYOUTS[config.family]:
            if any(k.startswith(layer_template.split("{}")[0]) for k in self.keys):
                self._layer_template, self._norm_prefix = layer_template, norm_prefix
                break
        else:
            expected = KEY_LAYOUTS[config.family][0][0].format(0)
            raise CheckpointError(f"{self.file_of()}: no layer tensors found (expected keys like '{expected}*')")
        self.format = "hf-safetensors" if self._is_safetensors else "hf-bin"

    def _find_weights(self, path: Path) -> dict[str, Path]:
        for name in WEIGHT_FILES:
            file = path / name
            if not file.is_file():
                continue
            self._is_safetensors = "safetensors" in name
            if name.endswith(".index.json"):
                weight_map = load_json_object(file).get("weight_map")
                if not isinstance(weight_map, dict) or not weight_map:
                    raise CheckpointError(f"{file}: missing or empty 'weight_map'")
                return {key: path / shard for key, shard in weight_map.items()}
            return {key: file for key in self._open(file).keys()}
        raise CheckpointError(f"{path}: no weights found (expected one of {', '.join(WEIGHT_FILES)})")

    def _open(self, file: Path):
        """The safetensors handle or the mmap'ed state dict of ``file`` (opened once)."""
        if file not in self._handles:
            if not file.is_file():
                raise CheckpointError(f"{file}: weight file named by the index does not exist")
            if self._is_safetensors:
                from safetensors import safe_open

                try:
                    self._handles[file] = safe_open(str(file), framework="pt", device="cpu")
                except Exception as exc:  # SafetensorError for truncated/corrupt headers
                    raise CheckpointError(f"{file}: not a readable safetensors file, truncated or corrupt "
                                          f"({short_error(exc)})") from exc
            else:
                self._handles[file] = torch_load_mmap(file)
        return self._handles[file]

    def layer_prefix(self, index: int) -> str:
        return self._layer_template.format(index)

    def final_norm_prefix(self) -> str | None:
        return self._norm_prefix if self.config.has_final_norm else None

    def file_of(self, key: str | None = None) -> str:
        if key is not None and key in self._weight_map:
            return str(self._weight_map[key])
        files = sorted(set(self._weight_map.values()))
        return str(files[0]) if len(files) == 1 else str(self.path)

    def info(self, key: str) -> TensorInfo:
        handle = self._open(self._weight_map[key])
        if self._is_safetensors:
            tensor_slice = handle.get_slice(key)
            dtype = tensor_slice.get_dtype()
            return TensorInfo(tuple(tensor_slice.get_shape()), dtype, dtype in SAFETENSORS_FLOAT_DTYPES)
        tensor = handle[key]
        return TensorInfo(tuple(tensor.shape), str(tensor.dtype).removeprefix("torch."),
                          torch_dtype_is_float(tensor.dtype))

    def _load(self, key: str) -> tuple[torch.Tensor, memoryview]:
        handle = self._open(self._weight_map[key])
        tensor = handle.get_tensor(key) if self._is_safetensors else handle[key]
        return tensor, torch_raw_bytes(tensor)

    def close(self) -> None:
        self._handles.clear()
