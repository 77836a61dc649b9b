"""Released mmTransformer weights (decisionforce/mmTransformer ``models/demo.pt``: ``{"state_dict": mmTrans
state_dict, ...}``) into ``MMTransformer``: ``stacked_transformer.<name>`` -> ``<name>``, ``subgraph.*`` as is;
the modules upstream builds but never runs (``social_dec``, ``prediction_header.dis_emb``) are dropped; the LLM
adapter (``llm.*``) is the only part allowed to be absent. Anything else missing, extra or mis-shaped is an error
naming the tensors."""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping

import torch
from torch import nn

from common.engine.errors import CheckpointError

UNUSED_UPSTREAM = ("stacked_transformer.social_dec.", "stacked_transformer.prediction_header.dis_emb.")


def released_state_dict(state: Mapping[str, object]) -> dict[str, torch.Tensor]:
    """Upstream keys -> this model's keys (``module.`` prefixes of DataParallel saves are removed too)."""
    raw = state.get("state_dict", state)
    if not isinstance(raw, Mapping):
        raise CheckpointError("not an mmTransformer checkpoint: no state_dict")
    out = {}
    for key, value in raw.items():
        key = key.removeprefix("module.")
        if key.startswith(UNUSED_UPSTREAM):
            continue
        out[key.removeprefix("stacked_transformer.")] = value
    return out


def load_released_mmtransformer(model: nn.Module, path: str | os.PathLike) -> None:
    """Load ``path`` strictly (see the module docstring) into ``model``."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as e:
        raise CheckpointError(f"--mm-checkpoint {path}: cannot be read ({e})") from None
    weights = released_state_dict(state)
    own = model.state_dict()
    missing = [k for k in own if k not in weights and not k.startswith("llm.")]
    extra = [k for k in weights if k not in own]
    shapes = [f"{k} {tuple(weights[k].shape)} vs {tuple(own[k].shape)}" for k in weights
              if k in own and tuple(weights[k].shape) != tuple(own[k].shape)]
    problems = ([f"missing {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}"] if missing else []) + \
               ([f"unexpected {', '.join(extra[:5])}{' ...' if len(extra) > 5 else ''}"] if extra else []) + \
               ([f"shape {'; '.join(shapes[:5])}"] if shapes else [])
    if problems:
        raise CheckpointError(f"--mm-checkpoint {path} does not fit the model: {' | '.join(problems)}")
    model.load_state_dict(weights, strict=False)
