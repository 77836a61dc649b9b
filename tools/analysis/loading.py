"""A trained image model for the Python API (``tools.demo``): the run rebuilt through its task
(``common.engine.runner.load_run``: saved config, strict weights, the frozen block checked against its fingerprint).

The CLI (``tools.analyze``) calls ``load_run`` and the task's analysis hooks directly; this module keeps the
image-shaped summary (input size, channels, normalisation) the demo draws with.
"""

from __future__ import annotations

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


def load_image_cls(resume: Path, config_path: Path | None = None, use_ema: bool = False,
                   llm_path: str | None = None) -> LoadedModel:
    """An image_cls run's model (``get_task("image_cls")`` + ``load_run``). Raises ValueError (one line, naming the
    file or key) for anything wrong with the checkpoint or its LLM block."""
    from common.engine import runner
    from common.engine.errors import EngineError
    from common.task import get_task

    overrides: dict[str, Any] = {}
    if config_path is not None:
        loaded = yaml.safe_load(Path(config_path).read_text(encoding="utf-8"))
        if not isinstance(loaded, dict):
            raise ValueError(f"{config_path}: not a mapping of config keys")
        overrides.update(loaded)
    if llm_path is not None:
        overrides["llm_path"] = llm_path
    try:
        run = runner.load_run(get_task("image_cls"), resume, use_ema=use_ema, overrides=overrides)
    except EngineError as error:
        raise ValueError(str(error)) from error
    model = run.model
    size = int(model.patch_embed.img_size[0])
    in_chans = int(model.patch_embed.proj.weight.shape[1])
    if in_chans == 3:
        mean, std = IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD  # what image_cls.data.transforms normalises with
    else:
        mean, std = (0.5,) * in_chans, (0.5,) * in_chans
    return LoadedModel(model, vars(run.args).copy(), size, in_chans, tuple(mean), tuple(std))
