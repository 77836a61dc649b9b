"""Load the released ViT-LLaMA checkpoints of ziqipang/LM4VisualEncoding (``image_classification``) into our model.

The release is a ``torch.save`` dict (``main.py``: ``model``, ``model_ema``, ``optimizer``, ``lr_scheduler``,
``epoch``, ``scaler``, ``args``) whose ``model`` / ``model_ema`` state dict is ``ViTLLaMA.state_dict()``:
timm ViT keys, plus

    llama_dim_mapper1.weight                 -> llm.in_proj.weight
    llama_dim_mapper2.weight                 -> llm.out_proj.weight
    llama.layers.{j}.attention.w{q,k,v,o}.weight, llama.layers.{j}.feed_forward.w{1,2,3}.weight,
    llama.layers.{j}.{attention,ffn}_norm.weight
                                             -> block j of llm.lm (Meta key names, as in LLaMA's consolidated.pth)
    llama.norm.weight                        -> llm.lm.final_norm: it is never loaded from LLaMA upstream (stays 1),
                                                so final_norm "unit" requires all ones; "pretrained" loads it.

``llama.layers.0`` is LLaMA layer ``first_layer`` (31 of 32 for the released model): ``LLaMATransformer`` keeps
layers ``first_layer .. n_layers-1`` under indices 0, 1, ... Every key is mapped explicitly; an unknown, missing or
mis-shaped key is an error naming it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from common.engine.checkpoint import load_model_state
from common.engine.errors import CheckpointError
from common.engine.state_dict import torch_load
from common.frozen_lm import CheckpointError as LMCheckpointError
from common.frozen_lm import (
    FrozenLM,
    LLMAdapter,
    LM4VELlama,
    LMConfig,
    meta_ffn_hidden,
    split_lm4ve_state_dict,
)
from common.frozen_lm.lm4ve import import_lm4ve
from image_cls.models import VisionTransformerLLM

# The LLaMA config the released models were built with (vit_llama.py ``llama_default_config``: LLaMA-7B,
# first_layer 31): dim 4096, 32 heads, multiple_of 256 -> FFN 11008, norm_eps 1e-6.
LLAMA_7B = LMConfig(family="llama", dim=4096, n_layers=32, n_heads=32, n_kv_heads=32, head_dim=128,
                    ffn_hidden=meta_ffn_hidden(4096, 256), norm_eps=1e-6)
# ViT width -> heads, as registered upstream (vit_llama_{tiny,small,base}_patch*_224).
HEADS_BY_WIDTH = {192: 3, 384: 6, 768: 12}


class OfficialCheckpointError(ValueError):
    """An official checkpoint that does not map onto the model (message names the key)."""


def read_official_checkpoint(path: str | os.PathLike, use_ema: bool = False) -> dict[str, torch.Tensor]:
    """The ``model`` (or ``model_ema``) state dict of an official checkpoint file (``weights_only`` load)."""
    try:  # main.py stores its argparse args next to the weights: the one class allowed besides tensors
        checkpoint = torch_load(path)
    except CheckpointError as err:
        raise OfficialCheckpointError(f"{path}: not a readable torch checkpoint ({err})") from None
    key = "model_ema" if use_ema else "model"
    if not isinstance(checkpoint, Mapping) or key not in checkpoint:
        found = sorted(checkpoint) if isinstance(checkpoint, Mapping) else type(checkpoint).__name__
        raise OfficialCheckpointError(f"{path}: no '{key}' state dict (found {found})")
    state = checkpoint[key]
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise OfficialCheckpointError(f"{path}: '{key}' entry '{bad[0]}' is not a tensor")
    return dict(state)


def split_official_state_dict(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], LM4VELlama]:
    """(ViT + projection tensors under our keys, the LLaMA part: blocks by logical name, ``llama.norm.weight``)."""
    try:
        return split_lm4ve_state_dict(state)
    except LMCheckpointError as err:
        raise OfficialCheckpointError(f"{err} in the official checkpoint") from None


def _official_lm(model: nn.Module) -> FrozenLM:
    llm = getattr(model, "llm", None)
    if not isinstance(llm, LLMAdapter) or llm.lm is None:
        raise OfficialCheckpointError("the model has no LLM block (llm_variant frozen/finetune/random_* needed) "
                                      "to receive the official checkpoint's LLaMA weights")
    if llm.mode != "replace" or getattr(model, "llm_position", "tail") != "tail":
        raise OfficialCheckpointError("official checkpoints are llm_mode 'replace' at llm_position 'tail'; the "
                                      f"model has {llm.mode!r} at {getattr(model, 'llm_position', None)!r}")
    return llm.lm


@torch.no_grad()
def load_official_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor], source: str = "") -> None:
    """Copy an official ViT-LLaMA state dict into ``model`` (a ``VisionTransformerLLM`` with an LLM at the tail).

    Strict: every official key must be mapped and every model tensor covered, with equal shapes. The LM's
    fingerprint then names the official checkpoint (``source``) and the sha256 of its LLaMA tensors.
    """
    lm = _official_lm(model)
    norm = state.get("llama.norm.weight")
    if lm.final_norm_mode == "unit" and norm is not None and not torch.all(norm == 1):
        # LM4VE's code never loads LLaMA's final norm (it stays 1); say so rather than advise a flag this path lacks
        raise OfficialCheckpointError("its 'llama.norm.weight' is not all ones: LM4VisualEncoding's code keeps the "
                                      "LLaMA final norm at 1, so this file was not written by it")
    try:
        model_state, _ = import_lm4ve(model.llm, state, source, policy="file", origin="official_checkpoint",
                                      keep_fingerprint_if_same=False)
    except LMCheckpointError as err:
        raise OfficialCheckpointError(f"the official checkpoint: {err}") from None
    # The LM now holds the official weights; its own (current) entries complete the state dict when it is trainable.
    own_lm = {k: v for k, v in model.state_dict().items() if k.startswith("llm.lm.")}
    try:
        load_model_state(model, {**model_state, **own_lm}, "official checkpoint")
    except CheckpointError as err:
        raise OfficialCheckpointError(str(err)) from None


def infer_vit_args(state: Mapping[str, torch.Tensor], num_heads: int | None = None) -> dict[str, Any]:
    """timm ``VisionTransformer`` kwargs (sizes, depth, classes) read off an official state dict's shapes."""
    try:
        proj = state["patch_embed.proj.weight"]  # (D, C, p, p)
        embed_dim, in_chans, patch_size = proj.shape[0], proj.shape[1], proj.shape[2]
        n_patches = state["pos_embed"].shape[1] - 1
        depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
        mlp_hidden = state["blocks.0.mlp.fc1.weight"].shape[0]
        num_classes = state["head.weight"].shape[0]
    except (KeyError, ValueError, IndexError) as err:
        raise OfficialCheckpointError(f"not a ViT state dict: cannot read its shape ({err})") from None
    grid = round(n_patches ** 0.5)
    if grid * grid != n_patches:
        raise OfficialCheckpointError(f"pos_embed has {n_patches} patch positions, not a square grid")
    if num_heads is None:
        if embed_dim not in HEADS_BY_WIDTH:
            raise OfficialCheckpointError(f"ViT width {embed_dim} is not ViT-T/S/B; pass num_heads")
        num_heads = HEADS_BY_WIDTH[embed_dim]
    return dict(img_size=grid * patch_size, patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim,
                depth=depth, num_heads=num_heads, mlp_ratio=mlp_hidden / embed_dim, num_classes=num_classes)


