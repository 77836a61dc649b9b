"""SQA3D's released ScanQA checkpoints (``model.pth``: a plain state dict, as ``solver.py`` saves it).

Upstream's ``test.py`` loads them with ``strict=False``. Here the load is strict after a named map:
- dropped by name, because the model builds but never uses them: ``s_feat_linear.*``, ``q_feat_linear.*``,
  ``object_cls.*``, ``attflat_lstm_q.*``;
- renamed: ``lang_cls.*`` -> ``aux_reg.*`` (older files; the rename ``test.py`` carries commented out);
- a ``module.`` prefix (DataParallel) is stripped.
Anything else missing, unexpected or mis-shaped is a ``CheckpointError`` naming the keys.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from torch import nn

from common.engine.checkpoint import load_model_state
from common.engine.errors import CheckpointError

UNUSED_PREFIXES = ("s_feat_linear.", "q_feat_linear.", "object_cls.", "attflat_lstm_q.")
RENAMES = {"lang_cls.": "aux_reg."}


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of ``path`` (``weights_only``; a ``model_state_dict`` / ``model`` entry is unwrapped)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()
        refused = next((ln for ln in first if "GLOBAL" in ln or "global" in ln), first[0] if first else "")
        raise CheckpointError(f"{path}: not a plain tensor checkpoint; it will not be unpickled ({refused.strip()})"
                              ) from None
    except Exception as e:  # truncated zip, not a torch file
        raise CheckpointError(f"{path}: unreadable checkpoint ({type(e).__name__}: {str(e).splitlines()[0]})") from None
    for key in ("model_state_dict", "model", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: expected a state dict of tensors")
    return dict(state)


def map_released_state(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """(state in this model's names, the keys dropped as never used)."""
    mapped, dropped = {}, []
    for key, value in state.items():
        name = key[len("module."):] if key.startswith("module.") else key
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
    mapped, dropped = map_released_state(read_state_dict(path))
    llm_keys = [k for k in model.state_dict() if k.startswith("llm.")]
    if llm_keys:
        raise CheckpointError(f"{path} is an upstream SQA3D checkpoint (no LLM block); evaluate it with "
                              "--llm-variant none")
    load_model_state(model, mapped, str(path))
    return dropped
