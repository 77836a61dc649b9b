"""Rebuilding a trained task model from an engine checkpoint (``--resume CKPT``) for the analysis CLI.

An engine checkpoint (``common.engine.checkpoint``) holds the resolved run config, the trainable weights
(``model``, and ``ema`` when EMA was on) and the frozen-LM fingerprints; the frozen LLM block is re-read
from ``llm_path`` (override with ``llm_path=...`` if the checkpoint moved) and must match the fingerprint.
For image_cls, a released ViT-LLaMA checkpoint of ziqipang/LM4VisualEncoding (LLaMA block inside) also
loads, through ``image_cls.official.build_official_model``.
Task modules are imported lazily, so ``tools.analysis`` itself never imports a task.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from torch import nn

IMAGENET_DEFAULT_MEAN = (0.485, 0.456, 0.406)
IMAGENET_DEFAULT_STD = (0.229, 0.224, 0.225)


@dataclass
class LoadedModel:
    """A model ready for analysis and how its inputs are prepared."""

    model: nn.Module
    config: dict[str, Any]
    input_size: int
    in_chans: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


def _read_config(state: dict[str, Any], config_path: Path | None) -> dict[str, Any]:
    if config_path is not None:
        loaded = yaml.safe_load(Path(config_path).read_text(encoding="utf-8"))
        if not isinstance(loaded, dict):
            raise ValueError(f"{config_path}: not a mapping of config keys")
        return loaded
    config = state.get("config")
    if not isinstance(config, dict) or not config:
        raise ValueError("the checkpoint holds no run config; pass --config RUN_DIR/config.yaml")
    return dict(config)


def load_image_cls(resume: Path, config_path: Path | None = None, use_ema: bool = False,
                   llm_path: str | None = None) -> LoadedModel:
    """An image_cls ViT (``image_cls.models``) with the weights of an engine checkpoint, strictly loaded.

    Raises ValueError (one line, naming the file/key) for anything wrong with the checkpoint or its LLM block.
    """
    from common.engine.errors import CheckpointError, EngineError

    try:
        return _load_image_cls(resume, config_path, use_ema, llm_path)
    except CheckpointError as error:
        if not Path(resume).is_file():
            raise ValueError(str(error)) from error
        engine_error = error
    except EngineError as error:
        raise ValueError(str(error)) from error
    # Not an engine checkpoint: maybe a released ViT-LLaMA checkpoint of ziqipang/LM4VisualEncoding.
    from image_cls.official import build_official_model

    try:
        model = build_official_model(resume, use_ema=use_ema)
    except ValueError as official_error:
        raise ValueError(f"{resume}: neither an engine checkpoint ({engine_error}) nor an official ViT-LLaMA "
                         f"checkpoint ({official_error})") from official_error
    size = int(model.patch_embed.img_size[0])
    return LoadedModel(model, {"model": "official"}, size, 3, IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD)


def _load_image_cls(resume: Path, config_path: Path | None, use_ema: bool, llm_path: str | None) -> LoadedModel:
    import image_cls.models as models  # registers the *_llm timm entry points
    from common.engine import checkpoint

    state = checkpoint.load(resume)
    config = _read_config(state, config_path)
    if llm_path is not None:
        config["llm_path"] = llm_path
    key = "ema" if use_ema else "model"
    weights = state.get(key)
    if weights is None:
        raise ValueError(f"{resume} has no '{key}' weights" + (" (the run had no EMA)" if use_ema else ""))
    if "model" not in config:
        raise ValueError(f"{resume}: the run config has no 'model' key")
    head = weights.get("head.weight")
    patch = weights.get("patch_embed.proj.weight")
    if patch is None:
        raise ValueError(f"{resume}: no 'patch_embed.proj.weight' in the '{key}' weights; not an image_cls ViT")
    in_chans = int(patch.shape[1])
    model = models.build_model(config, int(head.shape[0]) if head is not None else 0, in_chans=in_chans)
    checkpoint.check_lm(state.get("lm_fingerprints") or {}, model, str(resume))
    checkpoint.load_model_state(model, weights, f"{resume} [{key}]")
    size = int(model.patch_embed.img_size[0])
    if in_chans == 3:
        mean, std = IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD  # what image_cls.data.transforms normalises with
    else:
        cfg = getattr(model, "pretrained_cfg", {}) or {}
        mean, std = tuple(cfg.get("mean", (0.5,) * in_chans)), tuple(cfg.get("std", (0.5,) * in_chans))
        if len(mean) != in_chans:
            mean, std = (0.5,) * in_chans, (0.5,) * in_chans
    return LoadedModel(model.eval(), config, size, in_chans, tuple(mean), tuple(std))


# task -> loader(resume, config_path, use_ema, llm_path)
TASK_LOADERS: dict[str, Callable[..., LoadedModel]] = {"image_cls": load_image_cls}
