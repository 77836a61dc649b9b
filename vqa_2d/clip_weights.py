"""CLIP visual-tower weights for METER's image encoder (``transformers.CLIPVisionModel``), strictly mapped.

Sources: an OpenAI CLIP ``.pt`` (TorchScript archive as released, or a plain state dict) or a Hugging Face CLIP
directory (``CLIPModel`` or ``CLIPVisionModel``; safetensors or ``pytorch_model.bin``). METER builds only
``layers - 1`` residual blocks (zdou0830/METER ``clip_model.py``: ``range(layers-1)``): the last block of the
checkpoint is dropped on purpose. The position embedding is resized bicubically to the training grid as METER's
``adapt_position_encoding``. Every tensor of the checkpoint is either mapped or on an explicit ignore list
(the text tower, projections, the unused last block); anything else is an error naming it.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from common.engine.errors import CheckpointError
from common.engine.state_dict import read_state_dict
from vqa_2d.checkpoints import read_hf_weights

# OpenAI keys outside the visual tower (text tower and the embedding metadata).
OPENAI_TEXT = re.compile(r"^(token_embedding\.|positional_embedding$|transformer\.|ln_final\.|text_projection$|"
                         r"logit_scale$|input_resolution$|context_length$|vocab_size$)")
HF_IGNORED = re.compile(r"^(text_model\.|text_projection\.|visual_projection\.|logit_scale$|"
                        r"(vision_model\.)?embeddings\.position_ids$)")


class CLIPWeightsError(ValueError):
    """A CLIP checkpoint that cannot be read or does not map onto the tower."""


@dataclass(frozen=True)
class CLIPDims:
    """Sizes of a CLIP visual tower as stored in the checkpoint (``layers`` counts the stored blocks)."""

    width: int
    layers: int
    heads: int
    patch: int
    image_size: int  # the checkpoint's pretraining resolution
    ffn: int


def read_openai(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """State dict of an OpenAI CLIP file: a TorchScript archive (as released) or a pickled state dict."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch 2.x deprecates TorchScript; the files remain
            return dict(torch.jit.load(str(path), map_location="cpu").state_dict())
    except RuntimeError:
        pass
    try:
        state, _ = read_state_dict(path, keys=("state_dict",), allow=())
    except CheckpointError as err:
        raise CLIPWeightsError(f"neither a TorchScript archive nor a state dict: {err}") from err
    return state