def build_official_model(path: str | os.PathLike, lm_config: LMConfig = LLAMA_7B, use_ema: bool = False,
                         dtype: str = "float32", num_heads: int | None = None) -> VisionTransformerLLM:
    """A ``VisionTransformerLLM`` holding an official ViT-LLaMA checkpoint, no LLaMA files needed.

    The architecture is read off the checkpoint's shapes; the LLaMA block(s) are allocated empty
    (``lm_config``: the released models' LLaMA-7B config by default) and filled from the file.
    """
    state = read_official_checkpoint(path, use_ema)
    blocks = split_official_state_dict(state)[1].blocks
    if not blocks or "llama_dim_mapper1.weight" not in state:
        raise OfficialCheckpointError(f"{path}: no 'llama.layers.*' / 'llama_dim_mapper1.weight' tensors "
                                      "(not a ViT-LLaMA checkpoint)")
    lm = FrozenLM.from_config(lm_config, n_blocks=len(blocks), final_norm="unit", dtype=dtype, device="meta")
    lm.to_empty(device="cpu")
    lm.layer_indices = list(range(lm_config.n_layers - len(blocks), lm_config.n_layers))  # the tail, upstream
    model = VisionTransformerLLM(llm=LLMAdapter(state["llama_dim_mapper1.weight"].shape[1], lm),
                                 **infer_vit_args(state, num_heads))
    load_official_state_dict(model, state, source=str(Path(path).resolve()))
    return model.eval()


def load_official_checkpoint(model: nn.Module, path: str | os.PathLike, use_ema: bool = False) -> None:
    """Read an official checkpoint file and load it into an already built ``model`` (see module docstring)."""
    load_official_state_dict(model, read_official_checkpoint(path, use_ema), source=str(Path(path).resolve()))
