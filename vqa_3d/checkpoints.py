"""SQA3D's released ScanQA checkpoints (``model.pth``: a plain state dict, as ``solver.py`` saves it).

Upstream's ``test.py`` loads them with ``strict=False``. Here the load is strict after a named map:
- dropped by name, because the model builds but never uses them: ``s_feat_linear.*``, ``q_feat_linear.*``,
  ``object_cls.*``, ``attflat_lstm_q.*``;
- renamed: ``lang_cls.*`` -> ``aux_reg.*`` (older files; the rename ``test.py`` carries commented out);
- a ``module.`` prefix (DataParallel) is stripped.
Anything else missing, unexpected or mis-shaped is a ``CheckpointError`` naming the keys.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from common.engine.checkpoint import load_model_state
from common.engine.errors import CheckpointError
from common.engine.state_dict import read_state_dict

UNUSED_PREFIXES = ("s_feat_linear.", "q_feat_linear.", "object_cls.", "attflat_lstm_q.")
RENAMES = {"lang_cls.": "aux_reg."}


def map_released_state(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """(state in this model's names, the keys dropped as never used)."""
    mapped, dropped = {}, []
    for name, value in state.items():
        if name.startswith(UNUSED_PREFIXES):
            dropped.append(name)
            continue
        for old, new in RENAMES.items():
            if name.startswith(old):
                name = new + name[len(old):]
        mapped[name] = value
    return mapped, sorted(dropped)


def load_released(model: nn.Module, path: str | Path) -> list[str]:
    """Load a released ``model.pth`` strictly after the map; returns the dropped (never used) keys."""
    weights, _ = read_state_dict(path, keys=("model_state_dict", "model", "state_dict"))
    mapped, dropped = map_released_state(weights)
    llm_keys = [k for k in model.state_dict() if k.startswith("llm.")]
    if llm_keys:
        raise CheckpointError(f"{path} is an upstream SQA3D checkpoint (no LLM block); evaluate it with "
                              "--llm-variant none")
    load_model_state(model, mapped, str(path))
    return dropped