def read_hf(directory: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """State dict and vision config of a Hugging Face CLIP directory."""
    directory = Path(directory)
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise CLIPWeightsError(f"{directory}: no config.json")
    config = json.loads(config_path.read_text())
    vision = config.get("vision_config", config)
    try:
        return read_hf_weights(directory), vision
    except CheckpointError as err:
        raise CLIPWeightsError(str(err)) from err


def openai_dims(state: dict[str, torch.Tensor]) -> CLIPDims:
    try:
        width, _, patch, _ = state["visual.conv1.weight"].shape
        grid = round((state["visual.positional_embedding"].shape[0] - 1) ** 0.5)
        ffn = state["visual.transformer.resblocks.0.mlp.c_fc.weight"].shape[0]
    except KeyError as err:
        raise CLIPWeightsError(f"not an OpenAI CLIP visual state dict: missing {err.args[0]}") from None
    layers = len({k.split(".")[3] for k in state if k.startswith("visual.transformer.resblocks.")})
    return CLIPDims(width, layers, width // 64, patch, patch * grid, ffn)


def hf_dims(vision: dict) -> CLIPDims:
    try:
        return CLIPDims(vision["hidden_size"], vision["num_hidden_layers"], vision["num_attention_heads"],
                        vision["patch_size"], vision["image_size"], vision["intermediate_size"])
    except KeyError as err:
        raise CLIPWeightsError(f"vision config lacks {err.args[0]}") from None


def resize_positions(pos: torch.Tensor, grid_after: int) -> torch.Tensor:
    """METER's ``adapt_position_encoding``: bicubic resize of the patch positions, class position kept."""
    grid_before = round((pos.shape[0] - 1) ** 0.5)
    if grid_before == grid_after:
        return pos
    dim = pos.shape[-1]
    patches = pos[1:].reshape(grid_before, grid_before, dim).permute(2, 0, 1).unsqueeze(0)
    patches = F.interpolate(patches.float(), size=(grid_after, grid_after), mode="bicubic").to(pos.dtype)
    return torch.cat([pos[:1], patches.squeeze(0).permute(1, 2, 0).reshape(-1, dim)], dim=0)


def openai_to_hf(state: dict[str, torch.Tensor], grid: int, drop_last: bool = True) -> dict[str, torch.Tensor]:
    """OpenAI visual keys -> ``CLIPVisionModel`` keys at ``grid`` x ``grid``; ``drop_last``: leave out the last
    block (a CLIP release; METER's own checkpoints hold the ``layers - 1`` blocks already)."""
    dims = openai_dims(state)
    out: dict[str, torch.Tensor] = {}
    unused: list[str] = []
    block = re.compile(r"^visual\.transformer\.resblocks\.(\d+)\.(.+)$")
    simple = {"visual.conv1.weight": "embeddings.patch_embedding.weight",
              "visual.class_embedding": "embeddings.class_embedding",
              "visual.ln_pre.weight": "pre_layrnorm.weight", "visual.ln_pre.bias": "pre_layrnorm.bias",
              "visual.ln_post.weight": "post_layernorm.weight", "visual.ln_post.bias": "post_layernorm.bias"}
    inner = {"attn.out_proj.weight": "self_attn.out_proj.weight", "attn.out_proj.bias": "self_attn.out_proj.bias",
             "ln_1.weight": "layer_norm1.weight", "ln_1.bias": "layer_norm1.bias",
             "ln_2.weight": "layer_norm2.weight", "ln_2.bias": "layer_norm2.bias",
             "mlp.c_fc.weight": "mlp.fc1.weight", "mlp.c_fc.bias": "mlp.fc1.bias",
             "mlp.c_proj.weight": "mlp.fc2.weight", "mlp.c_proj.bias": "mlp.fc2.bias"}
    for key, value in state.items():
        if OPENAI_TEXT.match(key) or key == "visual.proj":
            continue
        if key in simple:
            out[simple[key]] = value
        elif key == "visual.positional_embedding":
            out["embeddings.position_embedding.weight"] = resize_positions(value, grid)
        elif m := block.match(key):
            i, rest = int(m.group(1)), m.group(2)
            if drop_last and i == dims.layers - 1:
                continue  # METER never builds the last block
            p = f"encoder.layers.{i}."
            if rest in ("attn.in_proj_weight", "attn.in_proj_bias"):
                kind = rest.rsplit("_", 1)[1]
                for name, part in zip(("q_proj", "k_proj", "v_proj"), value.chunk(3, dim=0)):
                    out[f"{p}self_attn.{name}.{kind}"] = part
            elif rest in inner:
                out[p + inner[rest]] = value
            else:
                unused.append(key)
        else:
            unused.append(key)
    if unused:
        raise CLIPWeightsError(f"unmapped CLIP tensors: {', '.join(unused[:5])}" + (" ..." if len(unused) > 5 else ""))
    return out


def hf_to_tower(state: dict[str, torch.Tensor], layers: int, grid: int) -> dict[str, torch.Tensor]:
    """HF CLIP keys (``vision_model.*`` or flat) -> the tower's keys; drops block ``layers - 1``."""
    out: dict[str, torch.Tensor] = {}
    last = f"encoder.layers.{layers - 1}."
    for key, value in state.items():
        if HF_IGNORED.match(key):
            continue
        name = key.removeprefix("vision_model.")
        if name.startswith(last):
            continue
        if name == "embeddings.position_embedding.weight":
            value = resize_positions(value, grid)
        out[name] = value
    return out


def load_clip_tower(path: str | os.PathLike, grid: int) -> tuple[dict[str, torch.Tensor], CLIPDims]:
    """Tower state dict (``CLIPVisionModel`` keys, ``dims.layers - 1`` blocks, ``grid``² + 1 positions) and the
    checkpoint's dims, from an OpenAI ``.pt`` file or an HF directory."""
    path = Path(path)
    if path.is_dir():
        state, vision = read_hf(path)
        dims = hf_dims(vision)
        return hf_to_tower(state, dims.layers, grid), dims
    if not path.is_file():
        raise CLIPWeightsError(f"{path}: no such file or directory")
    state = read_openai(path)
    return openai_to_hf(state, grid), openai_dims(state)


def clip_dims(path: str | os.PathLike) -> CLIPDims:
    """Dims of a CLIP checkpoint (reads the config of an HF directory, the tensors of an OpenAI file)."""
    path = Path(path)
    if path.is_dir():
        config_path = path / "config.json"
        if not config_path.is_file():
            raise CLIPWeightsError(f"{path}: no config.json")
        config = json.loads(config_path.read_text())
        return hf_dims(config.get("vision_config", config))
    if not path.is_file():
        raise CLIPWeightsError(f"{path}: no such file or directory")
    return openai_dims(read_openai(path))
