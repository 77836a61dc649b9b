"""Released mmTransformer weights (decisionforce/mmTransformer ``models/demo.pt``: ``{"state_dict": mmTrans
state_dict, ...}``) into ``MMTransformer``: ``stacked_transformer.<name>`` -> ``<name>``, ``subgraph.*`` as is;
the modules upstream builds but never runs (``social_dec``, ``prediction_header.dis_emb``) are dropped; the LLM
adapter (``llm.*``) is the only part allowed to be absent. Anything else missing, extra or mis-shaped is an error
naming the tensors."""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch
from torch import nn

from common.engine.checkpoint import load_model_state
from common.engine.state_dict import read_state_dict

UNUSED_UPSTREAM = ("stacked_transformer.social_dec.", "stacked_transformer.prediction_header.dis_emb.")


def released_state_dict(raw: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Upstream keys (``module.`` prefixes already removed) -> this model's keys; never-used upstream layers dropped."""
    return {key.removeprefix("stacked_transformer."): value for key, value in raw.items()
            if not key.startswith(UNUSED_UPSTREAM)}


def load_released_mmtransformer(model: nn.Module, path: str | os.PathLike) -> None:
    """Load ``path`` strictly (see the module docstring) into ``model``; only the adapter (``llm.``) keeps its
    initialisation, as the released model has none."""
    weights, _ = read_state_dict(path, keys=("state_dict",))
    load_model_state(model, released_state_dict(weights), f"--mm-checkpoint {path}", may_miss=("llm.",))
