"""Rebuild a trained model for evaluation: our engine checkpoints, or a released LM4VisualEncoding ViT-LLaMA file.

- Engine checkpoint (``common.engine.checkpoint``): ``common.engine.runner.load_run`` rebuilds the model from the
  run config it holds (optionally overridden, e.g. a moved ``llm_path``); the frozen LLM block is re-read from
  its source and must match the saved fingerprint; ``model`` or ``ema`` weights load strictly.
- Official checkpoint (``torch.save`` dict with ``model`` / ``model_ema`` holding ``llama.*`` and
  ``llama_dim_mapper*`` keys): ``image_cls.official.build_official_model`` (no LLaMA files needed).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from common.engine import checkpoint
from common.engine.config import config_to_dict
from common.engine.errors import CheckpointError, ConfigError
from image_cls.official import OfficialCheckpointError, build_official_model


@dataclass
class TrainedModel:
    """A model ready for evaluation and what it was built from."""

    model: nn.Module
    config: dict[str, Any]  # the run config (official: model/input_size read off the weights)
    kind: str  # "engine" | "official"
    weights: str  # "model" | "ema"
    num_classes: int
    input_size: int


def _load_engine(path: Path, use_ema: bool, overrides: Mapping[str, Any]) -> TrainedModel:
    from common.engine.runner import load_run
    from image_cls.task import TASK

    try:
        run = load_run(TASK, path, use_ema=use_ema, overrides=overrides)
    except ConfigError as err:  # e.g. the LLM checkpoint moved: pass --llm-path
        raise CheckpointError(f"{path}: cannot rebuild its model: {err}") from err
    model, config = run.model, config_to_dict(run.args)
    return TrainedModel(model, config, "engine", run.weights, int(run.args.num_classes),
                        int(model.patch_embed.img_size[0]))


def load_trained_model(path: str | os.PathLike, use_ema: bool = False,
                       overrides: Mapping[str, Any] | None = None) -> TrainedModel:
    """The model of an engine or official checkpoint (detected by its keys), in eval mode on the CPU.

    Raises ``CheckpointError`` (engine) with a one-line message naming the file and what is wrong.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        return _load_engine(path, use_ema, overrides or {})
    except CheckpointError as err:
        if "not a frozen-lm-vision engine checkpoint" not in str(err) and "cannot read checkpoint" not in str(err):
            raise
        engine_error = err
    try:
        model = build_official_model(path, use_ema=use_ema)
    except OfficialCheckpointError as err:
        raise CheckpointError(" ".join(f"{path}: neither an engine checkpoint ({engine_error}) nor an official "
                                       f"ViT-LLaMA checkpoint ({err})".split())) from err
    size = int(model.patch_embed.img_size[0])
    config = {"model": "official", "input_size": size, "dataset": "imagenet"}
    return TrainedModel(model, config, "official", "model_ema" if use_ema else "model",
                        int(model.head.out_features), size)


def load_finetune_weights(model: nn.Module, path: str | os.PathLike) -> list[str]:
    """``--finetune``: DeiT ``main.py``'s start from pretrained ViT weights, strict by name.

    A head (``head.*``) of another shape is dropped by name, as DeiT does; the position table is resampled
    (bicubic, timm ``resample_abs_pos_embed``) when the token grid differs; the LLM adapter (``llm.*``) and a
    dropped head keep their initialisation (returned). Any other missing, unexpected or mis-shaped tensor is a
    ``CheckpointError`` naming it. LM4VisualEncoding ViT-LLaMA files (``llama.*`` keys) are refused: evaluate
    them with ``image_cls.evaluate --resume``.
    """
    from timm.layers import resample_abs_pos_embed

    from common.engine.state_dict import read_state_dict

    state, _ = read_state_dict(path, keys=("model", "state_dict"))
    source = f"--finetune {path}"
    if any(k.startswith(("llama.", "llama_dim_mapper")) for k in state):
        raise CheckpointError(f"{source}: an LM4VisualEncoding ViT-LLaMA checkpoint; --finetune takes DeiT / timm "
                              "ViT weights (evaluate this one with python -m image_cls.evaluate --resume)")
    own = model.state_dict()
    dropped = [k for k in ("head.weight", "head.bias") if k in state and k in own and state[k].shape != own[k].shape]
    for key in dropped:
        del state[key]
    pos = state.get("pos_embed")
    if pos is not None and "pos_embed" in own and pos.shape != own["pos_embed"].shape:
        prefix = 0 if getattr(model, "no_embed_class", False) else int(getattr(model, "num_prefix_tokens", 1))
        state["pos_embed"] = resample_abs_pos_embed(pos, new_size=list(model.patch_embed.grid_size),
                                                    num_prefix_tokens=prefix)
    left = checkpoint.load_model_state(model, state, source, may_miss=("llm.", *(("head.",) if dropped else ())))
    return left
